"""Connections and named queries, shared by the collector and the admin commands.

Queries live in `sql/*.sql` as blocks that start with `-- name: some_query`; they are
read once and looked up by name, never assembled from strings.
"""

from __future__ import annotations

import functools
import re

import psycopg

from mailroom.resources import resource_dir

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@functools.cache
def queries(filename: str) -> dict[str, str]:
    """The named queries of `sql/<filename>`."""
    text = (resource_dir("sql") / filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    named = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}
    if not named:
        raise ValueError(f"sql/{filename} has no '-- name:' blocks")
    return named


def connect(
    conninfo: str, *, autocommit: bool = True, application_name: str = "mailroom", connect_timeout: int = 10
) -> psycopg.Connection:
    """A connection to MAILROOM_DATABASE_URL (a URL or key=value string)."""
    return psycopg.connect(
        conninfo, autocommit=autocommit, application_name=application_name, connect_timeout=connect_timeout
    )


def describe(conninfo: str) -> str:
    """host:port/dbname of a conninfo, without user or password, for log lines."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "(unparsable connection string)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"
