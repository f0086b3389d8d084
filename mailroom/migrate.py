"""Applying the schema in `migrations/` with yoyo, over any libpq conninfo, into one schema.

Everything mailroom owns lives in one PostgreSQL schema (MAILROOM_SCHEMA, `mailroom` by
default): the migrations keep unqualified names and run with `search_path` set to that
schema only, so their tables, types, functions and yoyo's bookkeeping tables land there.
After the migrations, every function of the schema that names another mailroom object gets
its search_path pinned to the schema (PIN_SQL), so the app's calls and the triggers its
inserts fire work whatever the caller's search_path.

An installation made by a release before the schema (its objects and yoyo's tables in
`public`) is moved into the schema in place, in one transaction, before the new migrations
run (`move_from_public`).

yoyo wants a URL it parses itself; we hand it a psycopg connection made from the
conninfo as given, so key=value strings and every libpq option work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import parse_uri

from mailroom.resources import resource_dir

MIGRATION_TABLE = "_yoyo_migration"
DEFAULT_SCHEMA = "mailroom"
ACCOUNT_KEYS = ("bigint", "uuid")
# yoyo's bookkeeping tables (its backend's names, plus the migration table we name).
YOYO_TABLES = (MIGRATION_TABLE, "_yoyo_log", "_yoyo_version", "yoyo_lock")

# Functions that reference no mailroom object (only built-ins, or, for mailroom_address_key
# and mailroom_prune_all, schema-qualified names): they are safe whatever the caller's
# search_path, and pinning one would stop PostgreSQL inlining it into the app's inserts (the
# column defaults) and the collector's claim query, where they run once per row; a procedure
# with its own search_path may not COMMIT (mailroom_prune_all does, between batches).
NOT_PINNED = (
    "mailroom_prune_all",
    "mailroom_epoch",
    "mailroom_random_secret",
    "mailroom_random_code",
    "mailroom_awake_lock",
    "mailroom_delivery_rank",
    "mailroom_address_key",
)

# Pin every other function and procedure of the current schema to it (idempotent; run by
# `mailroom migrate` after the migrations and printed at the end of `mailroom migrate --sql`).
PIN_SQL = """\
DO $pin$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS signature, p.prokind
               FROM pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace
                AND p.prokind IN ('f', 'p')
                AND NOT p.proname = ANY (ARRAY[{not_pinned}])
    LOOP
        EXECUTE format('ALTER %s %s SET search_path = %I, pg_temp',
                       CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.signature, current_schema());
    END LOOP;
END
$pin$;
""".format(not_pinned=", ".join(f"'{name}'" for name in NOT_PINNED))

# What migrations 0001-0007 create in `public` (the releases before the schema), moved by
# move_from_public. Owned sequences, indexes, constraints and triggers follow their tables.
PUBLIC_TABLES = ("accounts", "tokens", "jobs", "job_tokens", "suppressions", "delivery_events", "token_deliveries")
PUBLIC_VIEWS = ("delivery_status",)
PUBLIC_TYPES = ("account_status", "token_action")
PUBLIC_FUNCTIONS = (
    "mailroom_epoch()",
    "mailroom_random_secret()",
    "mailroom_random_code()",
    "mailroom_account_provisioned()",
    "mailroom_account_status_changed()",
    "mailroom_token_consumed()",
    "mailroom_awake_lock(text)",
    "mailroom_tokens_inserted()",
    "mailroom_register_queue(text, text)",
    "mailroom_drop_queue(text)",
    "mailroom_consume_token(bytea, text)",
    "mailroom_prune(interval, integer)",
    "mailroom_punycode(text)",
    "mailroom_a_label(text)",
    "mailroom_email_problem(text)",
    "mailroom_ascii_domain(text)",
    "mailroom_address_key(text)",
    "mailroom_delivery_rank(text)",
    "mailroom_record_delivery(text, text, timestamp with time zone, text, text, text, text)",
    "mailroom_checked_address_key(text)",
    "mailroom_suppress(text, text, text, text, text, text, text, timestamp with time zone)",
    "mailroom_unsuppress(text)",
    "mailroom_is_suppressed(text)",
)
PUBLIC_PROCEDURES = ("mailroom_prune_all(interval, integer)",)


class MigrationFailed(Exception):
    """A migration stopped with an error (rolled back, nothing of it applied); the message
    is the server's, with its hint (a migration that refuses existing data says which)."""

    def __init__(self, error: psycopg.Error) -> None:
        diag = error.diag
        message = diag.message_primary or str(error).strip()
        super().__init__(message + (f" (hint: {diag.message_hint})" if diag.message_hint else ""))


