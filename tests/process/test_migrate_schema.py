"""`mailroom migrate` and the schema, with the real console scripts: the in-place move of an
installation in `public` (the releases before the schema), `--sql`, `--account-key`, and a
collector on a database whose `public` has tables named like mailroom's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg
from conftest import ROOT, TEST_KEY_HEX, pg_connect, script
from psycopg.conninfo import make_conninfo
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import parse_uri

from mailroom import migrate
from mailroom.wire import decode_line

# What an app keeps in public beside mailroom: never touched by the move.
APP_OBJECTS = """
CREATE TABLE public.app_orders (id serial PRIMARY KEY, total int);
INSERT INTO public.app_orders (total) VALUES (42);
CREATE FUNCTION public.app_total() RETURNS bigint LANGUAGE sql AS 'SELECT sum(total) FROM public.app_orders';
CREATE TYPE public.app_mood AS ENUM ('happy');
CREATE VIEW public.app_view AS SELECT id FROM public.app_orders;
"""


def install_previous_release(url: str, tmp_path: Path) -> None:
    """Migrations 0001-0007 into public, as the release before the schema applied them:
    yoyo on a plain connection (default search_path), bookkeeping table _yoyo_migration."""
    folder = tmp_path / "release_migrations"
    folder.mkdir()
    for path in (ROOT / "migrations").glob("000[1-7]_*.sql"):
        shutil.copy(path, folder)

    class Backend(PostgresqlPsycopgBackend):  # type: ignore[misc]
        def connect(self, dburi: object) -> psycopg.Connection:
            return psycopg.connect(url, autocommit=True)

    backend = Backend(parse_uri("postgresql+psycopg:///"), "_yoyo_migration")
    backend.init_database()
    try:
        with backend.lock():
            backend.apply_migrations(backend.to_apply(read_migrations(str(folder))))
    finally:
        backend.connection.close()


def objects(conn: psycopg.Connection, schema: str) -> dict[str, list[str]]:
    """The objects of a schema, by kind: what two installations must have alike."""
    q = {
        "relations": "SELECT c.relname || ':' || c.relkind::text FROM pg_class c WHERE c.relnamespace = %(s)s::regnamespace",
        "columns": "SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || "
        "CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || coalesce(' = ' || pg_get_expr(d.adbin, d.adrelid), '') "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid "
        "AND d.adnum = a.attnum WHERE c.relnamespace = %(s)s::regnamespace AND a.attnum > 0 AND NOT a.attisdropped",
        "functions": "SELECT p.oid::regprocedure::text || ' ' || coalesce(array_to_string(p.proconfig, ','), '') "
        "FROM pg_proc p WHERE p.pronamespace = %(s)s::regnamespace",
        "constraints": "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = %(s)s::regnamespace",
        "triggers": "SELECT t.tgname || ' ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON "
        "c.oid = t.tgrelid WHERE c.relnamespace = %(s)s::regnamespace AND NOT t.tgisinternal",
        "types": "SELECT t.typname FROM pg_type t WHERE t.typnamespace = %(s)s::regnamespace AND t.typtype = 'e'",
        "views": "SELECT c.relname || ' ' || pg_get_viewdef(c.oid) FROM pg_class c "
        "WHERE c.relnamespace = %(s)s::regnamespace AND c.relkind = 'v'",
    }
    return {kind: sorted(r[0] for r in conn.execute(query, {"s": schema}).fetchall()) for kind, query in q.items()}


def without_yoyo(found: dict[str, list[str]]) -> dict[str, list[str]]:
    return {kind: [x for x in names if "yoyo" not in x] for kind, names in found.items()}


def test_migrate_moves_a_populated_public_installation_into_the_schema_and_the_collector_emits_its_tokens(
    empty_database_url: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    url = empty_database_url
    install_previous_release(url, tmp_path)
    with psycopg.connect(url, autocommit=True) as app:  # the app as it was: unqualified names in public
        app.execute(APP_OBJECTS)
        app.execute("SELECT mailroom_register_queue('mailroom', 'token_insert')")
        app.execute(
            "INSERT INTO accounts (email, login) VALUES ('new1@example.com', 'new1'), ('new2@example.com', 'new2')"
        )
        app.execute("INSERT INTO accounts (email, login, status) VALUES ('ada@example.com', 'ada', 'active')")
        app.execute(
            "INSERT INTO tokens (action, account) SELECT 'password_recovery', id FROM accounts WHERE login = 'ada'"
        )
        app.execute("SELECT mailroom_suppress('gone@example.com', 'bounce')")
        before = {
            table: app.execute(f"SELECT count(*) FROM {table}").fetchone()
            for table in ("accounts", "tokens", "job_tokens", "suppressions", "jobs")
        }
        app_before = without_yoyo(objects(app, "public"))
    env = {**base_env, "MAILROOM_DATABASE_URL": url, "MAILROOM_SECRET_KEY": TEST_KEY_HEX}
    checked = subprocess.run(
        [script("mailroom"), "check"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert "an earlier release's installation is in schema public" in checked.stdout, checked.stdout
    done = subprocess.run([script("mailroom"), "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "moved from public into schema mailroom: accounts, tokens" in done.stdout
    assert "applied: 0008_actions" in done.stdout
    with psycopg.connect(url, autocommit=True) as conn:
        left = objects(conn, "public")
        # only the app's objects are left in public, as they were
        assert all("app_" in name or name.startswith("app") for names in left.values() for name in names), left
        assert {k: [n for n in v if "app" in n] for k, v in app_before.items()} == {
            k: [n for n in v if "app" in n] for k, v in left.items()
        }
        assert conn.execute("SELECT public.app_total()").fetchone() == (42,)
        for table, count in before.items():
            assert conn.execute(f"SELECT count(*) FROM mailroom.{table}").fetchone() == count, table
        assert conn.execute("SELECT mailroom.mailroom_is_suppressed('gone@example.com')").fetchone() == (True,)
        applied = [r[0] for r in conn.execute("SELECT migration_id FROM mailroom._yoyo_migration ORDER BY 1")]
        assert applied == migrate.shipped()
    again = subprocess.run([script("mailroom"), "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing (schema is up to date)" in again.stdout, again.stderr
    drained = subprocess.run([script("collector"), "--drain"], env=env, capture_output=True, timeout=120, cwd=tmp_path)
    assert drained.returncode == 0, drained.stderr.decode()
    records = [r for line in drained.stdout.splitlines() for r in decode_line(line)[0]]
    assert sorted((r.action.number, r.email) for r in records) == [
        (1, "new1@example.com"),
        (1, "new2@example.com"),
        (2, "ada@example.com"),
    ]
    with pg_connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM job_tokens").fetchone() == (0,)


def test_migrate_sql_prints_ddl_that_makes_the_same_schema_as_migrate(
    empty_database_url: str, pg_admin_url: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**base_env}  # no MAILROOM_DATABASE_URL: --sql needs none
    printed = subprocess.run(
        [script("mailroom"), "migrate", "--sql"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("-- mailroom schema 'mailroom'")
    assert 'CREATE SCHEMA IF NOT EXISTS "mailroom";' in printed.stdout
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(printed.stdout)  # type: ignore[arg-type]  # the DDL, as another tool would run it
        by_hand = without_yoyo(objects(conn, "mailroom"))
        assert conn.execute("SELECT count(*) FROM mailroom.actions").fetchone() == (6,)
    reference = make_conninfo(pg_admin_url, dbname=empty_database_url.split("dbname=")[-1].split()[0] + "_ref")
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{psycopg.conninfo.conninfo_to_dict(reference)["dbname"]}"')
    try:
        migrate.apply(reference)
        with psycopg.connect(reference, autocommit=True) as conn:
            assert without_yoyo(objects(conn, "mailroom")) == by_hand
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(
                f'DROP DATABASE IF EXISTS "{psycopg.conninfo.conninfo_to_dict(reference)["dbname"]}" WITH (FORCE)'
            )


def test_migrate_sql_with_uuid_keys_and_another_schema(empty_database_url: str, base_env: dict[str, str]) -> None:
    env = {**base_env, "MAILROOM_SCHEMA": "mail"}
    printed = subprocess.run(
        [script("mailroom"), "migrate", "--sql", "--account-key", "uuid"], env=env, capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(printed.stdout)  # type: ignore[arg-type]
        assert conn.execute(
            "SELECT to_regprocedure('mail.request(text, uuid, text, text)') IS NOT NULL"
        ).fetchone() == (True,)
        assert conn.execute("SELECT to_regnamespace('mailroom')").fetchone() == (None,)


def test_migrate_refuses_the_other_account_key_and_a_bad_schema_name(
    database_url: str, base_env: dict[str, str]
) -> None:
    env = {**base_env, "MAILROOM_DATABASE_URL": database_url}
    done = subprocess.run(
        [script("mailroom"), "migrate", "--account-key", "uuid"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("mailroom migrate: failed: this installation's account key is bigint")
    )
    bad = subprocess.run(
        [script("mailroom"), "migrate"],
        env={**env, "MAILROOM_SCHEMA": "mail room"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "mailroom: invalid configuration: MAILROOM_SCHEMA: 'mail room' is invalid; expected a name of 1 to 63 "
        "letters, digits, '_' or '$', not starting with a digit"
    )


def test_the_collector_uses_its_schema_whatever_public_holds_and_the_database_search_path(
    empty_database_url: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    url = empty_database_url
    with psycopg.connect(url, autocommit=True) as conn:  # an app whose tables have mailroom's names
        conn.execute("CREATE TABLE public.accounts (id bigint PRIMARY KEY, email text, login text, status text)")
        conn.execute("INSERT INTO public.accounts VALUES (1, 'impostor@example.com', 'impostor', 'provisioned')")
        conn.execute("CREATE TABLE public.jobs (name text, channel text)")
        conn.execute("CREATE TABLE public.tokens (id bigint)")
    env = {**base_env, "MAILROOM_DATABASE_URL": url, "MAILROOM_SECRET_KEY": TEST_KEY_HEX}
    done = subprocess.run([script("mailroom"), "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "moved" not in done.stdout
    with psycopg.connect(url, autocommit=True) as app:  # default search_path: "$user", public
        app.execute("SELECT mailroom.mailroom_register_queue('mailroom', 'token_insert')")
        app.execute("INSERT INTO mailroom.accounts (id, email, login) VALUES (1, 'real@example.com', 'real')")
    drained = subprocess.run([script("collector"), "--drain"], env=env, capture_output=True, timeout=120, cwd=tmp_path)
    assert drained.returncode == 0, drained.stderr.decode()
    records = [r for line in drained.stdout.splitlines() for r in decode_line(line)[0]]
    assert [(r.email, r.login) for r in records] == [("real@example.com", "real")]
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM public.jobs").fetchone() == (0,)
        assert conn.execute("SELECT email FROM public.accounts").fetchall() == [("impostor@example.com",)]
    status = subprocess.run([script("mailroom"), "status", "--json"], env=env, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert '"mailroom"' in status.stdout
