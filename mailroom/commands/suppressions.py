"""`mailroom suppressions list|add|remove`: the suppression list, by hand.

The same functions as an app's SQL (mailroom_suppress, mailroom_unsuppress), which compute
the address's key; `list --address` filters by the same key (mailroom.suppressions.address_key,
SQL's mailroom_address_key in Python), and an address with no key is refused here, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from mailroom import settings
from mailroom.db import connect, queries
from mailroom.suppressions import NotAnAddress, address_key

SUPPRESSIONS_VARIABLES = ("MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA")
COLUMNS = (
    "address",
    "reason",
    "bounce_type",
    "bounce_subtype",
    "feedback_type",
    "diagnostic",
    "first_at",
    "last_at",
    "event_id",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="suppressions_command", required=True, metavar="SUBCOMMAND")
    listing = sub.add_parser(
        "list",
        help="the suppressed addresses, latest first",
        description="Print the suppressed addresses, latest first: address, reason, details, last time.",
    )
    listing.add_argument("address", nargs="?", help="only this address (any spelling of it)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N rows [default: 1000]")
    add = sub.add_parser(
        "add",
        help="suppress an address by hand (reason manual)",
        description="Suppress ADDRESS (reason manual): mailroom emails none of its spellings again.",
    )
    add.add_argument("address")
    add.add_argument("--note", default=None, help="why (kept as the suppression's diagnostic)")
    remove = sub.add_parser(
        "remove",
        help="take an address off the list (exit 1 if it was not on it)",
        description="Take ADDRESS (any spelling of it) off the suppression list; exit 1 if it was not on it.",
    )
    remove.add_argument("address")


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    values = settings.read(environ, "MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA")
    url, schema = values["MAILROOM_DATABASE_URL"], values["MAILROOM_SCHEMA"]
    key = None
    if args.address is not None:
        try:
            key = address_key(args.address)
        except NotAnAddress as exc:
            print(f"mailroom suppressions {args.suppressions_command}: {exc}", file=sys.stderr)
            return settings.CONFIG_EXIT_STATUS
    q = queries("events.sql")
    with connect(url, application_name="mailroom suppressions", schema=schema) as conn:
        if args.suppressions_command == "add":
            conn.execute(
                q["suppress"],
                {
                    "address": args.address,
                    "reason": "manual",
                    "diagnostic": args.note,
                    "bounce_type": None,
                    "bounce_subtype": None,
                    "feedback_type": None,
                    "event_id": None,
                    "at": None,
                },
            )
            print(f"suppressed {args.address}")
            return 0
        if args.suppressions_command == "remove":
            row = conn.execute(q["unsuppress"], {"address": args.address}).fetchone()
            if row and row[0]:
                print(f"removed {args.address} from the suppression list")
                return 0
            print(f"{args.address} is not on the suppression list", file=sys.stderr)
            return 1
        rows = conn.execute(q["list_suppressions"], {"address_key": key, "limit": args.limit}).fetchall()
    for row in rows:
        item: dict[str, Any] = dict(zip(COLUMNS, row, strict=True))
        if args.json:
            print(json.dumps(item, default=str, ensure_ascii=False))
        else:
            detail = " ".join(str(v) for v in (item["bounce_type"], item["bounce_subtype"], item["feedback_type"]) if v)
            print(
                f"{item['address']}\t{item['reason']}{' ' + detail if detail else ''}\t"
                f"last {item['last_at']:%Y-%m-%d %H:%M:%S%z}\t{item['diagnostic'] or ''}".rstrip()
            )
    return 0