class MigrateRefused(Exception):
    """The database is not in a state this migrate may change (the message says why and what to do)."""


@dataclass(frozen=True)
class MigrationResult:
    applied: list[str]
    rolled_back: list[str]
    moved: list[str] = field(default_factory=list)  # objects moved from public into the schema


def _backend(conninfo: str, schema: str, account_key: str | None = None) -> PostgresqlPsycopgBackend:
    search_path = sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))

    class Backend(PostgresqlPsycopgBackend):  # type: ignore[misc]  # yoyo is untyped: its classes are Any
        def connect(self, dburi: object) -> psycopg.Connection:
            conn = psycopg.connect(conninfo, autocommit=True, application_name="mailroom migrate")
            conn.execute(search_path)  # session-level, outside any transaction: a rollback keeps it
            if account_key:
                conn.execute("SELECT set_config('mailroom.account_key', %s, false)", (account_key,))
            return conn

    backend = Backend(parse_uri("postgresql+psycopg:///"), MIGRATION_TABLE)
    backend.init_database()
    return backend


def _regclass(conn: psycopg.Connection, schema: str, name: str) -> bool:
    row = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, name)
    ).fetchone()
    return bool(row and row[0])


def public_installation(conn: psycopg.Connection) -> bool:
    """Whether `public` holds an installation of a release before the schema: yoyo's table
    lists mailroom's first migration and mailroom's queue tables are there."""
    if not (_regclass(conn, "public", MIGRATION_TABLE) and _regclass(conn, "public", "job_tokens")):
        return False
    row = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM public.{} WHERE migration_id = '0001_schema')").format(
            sql.Identifier(MIGRATION_TABLE)
        )
    ).fetchone()
    return bool(row and row[0])


def account_key(conn: psycopg.Connection, schema: str) -> str | None:
    """The installation's account key type (bigint or uuid), None when nothing is installed."""
    for where in (schema, "public"):
        if _regclass(conn, where, "tokens") and (where == schema or public_installation(conn)):
            row = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass(format('%%I.tokens', %s::text)) AND attname = 'account'",
                (where,),
            ).fetchone()
            return "uuid" if row and row[0] == "uuid" else "bigint"
    return None


def move_from_public(conn: psycopg.Connection, schema: str) -> list[str]:
    """Move a public installation's objects (tables with their data, sequences, indexes and
    triggers, the view, the types, the functions, yoyo's tables) into `schema`, in one
    transaction, and pin the functions; the names of what moved. Nothing else in public is
    touched. The tables are locked (ACCESS EXCLUSIVE) until it commits: the app's writes wait."""
    target = sql.Identifier(schema)
    moved: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('mailroom migrate', 0))")
        if not public_installation(conn):
            return moved  # another migrate moved it meanwhile
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(target))
        for name in PUBLIC_TABLES + YOYO_TABLES + PUBLIC_VIEWS:
            if _regclass(conn, schema, name):
                raise MigrateRefused(
                    f"cannot move mailroom's objects from public into schema {schema}: it already has a {name}"
                )
        for kind, names in (("TABLE", PUBLIC_TABLES + YOYO_TABLES), ("VIEW", PUBLIC_VIEWS)):
            for name in names:
                if _regclass(conn, "public", name):
                    conn.execute(
                        sql.SQL("ALTER {} public.{} SET SCHEMA {}").format(sql.SQL(kind), sql.Identifier(name), target)
                    )
                    moved.append(name)
        for name in PUBLIC_TYPES:
            row = conn.execute("SELECT to_regtype(%s) IS NOT NULL", (f"public.{name}",)).fetchone()
            if row and row[0]:
                conn.execute(sql.SQL("ALTER TYPE public.{} SET SCHEMA {}").format(sql.Identifier(name), target))
                moved.append(name)
        for kind, signatures in (("FUNCTION", PUBLIC_FUNCTIONS), ("PROCEDURE", PUBLIC_PROCEDURES)):
            for signature in signatures:
                row = conn.execute("SELECT to_regprocedure(%s) IS NOT NULL", (f"public.{signature}",)).fetchone()
                if row and row[0]:
                    conn.execute(
                        sql.SQL("ALTER {} public.{} SET SCHEMA {}").format(sql.SQL(kind), sql.SQL(signature), target)
                    )
                    moved.append(signature.split("(")[0])
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(target))
        conn.execute(PIN_SQL)
    return moved


