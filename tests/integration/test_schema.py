"""The schema and its triggers, against a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from conftest import pg_connect

from mailroom import migrate


def _account(db: psycopg.Connection, login: str, status: str = "provisioned") -> int:
    row = db.execute(
        "INSERT INTO accounts (email, login, status) VALUES (%s, %s, %s) RETURNING id",
        (f"{login}@example.com", login, status),
    ).fetchone()
    assert row
    return int(row[0])


def test_a_provisioned_account_gets_an_activation_token_in_the_same_transaction(db: psycopg.Connection) -> None:
    with db.transaction():
        account = _account(db, "alice")
        tokens = db.execute("SELECT action::text FROM tokens WHERE account = %s", (account,)).fetchall()
    assert tokens == [("activation",)]


def test_an_account_created_active_gets_no_token(db: psycopg.Connection) -> None:
    _account(db, "bob", "active")
    assert db.execute("SELECT count(*) FROM tokens").fetchone() == (0,)


def test_secrets_are_32_bytes_and_codes_5_digits_and_both_differ_across_tokens(db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 'u' || i || '@x.org', 'u' || i FROM generate_series(1, 500) i"
    )
    rows = db.execute("SELECT secret, code FROM tokens").fetchall()
    assert len(rows) == 500
    assert all(len(secret) == 32 for secret, _ in rows)
    assert all(len(code) == 5 and code.isascii() and code.isdigit() for _, code in rows)
    assert len({bytes(secret) for secret, _ in rows}) == 500
    # 500 draws from 100,000 codes: collisions happen, but not many (expected about 1.2).
    assert len({code for _, code in rows}) > 480


def test_tokens_expire_fifteen_minutes_after_creation(db: psycopg.Connection) -> None:
    _account(db, "carol")
    assert db.execute("SELECT expires_at - created_at = interval '15 minutes' FROM tokens").fetchone() == (True,)


def test_consuming_an_activation_token_activates_the_account(db: psycopg.Connection) -> None:
    account = _account(db, "dave")
    db.execute("UPDATE tokens SET consumed_at = now() WHERE account = %s", (account,))
    status, activated_at, changed_at = db.execute(
        "SELECT status::text, activated_at, status_changed_at FROM accounts WHERE id = %s", (account,)
    ).fetchone()
    assert status == "active" and activated_at is not None and changed_at is not None


def test_consuming_a_recovery_token_does_not_change_the_account(db: psycopg.Connection) -> None:
    account = _account(db, "erin", "suspended")
    db.execute("INSERT INTO tokens (account, action) VALUES (%s, 'password_recovery')", (account,))
    db.execute("UPDATE tokens SET consumed_at = now() WHERE account = %s", (account,))
    assert db.execute("SELECT status::text FROM accounts WHERE id = %s", (account,)).fetchone() == ("suspended",)


def test_status_changes_stamp_their_times(db: psycopg.Connection) -> None:
    account = _account(db, "frank")
    db.execute("UPDATE accounts SET status = 'active' WHERE id = %s", (account,))
    db.execute("UPDATE accounts SET status = 'suspended' WHERE id = %s", (account,))
    db.execute("UPDATE accounts SET status = 'active' WHERE id = %s", (account,))
    row = db.execute(
        "SELECT status::text, activated_at, suspended_at, unsuspended_at, status_changed_at "
        "FROM accounts WHERE id = %s",
        (account,),
    ).fetchone()
    assert row[0] == "active" and all(stamp is not None for stamp in row[1:])


def test_unsuspending_a_never_activated_account_returns_it_to_provisioned(db: psycopg.Connection) -> None:
    account = _account(db, "gina")
    db.execute("UPDATE accounts SET status = 'suspended' WHERE id = %s", (account,))
    db.execute("UPDATE accounts SET status = 'active' WHERE id = %s", (account,))
    status, activated_at, unsuspended_at = db.execute(
        "SELECT status::text, activated_at, unsuspended_at FROM accounts WHERE id = %s", (account,)
    ).fetchone()
    assert (status, activated_at) == ("provisioned", None) and unsuspended_at is not None


def test_every_token_insert_notifies_the_registered_channel(db: psycopg.Connection, database_url: str) -> None:
    db.execute("SELECT mailroom_register_queue('mailroom', 'token_insert')")
    with pg_connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN token_insert")
        account = _account(db, "hank", "active")
        db.execute("INSERT INTO tokens (account, action) VALUES (%s, 'password_recovery')", (account,))
        got = list(listener.notifies(timeout=2.0, stop_after=1))
    assert [n.channel for n in got] == ["token_insert"]


def test_a_token_insert_queues_the_token_for_every_registered_consumer(db: psycopg.Connection) -> None:
    db.execute("SELECT mailroom_register_queue('mailroom', 'token_insert')")
    db.execute("SELECT mailroom_register_queue('audit', 'audit_wakeup')")
    _account(db, "ivy")
    assert db.execute("SELECT job FROM job_tokens ORDER BY job").fetchall() == [("audit",), ("mailroom",)]


def test_registering_a_new_queue_backfills_only_tokens_that_could_still_be_emitted(db: psycopg.Connection) -> None:
    for login in ("j1", "j2", "j3"):
        _account(db, login)
    db.execute("UPDATE tokens SET consumed_at = now() WHERE id = 1")
    db.execute("UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = 2")
    db.execute("SELECT mailroom_register_queue('late', 'token_insert')")
    assert db.execute("SELECT token FROM job_tokens WHERE job = 'late'").fetchall() == [(3,)]


def test_the_secret_must_be_32_bytes_and_the_code_5_digits(db: psycopg.Connection) -> None:
    account = _account(db, "kim", "active")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO tokens (account, action, secret) VALUES (%s, 'activation', '\\x00')", (account,))
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO tokens (account, action, code) VALUES (%s, 'activation', '1234')", (account,))


def test_deleting_an_account_deletes_its_tokens(db: psycopg.Connection) -> None:
    account = _account(db, "lee")
    db.execute("DELETE FROM accounts WHERE id = %s", (account,))
    assert db.execute("SELECT count(*) FROM tokens").fetchone() == (0,)


def test_migrations_apply_roll_back_and_reapply_cleanly(empty_database_url: str) -> None:
    applied = migrate.apply(empty_database_url).applied
    assert applied[0] == "0001_schema"
    assert migrate.apply(empty_database_url).applied == []
    undone: list[str] = []
    while rolled := migrate.rollback_last(empty_database_url).rolled_back:
        assert len(rolled) == 1
        undone += rolled
    assert undone == list(reversed(applied))
    with pg_connect(empty_database_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename IN ('accounts', 'tokens', 'jobs', 'job_tokens')"
        ).fetchone()
        types = conn.execute(
            "SELECT count(*) FROM pg_type WHERE typname IN ('account_status', 'token_action')"
        ).fetchone()
    assert left == (0,) and types == (0,)
    assert migrate.apply(empty_database_url).applied == applied


# A control character (Unicode category Cc) in an email or login: refused by the schema
# (migrations/0005_no_control_chars.sql), since the wire format carries one batch per line.
CONTROL_CHARS = ["\n", "\r", "\t", "\x01", "\x1f", "\x7f", "\x85", "\x9f"]


@pytest.mark.parametrize("char", CONTROL_CHARS, ids=[f"U+{ord(c):04X}" for c in CONTROL_CHARS])
@pytest.mark.parametrize("column", ["email", "login"])
def test_an_account_with_a_control_character_in_its_email_or_login_is_refused(
    db: psycopg.Connection, column: str, char: str
) -> None:
    values = {"email": "cc@example.com", "login": "cc"}
    values[column] = values[column].replace("c", "c" + char, 1)
    with pytest.raises(psycopg.errors.CheckViolation, match=f"accounts_{column}_has_no_control_chars"):
        db.execute("INSERT INTO accounts (email, login) VALUES (%(email)s, %(login)s)", values)
    _account(db, "plain")  # an UPDATE is refused too
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(f"UPDATE accounts SET {column} = %s WHERE login = 'plain'", (values[column],))


def test_other_unicode_in_an_email_or_login_is_accepted(db: psycopg.Connection) -> None:
    # Not category Cc: format characters, line/paragraph separators, non-Latin letters.
    db.execute("INSERT INTO accounts (email, login) VALUES (%s, %s)", ("zoë@例え.jp", 'Zoë\u200d\u2028李 "x, y"'))


def test_the_control_character_migration_reports_existing_offenders_and_applies_once_they_are_fixed(
    empty_database_url: str,
) -> None:
    migrate.apply(empty_database_url)
    undone: list[str] = []
    while "0005_no_control_chars" not in undone:  # back to just before it (and what came after)
        rolled = migrate.rollback_last(empty_database_url).rolled_back
        assert rolled, undone
        undone += rolled
    with pg_connect(empty_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO accounts (email, login) VALUES ('ok@example.com', 'ok'), "
            "('two@example.com', E'two\\nlines'), (E'tab\\t@example.com', 'tab'), ('c1@example.com', E'c1\\u0085')"
        )
        with pytest.raises(migrate.MigrationFailed) as failed:
            migrate.apply(empty_database_url)
        message = str(failed.value)
        assert "0005_no_control_chars: 3 account(s) have a control character" in message
        query = message.split("list them with: ", 1)[1].split("; fix or delete", 1)[0]
        assert sorted(row[2] for row in conn.execute(query).fetchall()) == ["c1\x85", "tab", "two\nlines"]
        # Nothing of the failed migration stayed: the offenders are still there to fix.
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (4,)
        conn.execute(f"DELETE FROM accounts WHERE id IN (SELECT id FROM ({query}) q)")
    assert migrate.apply(empty_database_url).applied == list(reversed(undone))
