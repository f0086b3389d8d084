"""`mailroom actions list|add`: the registry of actions (the `actions` table, migration 0008).

Adding an action is one row plus a folder of templates (`<MAILROOM_TEMPLATES_DIR>/<name>/`):
`add` inserts the row and says which folder to create, or copies an existing action's folder
with `--like`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import psycopg

from mailroom import settings
from mailroom.db import connect, first_line, queries

ACTIONS_VARIABLES = ("MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA", "MAILROOM_TEMPLATES_DIR")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
_STATUS = re.compile(r"[A-Za-z0-9_-]+")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="actions_command", required=True, metavar="SUBCOMMAND")
    sub.add_parser("list", help="print the registry", description="Print every action of the registry, by number.")
    add = sub.add_parser(
        "add",
        help="add an action (one row; then its templates folder)",
        description="Add an action to the registry. Its emails need a templates folder, <name>/ "
        "(subject.txt, body.txt, body.html), in MAILROOM_TEMPLATES_DIR: --like copies an existing one.",
    )
    add.add_argument("name", help="the action's name: lower-case letters, digits and '_' (e.g. account_locked)")
    add.add_argument("--number", type=int, help="its number on the wire [default: the lowest free one from 3]")
    add.add_argument("--path", help="the link path its tokens sign [default: /<name with - for _>]")
    add.add_argument("--code", action="store_true", help="the 5-digit code is signed and needed to consume")
    add.add_argument(
        "--lifetime", default="15 minutes", help="token lifetime, a PostgreSQL interval [default: %(default)s]"
    )
    add.add_argument(
        "--cooldown",
        default=None,
        help="at most one email per recipient in this interval; request() then returns the earlier token "
        "[default: none of its own, the collector's MAILROOM_RECOVERY_COOLDOWN]",
    )
    add.add_argument(
        "--statuses", default="active", help="recipient statuses that may receive it, comma-separated [default: active]"
    )
    add.add_argument(
        "--no-account", action="store_true", help="sent to an address with no account (tokens.email), like invitation"
    )
    add.add_argument("--no-link", action="store_true", help="the email carries no link (like welcome)")
    add.add_argument("--like", metavar="ACTION", help="copy ACTION's templates folder in MAILROOM_TEMPLATES_DIR")


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    values = settings.read(environ, *ACTIONS_VARIABLES)
    with connect(
        values["MAILROOM_DATABASE_URL"], application_name="mailroom actions", schema=values["MAILROOM_SCHEMA"]
    ) as conn:
        if args.actions_command == "list":
            return list_actions(conn)
        return add_action(conn, args, values["MAILROOM_TEMPLATES_DIR"])


def list_actions(conn: psycopg.Connection) -> int:
    rows = conn.execute(queries("admin.sql")["actions_list"]).fetchall()
    header = ("name", "number", "path", "code", "link", "lifetime", "cooldown", "statuses")
    table = [header] + [
        (
            name,
            str(number),
            path,
            "yes" if code else "no",
            "yes" if link else "no",
            lifetime,
            cooldown or "(default)",
            ",".join(statuses) if statuses is not None else "(no account)",
        )
        for name, number, path, code, link, lifetime, cooldown, statuses in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _usage(message: str) -> int:
    print(f"mailroom actions add: {message}", file=sys.stderr)
    return settings.CONFIG_EXIT_STATUS


def add_action(conn: psycopg.Connection, args: argparse.Namespace, templates_dir: Path | None) -> int:
    name: str = args.name
    if not _NAME.fullmatch(name):
        return _usage(f"{name!r} is not an action name: lower-case letters, digits and '_', starting with a letter")
    path = args.path or "/" + name.replace("_", "-")
    if not _PATH.fullmatch(path):
        return _usage(f"{path!r} is not a link path: '/' then letters, digits and . _ ~ / -")
    statuses = None if args.no_account else [s.strip() for s in args.statuses.split(",") if s.strip()]
    if statuses is not None and (not statuses or not all(_STATUS.fullmatch(s) for s in statuses)):
        return _usage(f"--statuses {args.statuses!r}: expected a comma-separated list of statuses (active,...)")
    source = target = None
    if args.like is not None:
        if templates_dir is None:
            return _usage("--like copies a folder of MAILROOM_TEMPLATES_DIR, which is not set")
        source, target = templates_dir / args.like, templates_dir / name
        if not source.is_dir():
            return _usage(f"--like {args.like}: there is no folder {source}")
        if target.exists():
            return _usage(f"{target} exists already")
    sql = queries("admin.sql")
    try:
        with conn.transaction():
            number = args.number
            if number is None:
                row = conn.execute(sql["next_action_number"]).fetchone()
                number = row[0] if row else None
            conn.execute(
                sql["add_action"],
                {
                    "name": name,
                    "number": number,
                    "path": path,
                    "signs_code": args.code,
                    "link": not args.no_link,
                    "lifetime": args.lifetime,
                    "cooldown": args.cooldown,
                    "statuses": statuses,
                },
            )
    except psycopg.errors.UniqueViolation as exc:
        detail = exc.diag.message_detail or first_line(exc)  # Key (name)=(x) already exists.
        print(f"mailroom actions add: {detail} (mailroom actions list shows the actions)", file=sys.stderr)
        return 1
    except (psycopg.errors.DataException, psycopg.errors.CheckViolation) as exc:
        return _usage(first_line(exc))
    print(f"added action {name} (number {number}, path {path})")
    if source is not None and target is not None:
        shutil.copytree(source, target)
        print(f"copied the templates of {args.like} to {target}/: edit them")
    else:
        where = templates_dir / name if templates_dir is not None else Path("templates") / name
        print(
            f"now create its templates folder {where}/ (subject.txt, body.txt, body.html"
            + ("" if templates_dir is not None else "; and point MAILROOM_TEMPLATES_DIR at templates/")
            + ")"
        )
    return 0