def pin(conn: psycopg.Connection, schema: str) -> None:
    """Pin the search_path of the schema's functions (PIN_SQL), in one transaction."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(PIN_SQL)


def apply(conninfo: str, schema: str = DEFAULT_SCHEMA, account_key_type: str | None = None) -> MigrationResult:
    """Apply every migration not yet applied into `schema` (idempotent), after moving a public
    installation into it; MigrationFailed when a migration fails, MigrateRefused when the
    database cannot be migrated as asked (another account key than the one chosen)."""
    if account_key_type is not None and account_key_type not in ACCOUNT_KEYS:
        raise MigrateRefused(f"the account key is bigint or uuid, not {account_key_type}")
    moved: list[str] = []
    with psycopg.connect(conninfo, autocommit=True, application_name="mailroom migrate") as conn:
        chosen = account_key(conn, schema)
        if account_key_type is not None and chosen is not None and chosen != account_key_type:
            raise MigrateRefused(
                f"this installation's account key is {chosen} (chosen at its first migrate); "
                f"it cannot become {account_key_type}: run `mailroom migrate` without --account-key "
                f"or with --account-key {chosen}"
            )
        if schema != "public" and not _regclass(conn, schema, MIGRATION_TABLE) and public_installation(conn):
            try:
                moved = move_from_public(conn, schema)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                raise MigrationFailed(exc) from exc
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    backend = _backend(conninfo, schema, account_key_type or chosen)
    try:
        migrations = read_migrations(str(resource_dir("migrations")))
        with backend.lock():
            todo = backend.to_apply(migrations)
            try:
                backend.apply_migrations(todo)
                pin(backend.connection, schema)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                raise MigrationFailed(exc) from exc
        return MigrationResult(applied=[m.id for m in todo], rolled_back=[], moved=moved)
    finally:
        backend.connection.close()


def rollback_last(conninfo: str, schema: str = DEFAULT_SCHEMA) -> MigrationResult:
    """Undo the most recently applied migration, if any."""
    backend = _backend(conninfo, schema)
    try:
        migrations = read_migrations(str(resource_dir("migrations")))
        with backend.lock():
            todo = backend.to_rollback(migrations)[:1]
            try:
                backend.rollback_migrations(todo)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                raise MigrationFailed(exc) from exc
        return MigrationResult(applied=[], rolled_back=[m.id for m in todo])
    finally:
        backend.connection.close()


def sql_script(schema: str = DEFAULT_SCHEMA, account_key_type: str = "bigint") -> str:
    """The whole schema as one SQL script, for teams that apply DDL with their own tool: the
    schema, every migration in order (with search_path set to the schema) and the pinning.
    It does not write yoyo's bookkeeping tables."""
    if account_key_type not in ACCOUNT_KEYS:
        raise MigrateRefused(f"the account key is bigint or uuid, not {account_key_type}")
    quoted = '"' + schema.replace('"', '""') + '"'
    parts = [
        f"-- mailroom schema {schema!r}, account key {account_key_type}: generated by `mailroom migrate --sql`.",
        "-- Apply it as one transaction to a database without mailroom.",
        f"CREATE SCHEMA IF NOT EXISTS {quoted};",
        f"SET search_path TO {quoted};",
        f"SET mailroom.account_key = '{account_key_type}';",
    ]
    for migration in read_migrations(str(resource_dir("migrations"))):
        text = (resource_dir("migrations") / f"{migration.id}.sql").read_text(encoding="utf-8")
        parts.append(f"\n-- migration: {migration.id}\n{text.rstrip()}\n")
    parts.append("-- pin the functions' search_path to the schema\n" + PIN_SQL)
    parts.append("RESET mailroom.account_key;\nRESET search_path;\n")
    return "\n".join(parts)


def shipped() -> list[str]:
    """The ids of the migrations this installation carries, in order."""
    return [m.id for m in read_migrations(str(resource_dir("migrations")))]


def applied(conn: psycopg.Connection) -> list[str]:
    """The ids of the migrations applied to the database of `conn` (whose search_path is the
    schema: mailroom.db.connect), oldest first.

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
