"""Connections and named queries, shared by the collector and the admin commands.

Queries live in `sql/*.sql` as blocks that start with `-- name: some_query`; they are
read once and looked up by name, never assembled from strings. Their comment lines stay
in the files: the text a program runs has none, so that a long, well-commented query stays
under psycopg's 4 KB limit for caching its parsed form (the chunk query, parsed once per
chunk otherwise) and travels to the server without them.
"""

from __future__ import annotations

import functools
import re

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from mailroom.resources import resource_dir

DEFAULT_SCHEMA = "mailroom"  # MAILROOM_SCHEMA's default (mailroom/settings.py)

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
# A line that is only a comment (none of sql/ puts a line of a string literal there).
_COMMENT_LINE = re.compile(r"^[ \t]*--.*\n?", re.MULTILINE)


@functools.cache
def queries(filename: str) -> dict[str, str]:
    """The named queries of `sql/<filename>`."""
    text = (resource_dir("sql") / filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    named = {parts[i]: _COMMENT_LINE.sub("", parts[i + 1]).strip() for i in range(1, len(parts), 2)}
    if not named:
        raise ValueError(f"sql/{filename} has no '-- name:' blocks")
    return named


def connect(
    conninfo: str,
    *,
    autocommit: bool = True,
    application_name: str = "mailroom",
    connect_timeout: int = 10,
    schema: str = DEFAULT_SCHEMA,
    **libpq_options: int | str,
) -> psycopg.Connection:
    """A connection to MAILROOM_DATABASE_URL (a URL or key=value string) whose search_path is
    mailroom's schema (MAILROOM_SCHEMA) and nothing else: the queries of sql/ are unqualified,
    and no table of the app's (a `public.accounts` of its own) can stand in for mailroom's.
    `libpq_options` are further connection parameters (the collector's TCP keepalives)."""
    conn = psycopg.connect(
        make_conninfo(conninfo, **libpq_options) if libpq_options else conninfo,
        autocommit=autocommit,
        application_name=application_name,
        connect_timeout=connect_timeout,
    )
    try:
        set_schema(conn, schema)
    except BaseException:
        conn.close()
        raise
    return conn


def set_schema(conn: psycopg.Connection, schema: str) -> None:
    """Set the session's search_path to `schema` alone (committed at once, so that a
    rollback of the caller's first transaction keeps it)."""
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    if not conn.autocommit:
        conn.commit()


# Connection failures that retrying cannot fix: the configuration (or the server's roles,
# databases and pg_hba.conf) must change first. Everything else (refused, timed out, host
# not resolved, "the database system is starting up" 57P03, too many connections 53300,
# connections not allowed 55000, a backend terminated) is worth retrying.
PERMANENT_SQLSTATES = {
    "3D000": "the database does not exist",  # invalid_catalog_name
    "28000": "the role does not exist or may not connect",  # invalid_authorization_specification
    "28P01": "authentication failed",  # invalid_password
    "42501": "the role lacks the CONNECT privilege on the database",  # insufficient_privilege
}
# libpq reports a failed connection as text only (there is no result to carry the server's
# SQLSTATE), so the same failures are also recognised by the server's and libpq's English
# messages. With a server whose lc_messages is not English they are retried like the rest.
_PERMANENT_MESSAGES = (
    (re.compile(r'FATAL:\s+database ".*" does not exist'), "the database does not exist"),  # 3D000
    (re.compile(r'FATAL:\s+role ".*" does not exist'), "the role does not exist"),  # 28000
    (re.compile(r'FATAL:\s+role ".*" is not permitted to log in'), "the role may not log in"),  # 28000
    (re.compile(r"FATAL:\s+no pg_hba\.conf entry for"), "pg_hba.conf has no entry that lets it in"),  # 28000
    (re.compile(r'FATAL:\s+\w+ authentication failed for user ".*"'), "authentication failed"),  # 28P01
    (re.compile(r"fe_sendauth: no password supplied"), "the server asks for a password and none is set"),
    (re.compile(r'FATAL:\s+permission denied for database ".*"'), PERMANENT_SQLSTATES["42501"]),
    (
        re.compile(r'invalid (?:integer value "[^"]*" for connection option "port"|port number)'),
        "the port is not a number",
    ),
)
_ATTEMPT = re.compile(r"^- host: .*$", re.MULTILINE)  # psycopg lists each host it tried on such a line


def permanent_failure(exc: psycopg.Error) -> str | None:
    """Why retrying this connection failure cannot help, or None when it may (retry).

    With several hosts in the conninfo, only when every host failed for such a reason.
    """
    if exc.sqlstate:
        return PERMANENT_SQLSTATES.get(exc.sqlstate)
    text = str(exc)
    attempts = _ATTEMPT.findall(text) or [text]
    reasons = [_permanent_message(attempt) for attempt in attempts]
    return reasons[0] if all(reasons) else None


def _permanent_message(text: str) -> str | None:
    for pattern, reason in _PERMANENT_MESSAGES:
        if pattern.search(text):
            return reason
    return None


def describe(conninfo: str) -> str:
    """host:port/dbname of a conninfo, without user or password, for log lines."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "(unparsable connection string)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


def first_line(exc: BaseException) -> str:
    """An error's first line (libpq's messages run on with hints and context), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
