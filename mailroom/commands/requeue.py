"""`mailroom requeue`: put still-valid tokens back on the queue, so that they are emailed again.

For mail that was written off (a reject row, an outage of the mail provider): the tokens
are still in the database, and those not consumed and not expired can be queued again.
The collector reads them like new ones (so the cooldown still applies), and a NOTIFY on
the queue's channel wakes a sleeping collector. Queueing is idempotent: a token already
queued is not queued twice.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from mailroom import settings
from mailroom.actions import ALIASES, NAME_PATTERN
from mailroom.db import connect, queries

REQUEUE_VARIABLES = ("MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA", "MAILROOM_QUEUE_NAME", "MAILROOM_LOG_LEVEL")

_REF = re.compile(r"^[0-9a-f]{16}$")


class RequeueError(Exception):
    """Something the operator must fix (the message says what); nothing was changed."""


class UsageError(RequeueError):
    """The command line does not say which tokens (exit status 2, like argparse's errors)."""


@dataclass(frozen=True)
class Selection:
    """Which tokens: those of `emails` or `refs` (all tokens when both are empty), created at
    or after `since` (when set), of `action` (when set)."""

    emails: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    since: datetime | None = None
    action: str | None = None  # an action's name (actions.name)


@dataclass(frozen=True)
class Candidate:
    id: int
    action: str
    email: str
    created_at: datetime
    ref: str
    valid: bool
    queued: bool
    suppressed: bool
    on_list: bool = False  # the address is on the suppression list

    def describe(self) -> str:
        return (
            f"id={self.id} action={self.action} email={self.email} "
            f"created={self.created_at.astimezone(UTC).isoformat(timespec='seconds')} ref={self.ref}"
        )


@dataclass(frozen=True)
class RequeueResult:
    queue: str
    candidates: list[Candidate]
    queued: list[int]  # ids put on the queue (what would be, in a dry run)
    dry_run: bool

    @functools.cached_property
    def _queued(self) -> frozenset[int]:
        return frozenset(self.queued)

    def status(self, c: Candidate) -> str:
        if c.id in self._queued:
            return "would queue" if self.dry_run else "queued"
        if c.queued:
            return "already queued"
        if not c.valid:
            return "not valid (consumed or expired)"
        if c.on_list:
            return "skipped: the address is suppressed (`mailroom suppressions remove` it first)"
        return "not queued (queued, consumed or expired meanwhile)"

    @property
    def already(self) -> int:
        return sum(1 for c in self.candidates if c.id not in self._queued and (c.queued or (c.valid and not c.on_list)))

    @property
    def on_list(self) -> int:
        return sum(1 for c in self.candidates if c.id not in self._queued and not c.queued and c.valid and c.on_list)

    @property
    def invalid(self) -> int:
        return sum(1 for c in self.candidates if not c.valid)


def requeue(
    conn: psycopg.Connection,
    queue: str,
    selection: Selection,
    *,
    dry_run: bool = False,
    include_suppressed: bool = False,
) -> RequeueResult:
    """Queue the selected tokens that are still valid on `queue` and wake its collector,
    in one transaction; in a dry run, only say what would be queued. Tokens whose address is
    on the suppression list are skipped unless `include_suppressed` (the collector still
    skips them while the address is on the list)."""
    sql = queries("admin.sql")
    with conn.transaction():
        row = conn.execute(sql["queue_channel"], {"queue": queue}).fetchone()
        if row is None:
            raise RequeueError(
                f"queue {queue!r} is not registered: start the collector once (it registers its queue), "
                "or check MAILROOM_QUEUE_NAME"
            )
        channel = row[0]
        params = {
            "queue": queue,
            "emails": list(selection.emails),
            "refs": list(selection.refs),
            "since": selection.since,
            "action": selection.action,
        }
        if selection.action is not None:
            known = [r[0] for r in conn.execute(sql["action_names"]).fetchall()]
            if selection.action not in known:
                raise RequeueError(f"unknown action {selection.action!r}; the actions are: {', '.join(known)}")
        candidates = [Candidate(*r) for r in conn.execute(sql["requeue_candidates"], params).fetchall()]
        todo = [c.id for c in candidates if c.valid and not c.queued and (include_suppressed or not c.on_list)]
        if dry_run or not todo:
            return RequeueResult(queue, candidates, todo, dry_run)
        queued = [r[0] for r in conn.execute(sql["requeue"], {"queue": queue, "ids": todo}).fetchall()]
        if queued:
            conn.execute(sql["notify"], {"channel": channel})  # delivered at commit
    return RequeueResult(queue, candidates, queued, dry_run)


# -- the command --------------------------------------------------------------------------


def parse_since(raw: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when it has no offset), or a duration back from now (`2h`)."""
    try:
        return (now or datetime.now(UTC)) - timedelta(seconds=settings.seconds("--since", raw))
    except settings.ConfigError:
        pass
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is invalid; expected an ISO time such as 2026-01-31T09:30:00Z or a duration such as 90m or 2h"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _ref(raw: str) -> str:
    value = raw.strip().lower()
    if not _REF.match(value):
        raise argparse.ArgumentTypeError(f"{raw!r} is invalid; a token reference is 16 hex characters")
    return value


def read_rejects(path: Path) -> tuple[list[str], list[str], int]:
    """(refs, emails, rows with neither) from a rejects.jsonl: each row's `token_ref`, or
    its address when it has no reference."""
    refs: list[str] = []
    emails: list[str] = []
    neither = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RequeueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RequeueError(f"{path}:{number}: not a JSON line ({exc.msg})") from exc
        ref, email = _reject_identity(row)
        if ref:
            refs.append(ref)
        elif email:
            emails.append(email)
        else:
            neither += 1
    return refs, emails, neither


def _reject_identity(row: Any) -> tuple[str | None, str | None]:
    if not isinstance(row, dict):
        return None, None
    ref = row.get("token_ref")
    if isinstance(ref, str) and _REF.match(ref.lower()):
        return ref.lower(), None
    record = row.get("record")
    for email in (row.get("email"), row.get("recipient"), record.get("email") if isinstance(record, dict) else None):
        if isinstance(email, str) and "@" in email:
            return None, email
    return None, None


def _action_name(raw: str) -> str:
    """An action's name as the `actions` table holds it (`recovery` is password_recovery)."""
    name = ALIASES.get(raw, raw)
    if not re.fullmatch(NAME_PATTERN, name):
        raise argparse.ArgumentTypeError(f"{raw!r} is no action name (lowercase letters, digits and _)")
    return name


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--email", action="append", default=[], metavar="ADDR", help="tokens of the account with this address"
    )
    parser.add_argument(
        "--ref", action="append", default=[], type=_ref, metavar="REF", help="the token with this token_ref"
    )
    parser.add_argument(
        "--rejects",
        type=Path,
        metavar="PATH",
        help="the tokens of a rejects.jsonl's rows (their token_ref, else their address)",
    )
    parser.add_argument(
        "--since",
        type=parse_since,
        metavar="TIME",
        help="only tokens created since TIME: ISO 8601 (UTC without an offset) or a duration back from now (2h); "
        "alone, every token created since then",
    )
    parser.add_argument(
        "--action",
        type=_action_name,
        metavar="NAME",
        help="only tokens of this action (its name: activation, password_recovery, magic_link, ...; "
        "`mailroom actions list` shows them) [default: every action]",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be queued and change nothing")
    parser.add_argument(
        "--include-suppressed",
        action="store_true",
        help="queue tokens whose address is on the suppression list too (the collector still skips them "
        "while it is on the list)",
    )


def selection_from_args(args: argparse.Namespace) -> tuple[Selection, list[str]]:
    """The selection, and notes to print (rows of a rejects file that name no token)."""
    emails, refs, notes = list(args.email), list(args.ref), []
    if args.rejects is not None:
        more_refs, more_emails, neither = read_rejects(args.rejects)
        refs += more_refs
        emails += more_emails
        if neither:
            notes.append(f"{neither} row(s) of {args.rejects} name no token_ref and no address: skipped")
        if not more_refs and not more_emails:
            raise UsageError(f"{args.rejects} names no token (no row with a token_ref or an address)")
    if not (emails or refs or args.since):
        raise UsageError("say which tokens: --email, --ref, --rejects or --since (see --help)")
    selection = Selection(
        emails=tuple(dict.fromkeys(emails)),
        refs=tuple(dict.fromkeys(refs)),
        since=args.since,
        action=args.action,
    )
    return selection, notes


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    values = settings.read(environ, "MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA", "MAILROOM_QUEUE_NAME")
    queue = values["MAILROOM_QUEUE_NAME"]
    try:
        selection, notes = selection_from_args(args)
        with connect(
            values["MAILROOM_DATABASE_URL"], application_name="mailroom requeue", schema=values["MAILROOM_SCHEMA"]
        ) as conn:
            result = requeue(conn, queue, selection, dry_run=args.dry_run, include_suppressed=args.include_suppressed)
    except RequeueError as exc:
        print(f"mailroom requeue: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        print("mailroom requeue: the database schema is not up to date: run `mailroom migrate`", file=sys.stderr)
        return 1
    for line in report(result, selection, notes):
        print(line)
    return 0


def report(result: RequeueResult, selection: Selection, notes: Sequence[str] = ()) -> list[str]:
    """One line per selected token, one per requested address or ref that found none, then
    the summary."""
    lines = [f"{result.status(c)}: {c.describe()}" for c in result.candidates]
    found_emails = {c.email for c in result.candidates}
    found_refs = {c.ref for c in result.candidates}
    lines += [f"no token: email={e}" for e in selection.emails if e not in found_emails]
    lines += [f"no token: ref={r}" for r in selection.refs if r not in found_refs]
    lines += list(notes)
    verb = "would queue" if result.dry_run else "queued"
    summary = (
        f"{verb} {len(result.queued)} token(s) for queue {result.queue!r}; {result.already} already queued; "
        f"{result.invalid} not valid any more (consumed or expired)"
        + (f"; {result.on_list} skipped: address suppressed" if result.on_list else "")
    )
    lines.append(summary + ("; dry run, nothing changed" if result.dry_run else ""))
    return lines
