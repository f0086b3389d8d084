"""The SQL an app runs (migrations/0002_app.sql), against a real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg
import pytest
from conftest import pg_connect

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.signing import sign
from mailroom.verify import verify_link_token

KEY = bytes.fromhex("5f" * 32)


def _create_account(db: psycopg.Connection, login: str, status: str = "provisioned") -> int:
    # What the app runs to sign a user up: the activation token (and its mail) follows.
    row = db.execute(
        "INSERT INTO accounts (email, login, status) VALUES (%s, %s, %s) RETURNING id",
        (f"{login}@example.com", login, status),
    ).fetchone()
    assert row
    return int(row[0])


def _token(db: psycopg.Connection, account: int, action: str) -> tuple[bytes, str]:
    row = db.execute(
        "SELECT secret, code FROM tokens WHERE account = %s AND action = %s ORDER BY id DESC LIMIT 1", (account, action)
    ).fetchone()
    assert row
    return bytes(row[0]), row[1]


def _request_recovery(db: psycopg.Connection, email: str) -> None:
    # What the app runs on "forgot my password" (a no-op for an unknown or inactive address).
    db.execute(
        "INSERT INTO tokens (account, action) "
        "SELECT id, 'password_recovery' FROM accounts WHERE email = %s AND status = 'active'",
        (email,),
    )


def _consume(db: psycopg.Connection, secret: bytes, code: str | None) -> int | None:
    row = db.execute("SELECT mailroom_consume_token(%s, %s)", (secret, code)).fetchone()
    assert row
    return row[0]


def _status(db: psycopg.Connection, account: int) -> str:
    row = db.execute("SELECT status::text FROM accounts WHERE id = %s", (account,)).fetchone()
    assert row
    return str(row[0])


def _consumed(db: psycopg.Connection, secret: bytes) -> bool:
    row = db.execute("SELECT consumed_at IS NOT NULL FROM tokens WHERE secret = %s", (secret,)).fetchone()
    assert row
    return bool(row[0])


def test_a_valid_activation_token_is_consumed_and_activates_the_account(db: psycopg.Connection) -> None:
    account = _create_account(db, "alice")
    secret, _ = _token(db, account, "activation")
    assert _status(db, account) == "provisioned"
    assert _consume(db, secret, None) == account
    assert _status(db, account) == "active"
    assert _consumed(db, secret)


def test_activation_ignores_the_code(db: psycopg.Connection) -> None:
    account = _create_account(db, "amy")
    secret, code = _token(db, account, "activation")
    wrong = "00000" if code != "00000" else "11111"
    assert _consume(db, secret, wrong) == account


def test_the_full_app_flow_from_link_to_active_account(db: psycopg.Connection) -> None:
    account = _create_account(db, "anna")
    secret, code = _token(db, account, "activation")
    link_token = sign(KEY, ACTIVATION, secret, code)  # what the collector puts in the mail
    verified = verify_link_token(KEY, link_token, "activation")
    assert _consume(db, verified, None) == account and _status(db, account) == "active"

    _request_recovery(db, "anna@example.com")
    secret, code = _token(db, account, "password_recovery")
    link_token = sign(KEY, PASSWORD_RECOVERY, secret, code)
    verified = verify_link_token(KEY, link_token, "password_recovery", code)
    assert _consume(db, verified, code) == account


def test_a_recovery_token_needs_its_code_and_a_wrong_one_leaves_it_unconsumed(db: psycopg.Connection) -> None:
    account = _create_account(db, "bob", "active")
    _request_recovery(db, "bob@example.com")
    secret, code = _token(db, account, "password_recovery")
    wrong = "00000" if code != "00000" else "11111"
    assert _consume(db, secret, wrong) is None
    assert _consume(db, secret, None) is None
    assert not _consumed(db, secret)
    assert _consume(db, secret, code) == account
    assert _consumed(db, secret) and _status(db, account) == "active"


def test_an_expired_token_is_not_consumed(db: psycopg.Connection) -> None:
    account = _create_account(db, "carol")
    secret, _ = _token(db, account, "activation")
    db.execute("UPDATE tokens SET expires_at = now() - interval '1 second' WHERE secret = %s", (secret,))
    assert _consume(db, secret, None) is None
    assert not _consumed(db, secret) and _status(db, account) == "provisioned"


def test_a_token_is_consumed_once(db: psycopg.Connection) -> None:
    account = _create_account(db, "dave")
    secret, _ = _token(db, account, "activation")
    assert _consume(db, secret, None) == account
    assert _consume(db, secret, None) is None


def test_an_unknown_secret_returns_null(db: psycopg.Connection) -> None:
    _create_account(db, "erin")
    assert _consume(db, bytes(32), None) is None


def test_account_status_must_fit_the_action(db: psycopg.Connection) -> None:
    # Activation of a suspended account: refused (the app must not log a suspended user in).
    suspended = _create_account(db, "frank")
    secret, _ = _token(db, suspended, "activation")
    db.execute("UPDATE accounts SET status = 'suspended' WHERE id = %s", (suspended,))
    assert _consume(db, secret, None) is None and not _consumed(db, secret)
    # Password recovery of an account that was never activated: refused.
    provisioned = _create_account(db, "gina")
    db.execute("INSERT INTO tokens (account, action) VALUES (%s, 'password_recovery')", (provisioned,))
    secret, code = _token(db, provisioned, "password_recovery")
    assert _consume(db, secret, code) is None and not _consumed(db, secret)
    # Password recovery of a suspended account: refused.
    gone = _create_account(db, "hank", "active")
    db.execute("INSERT INTO tokens (account, action) VALUES (%s, 'password_recovery')", (gone,))
    db.execute("UPDATE accounts SET status = 'suspended' WHERE id = %s", (gone,))
    secret, code = _token(db, gone, "password_recovery")
    assert _consume(db, secret, code) is None and not _consumed(db, secret)


def test_request_recovery_for_an_unknown_address_inserts_nothing(db: psycopg.Connection) -> None:
    _request_recovery(db, "nobody@example.com")
    assert db.execute("SELECT count(*) FROM tokens").fetchone() == (0,)


def test_two_concurrent_consumers_of_one_token_exactly_one_wins(database_url: str, db: psycopg.Connection) -> None:
    account = _create_account(db, "ivan")
    secret, _ = _token(db, account, "activation")
    with pg_connect(database_url) as first, pg_connect(database_url) as second:
        # The first consumer updates the row and keeps its transaction open...
        won_first = first.execute("SELECT mailroom_consume_token(%s, NULL)", (secret,)).fetchone()
        results: list[object] = []

        def second_consumer() -> None:
            row = second.execute("SELECT mailroom_consume_token(%s, NULL)", (secret,)).fetchone()
            second.commit()
            results.append(row[0] if row else "no row")

        thread = threading.Thread(target=second_consumer)
        thread.start()
        # ...so the second one must be waiting for its row lock (not yet returned).
        pid = second.info.backend_pid
        for _ in range(500):
            row = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row and row[0] == "Lock":
                break
            thread.join(0.01)
        else:
            pytest.fail("the second consumer never waited for the token's row lock")
        assert results == []
        first.commit()
        thread.join(10)
        assert not thread.is_alive()
    assert won_first == (account,)
    assert results == [None]
    assert _status(db, account) == "active"


def test_many_concurrent_consumers_of_one_token_exactly_one_wins(database_url: str, db: psycopg.Connection) -> None:
    account = _create_account(db, "jane", "active")
    db.execute("INSERT INTO tokens (account, action) VALUES (%s, 'password_recovery')", (account,))
    secret, code = _token(db, account, "password_recovery")
    barrier = threading.Barrier(8)
    results: list[object] = []
    lock = threading.Lock()

    def consumer() -> None:
        with pg_connect(database_url, autocommit=True) as conn:
            barrier.wait()
            row = conn.execute("SELECT mailroom_consume_token(%s, %s)", (secret, code)).fetchone()
            with lock:
                results.append(row[0] if row else "no row")

    threads = [threading.Thread(target=consumer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results, key=str) == [account] + [None] * 7
