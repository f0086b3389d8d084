"""The collector's one connection: connect, take the standby lock, register, LISTEN.

One autocommit connection does everything: it holds the session-level advisory lock that
makes this collector the active one for its queue, it LISTENs, and it runs the chunk
transactions (explicit `conn.transaction()` blocks). Because the lock lives and dies with
the session, a standby takes over as soon as the active collector's backend is gone.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from mailroom.db import connect, queries
from mailroom.settings import CollectorSettings

log = logging.getLogger("collector.connection")

APPLICATION_NAME = "mailroom-collector"
CONNECT_TIMEOUT_S = 3  # libpq minimum is 2; a stop signal waits for at most this


def open_connection(settings: CollectorSettings, synchronous_commit: bool) -> psycopg.Connection:
    """A new autocommit session set up for the collector.

    TCP keepalives notice a peer that vanished without closing the connection even
    between health checks.
    """
    conn = connect(  # search_path: mailroom's schema alone (the queries of sql/ are unqualified)
        settings.database_url,
        application_name=APPLICATION_NAME,
        connect_timeout=CONNECT_TIMEOUT_S,
        schema=settings.schema,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
    if not synchronous_commit:
        # Losing the last consumer commits in a database crash only makes the collector
        # emit those chunks again (at-least-once); it never loses a token. See the README.
        conn.execute("SET synchronous_commit = off")
    return conn


def try_lock(conn: psycopg.Connection, queue_name: str) -> bool:
    """Try once to become the active collector of `queue_name`."""
    row = conn.execute(queries("collector.sql")["try_standby_lock"], {"queue": queue_name}).fetchone()
    return bool(row and row[0])


def register_and_listen(conn: psycopg.Connection, settings: CollectorSettings) -> None:
    """Register the queue (idempotent) and LISTEN on its channel, before any drain."""
    conn.execute(
        queries("collector.sql")["register_queue"], {"queue": settings.queue_name, "channel": settings.channel_name}
    )
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(settings.channel_name)))


def backlog(conn: psycopg.Connection, queue_name: str) -> int:
    row = conn.execute(queries("collector.sql")["backlog"], {"queue": queue_name}).fetchone()
    return int(row[0]) if row else 0
