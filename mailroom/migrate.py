"""Applying the schema in `migrations/` with yoyo, over any libpq conninfo.

yoyo wants a URL it parses itself; we hand it a psycopg connection made from the
conninfo as given, so key=value strings and every libpq option work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import parse_uri

from mailroom.resources import resource_dir

MIGRATION_TABLE = "_yoyo_migration"


class MigrationFailed(Exception):
    """A migration stopped with an error (rolled back, nothing of it applied); the message
    is the server's, with its hint (a migration that refuses existing data says which)."""

    def __init__(self, error: psycopg.Error) -> None:
        diag = error.diag
        message = diag.message_primary or str(error).strip()
        super().__init__(message + (f" (hint: {diag.message_hint})" if diag.message_hint else ""))


@dataclass(frozen=True)
class MigrationResult:
    applied: list[str]
    rolled_back: list[str]


def _backend(conninfo: str) -> PostgresqlPsycopgBackend:
    class Backend(PostgresqlPsycopgBackend):  # type: ignore[misc]  # yoyo is untyped: its classes are Any
        def connect(self, dburi: object) -> psycopg.Connection:
            return psycopg.connect(conninfo, autocommit=True, application_name="mailroom migrate")

    backend = Backend(parse_uri("postgresql+psycopg:///"), MIGRATION_TABLE)
    backend.init_database()
    return backend


def apply(conninfo: str) -> MigrationResult:
    """Apply every migration not yet applied (idempotent); MigrationFailed when one fails."""
    backend = _backend(conninfo)
    try:
        migrations = read_migrations(str(resource_dir("migrations")))
        with backend.lock():
            todo = backend.to_apply(migrations)
            try:
                backend.apply_migrations(todo)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                raise MigrationFailed(exc) from exc
        return MigrationResult(applied=[m.id for m in todo], rolled_back=[])
    finally:
        backend.connection.close()


def rollback_last(conninfo: str) -> MigrationResult:
    """Undo the most recently applied migration, if any."""
    backend = _backend(conninfo)
    try:
        migrations = read_migrations(str(resource_dir("migrations")))
        with backend.lock():
            todo = backend.to_rollback(migrations)[:1]
            backend.rollback_migrations(todo)
        return MigrationResult(applied=[], rolled_back=[m.id for m in todo])
    finally:
        backend.connection.close()


def shipped() -> list[str]:
    """The ids of the migrations this installation carries, in order."""
    return [m.id for m in read_migrations(str(resource_dir("migrations")))]


def applied(conn: psycopg.Connection) -> list[str]:
    """The ids of the migrations applied to the database of `conn`, oldest first.

    Read-only, unlike the yoyo backend (which creates its bookkeeping tables): for
    `mailroom check`, which must not change the database it inspects.
    """
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATION_TABLE,)).fetchone()
    if not row or not row[0]:
        return []
    query = sql.SQL("SELECT migration_id FROM {} ORDER BY applied_at_utc, migration_id").format(
        sql.Identifier(MIGRATION_TABLE)
    )
    return [r[0] for r in conn.execute(query).fetchall()]
