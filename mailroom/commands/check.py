"""`mailroom check`: is this deployment ready to send mail? One line per check, exit 0 or 1.

For deploy pipelines and for a person at 3 a.m.: each failing check says what is wrong
and what fixes it. The command only reads: it never migrates, registers a queue or
creates yoyo's bookkeeping tables. A check that cannot run (a database that does not
answer) is a ✗ line, never a traceback; only an unset MAILROOM_DATABASE_URL, which leaves
nothing to check, is the one-line configuration error (exit 2) of every other command.

The database half is here; the mail provider's checks are appended by `run_checks` from
MAIL_PROVIDER_CHECKS.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Mapping

import psycopg

from mailroom import migrate, settings
from mailroom.checks import FAIL_MARK, PASS_MARK, Check, all_passed, render
from mailroom.commands import events
from mailroom.db import connect, describe, first_line, queries

DATABASE_VARIABLES = (
    "MAILROOM_DATABASE_URL",
    "MAILROOM_SCHEMA",
    "MAILROOM_SECRET_KEY",
    "MAILROOM_QUEUE_NAME",
    "MAILROOM_CHANNEL_NAME",
    "MAILROOM_EVENTS_QUEUE_URL",
    "MAILROOM_LOG_LEVEL",
)
# What `mailroom check --help` lists: its own variables, then the sender's, which the mail
# provider's checks (`sender --check`, run with the same environment) depend on.
CHECK_VARIABLES = tuple(dict.fromkeys(DATABASE_VARIABLES + settings.SENDER_VARIABLES))

# The oldest queued token may be this old before the backlog check fails: a third of the
# default 15-minute token lifetime, so the alarm comes while the links still work. A
# collector that is running reads within MAILROOM_BATCH_TIMEOUT of an insert, and at the
# latest at its health check (MAILROOM_HEALTHCHECK_INTERVAL, 270 s by default).
BACKLOG_MAX_AGE_S = 300.0
CONNECT_TIMEOUT_S = 5

CheckGroup = Callable[[Mapping[str, str]], list[Check]]


def sender_checks(environ: Mapping[str, str]) -> list[Check]:
    """The mail provider's checks: exactly the sender's preflight, run as `sender --check`
    (the real program, with the same environment), its lines read back."""
    command = [sys.executable, "-m", "sender.cli", "--check"]
    try:
        done = subprocess.run(
            command, env=dict(environ), capture_output=True, text=True, timeout=SENDER_CHECK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return [
            Check(
                "mail provider",
                False,
                f"`sender --check` did not answer in {SENDER_CHECK_TIMEOUT_S:g} s",
                "check the network path to the provider",
            )
        ]
    checks = [_parse(line) for line in done.stdout.splitlines() if line[:1] in (PASS_MARK, FAIL_MARK)]
    if done.returncode not in (0, 1) or not checks:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        checks.append(Check("mail provider", False, why.removeprefix("sender: "), "fix the sender's settings"))
    return checks


def _parse(line: str) -> Check:
    """A `sender --check` line back into a Check: `✓ name: detail` or `✗ name: detail — fix: ...`."""
    ok = line.startswith(PASS_MARK)
    name, _, rest = line[2:].partition(": ")
    detail, _, fix = rest.partition(" — fix: ")
    return Check(name, ok, detail, fix)


# Checks of the mail provider (the sender's preflight) and of the events queue (none when
# MAILROOM_EVENTS_QUEUE_URL is empty; mailroom/commands/events.py), run after the database
# ones. Each group takes the environment and returns its lines.
SENDER_CHECK_TIMEOUT_S = 60.0
MAIL_PROVIDER_CHECKS: tuple[CheckGroup, ...] = (sender_checks, events.queue_checks)


def run_checks(environ: Mapping[str, str], max_backlog_age_s: float = BACKLOG_MAX_AGE_S) -> list[Check]:
    """Every check, in the order they are printed."""
    checks = database_checks(environ, max_backlog_age_s)
    checks.append(secret_key_check(environ))
    checks.append(collector_settings_check(environ))
    for group in MAIL_PROVIDER_CHECKS:
        checks += group(environ)
    return checks


def secret_key_check(environ: Mapping[str, str]) -> Check:
    try:
        settings.read(environ, "MAILROOM_SECRET_KEY")
    except settings.ConfigError as exc:  # its message never shows the value
        return Check(
            "secret key",
            False,
            str(exc),
            "set MAILROOM_SECRET_KEY to the key the apps verify links with (64 hex characters)",
        )
    return Check("secret key", True, "MAILROOM_SECRET_KEY is set (32 bytes)")


# Checked by the lines above (database, secret key): not said twice.
_CHECKED_ALREADY = frozenset({"MAILROOM_DATABASE_URL", "MAILROOM_SECRET_KEY"})


def collector_settings_check(environ: Mapping[str, str]) -> Check:
    """The collector's own settings, read exactly as the collector (and `mailroom run`) reads
    them: a value it refuses stops it at start, so the check must not pass it. (The sender's
    are read by `sender --check`, below.)"""
    names = [n for n in settings.COLLECTOR_VARIABLES if n not in _CHECKED_ALREADY]
    try:
        settings.read(environ, *names)
    except settings.ConfigError as exc:
        return Check(
            "collector settings",
            False,
            str(exc),
            f"fix {exc.name}: the collector and `mailroom run` refuse to start with it",
        )
    return Check("collector settings", True, "every MAILROOM_* the collector reads is valid")


def database_checks(environ: Mapping[str, str], max_backlog_age_s: float = BACKLOG_MAX_AGE_S) -> list[Check]:
    """database, schema, queue, backlog: the checks that need the database stop at the first
    one that makes the next ones meaningless (no connection, no queue)."""
    try:
        values = settings.read(environ, "MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA")
    except settings.ConfigError as exc:
        fix = (
            "set MAILROOM_SCHEMA to mailroom's schema (default mailroom)"
            if exc.name == "MAILROOM_SCHEMA"
            else ("set MAILROOM_DATABASE_URL to a libpq URL or key=value string")
        )
        return [Check("database", False, str(exc), fix)]
    url, schema = values["MAILROOM_DATABASE_URL"], values["MAILROOM_SCHEMA"]
    where = describe(url)
    try:
        conn = connect(url, application_name="mailroom check", connect_timeout=CONNECT_TIMEOUT_S, schema=schema)
    except psycopg.Error as exc:
        return [
            Check(
                "database",
                False,
                f"cannot connect to {where}: {first_line(exc)}",
                "check MAILROOM_DATABASE_URL, and that PostgreSQL is running and reachable from here",
            )
        ]
    with conn:
        try:
            version = str(_one(conn, "server_version", {})).split()[0]
            checks = [Check("database", True, f"connected to {where} (PostgreSQL {version})")]
            checks.append(_schema_check(conn))
            queue = _queue_check(conn, environ)
            checks.append(queue)
            if queue.ok:
                checks.append(_backlog_check(conn, environ, max_backlog_age_s))
        except psycopg.Error as exc:
            checks.append(
                Check(
                    "database",
                    False,
                    f"a query on {where} failed: {first_line(exc)}",
                    "check that MAILROOM_DATABASE_URL's role may read the mailroom tables",
                )
            )
    return checks


def _schema_check(conn: psycopg.Connection) -> Check:
    shipped, applied = migrate.shipped(), migrate.applied(conn)
    missing = [m for m in shipped if m not in applied]
    unknown = [m for m in applied if m not in shipped]
    if unknown:
        return Check(
            "schema",
            False,
            f"the database has migrations this mailroom does not ship: {', '.join(unknown)}",
            "run the mailroom version that migrated this database (or a newer one)",
        )
    if missing:
        in_public = not applied and migrate.public_installation(conn)
        return Check(
            "schema",
            False,
            f"{len(missing)} of {len(shipped)} migrations not applied: {', '.join(missing)}"
            + (" (an earlier release's installation is in schema public)" if in_public else ""),
            "run `mailroom migrate`" + (" (it moves it into MAILROOM_SCHEMA, keeping its data)" if in_public else ""),
        )
    return Check("schema", True, f"all {len(shipped)} migrations applied (latest {shipped[-1]})")


def _queue_check(conn: psycopg.Connection, environ: Mapping[str, str]) -> Check:
    try:
        values = settings.read(environ, "MAILROOM_QUEUE_NAME", "MAILROOM_CHANNEL_NAME")
    except settings.ConfigError as exc:
        return Check("queue", False, str(exc), f"set {exc.name} to the collector's value")
    queue, channel = values["MAILROOM_QUEUE_NAME"], values["MAILROOM_CHANNEL_NAME"]
    if not _one(conn, "relation_exists", {"name": "jobs"}):
        return Check("queue", False, "the database has no mailroom tables", "run `mailroom migrate`")
    registered = conn.execute(queries("admin.sql")["queue_channel"], {"queue": queue}).fetchone()
    if registered is None:
        return Check(
            "queue",
            False,
            f"queue {queue!r} (MAILROOM_QUEUE_NAME) is not registered",
            "start the collector once (it registers its queue when it connects), or run "
            f"SELECT mailroom_register_queue('{queue}', '{channel}'); or set MAILROOM_QUEUE_NAME to the collector's",
        )
    if registered[0] != channel:
        return Check(
            "queue",
            False,
            f"queue {queue!r} is registered with channel {registered[0]!r}, but MAILROOM_CHANNEL_NAME is {channel!r}",
            "give the collector and this check the same MAILROOM_CHANNEL_NAME "
            "(the collector updates its queue's channel when it connects)",
        )
    return Check("queue", True, f"queue {queue!r} is registered, channel {channel!r}")


def _backlog_check(conn: psycopg.Connection, environ: Mapping[str, str], max_age_s: float) -> Check:
    queue = settings.read(environ, "MAILROOM_QUEUE_NAME")["MAILROOM_QUEUE_NAME"]
    row = conn.execute(queries("admin.sql")["backlog_age"], {"queue": queue}).fetchone()
    queued, expired, oldest_s = (row[0], row[1], row[2]) if row else (0, 0, None)
    if not queued or oldest_s is None:
        return Check("backlog", True, f"nothing queued on {queue!r}")
    detail = f"{queued} token(s) queued on {queue!r}, the oldest created {_age(oldest_s)} ago"
    if expired:
        detail += f"; {expired} expired while queued"
    if oldest_s > max_age_s:
        return Check(
            "backlog",
            False,
            f"{detail} (more than {_age(max_age_s)}: links expire 15 min after creation by default)",
            f"make sure a collector is running on queue {queue!r} (`mailroom run`) and look at its log",
        )
    return Check("backlog", True, detail)


def _one(conn: psycopg.Connection, name: str, params: Mapping[str, object]) -> object:
    row = conn.execute(queries("admin.sql")[name], params).fetchone()
    return row[0] if row else None


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- the command --------------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-backlog-age",
        type=_duration,
        default=BACKLOG_MAX_AGE_S,
        metavar="DURATION",
        help="fail when the oldest queued token is older than this (seconds, or 90s, 10m, 1h) "
        f"[default: {BACKLOG_MAX_AGE_S:g}s]",
    )


def _duration(raw: str) -> float:
    try:
        return settings.seconds("--max-backlog-age", raw)
    except settings.ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print one line per check; 0 when every check passed, 1 otherwise.

    Without MAILROOM_DATABASE_URL there is no deployment to check: that is the one-line
    configuration error (exit 2) of every other command, not a ✗ line."""
    if "MAILROOM_DATABASE_URL" not in environ:
        settings.read(environ, "MAILROOM_DATABASE_URL")  # raises the ConfigError that says what to set
    checks = run_checks(environ, args.max_backlog_age)
    for line in render(checks):
        print(line)
    sys.stdout.flush()
    return 0 if all_passed(checks) else 1
