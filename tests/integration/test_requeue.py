"""`mailroom requeue` (mailroom/commands/requeue.py, sql/admin.sql) and the token reference
it selects by, against a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from conftest import pg_connect

from mailroom.actions import PASSWORD_RECOVERY
from mailroom.commands.requeue import RequeueError, Selection, parse_since, read_rejects, report, requeue
from mailroom.signing import sign, token_ref

QUEUE, CHANNEL = "mailroom", "token_insert"
KEY = bytes.fromhex("5f" * 32)


@pytest.fixture
def queue_db(db: psycopg.Connection) -> psycopg.Connection:
    """A database with the queue registered and empty (as after the collector emitted everything)."""
    db.execute("SELECT mailroom_register_queue(%s, %s)", (QUEUE, CHANNEL))
    return db


def _account(db: psycopg.Connection, login: str) -> int:
    row = db.execute(
        "INSERT INTO accounts (email, login, status, activated_at) VALUES (%s, %s, 'active', 1) RETURNING id",
        (f"{login}@example.com", login),
    ).fetchone()
    assert row
    return int(row[0])


def _token(db: psycopg.Connection, account: int, action: str = "password_recovery", created_ago_s: float = 0) -> int:
    row = db.execute(
        "INSERT INTO tokens (account, action, created_at) VALUES (%s, %s, now() - make_interval(secs => %s)) "
        "RETURNING id",
        (account, action, created_ago_s),
    ).fetchone()
    assert row
    return int(row[0])


def _emitted_everything(db: psycopg.Connection) -> None:
    db.execute("DELETE FROM job_tokens")


def _queued(db: psycopg.Connection) -> list[int]:
    return [r[0] for r in db.execute("SELECT token FROM job_tokens WHERE job = %s ORDER BY token", (QUEUE,))]


def _ref_in_sql(db: psycopg.Connection, token_id: int) -> str:
    row = db.execute("SELECT left(encode(sha256(secret), 'hex'), 16) FROM tokens WHERE id = %s", (token_id,)).fetchone()
    assert row
    return str(row[0])


def test_token_ref_of_a_signed_link_equals_the_sql_reference_of_its_row(queue_db: psycopg.Connection) -> None:
    token_id = _token(queue_db, _account(queue_db, "alice"))
    row = queue_db.execute("SELECT secret, code FROM tokens WHERE id = %s", (token_id,)).fetchone()
    assert row
    signed = sign(KEY, PASSWORD_RECOVERY, bytes(row[0]), row[1])
    assert token_ref(signed) == _ref_in_sql(queue_db, token_id)
    found = queue_db.execute(
        "SELECT id FROM tokens WHERE left(encode(sha256(secret), 'hex'), 16) = %s", (token_ref(signed),)
    ).fetchall()
    assert found == [(token_id,)]


def test_requeue_by_address_queues_the_valid_tokens_only_and_wakes_the_collector(
    queue_db: psycopg.Connection, database_url: str
) -> None:
    alice = _account(queue_db, "alice")
    valid = _token(queue_db, alice)
    consumed = _token(queue_db, alice)
    expired = _token(queue_db, alice)
    other = _token(queue_db, _account(queue_db, "bob"))
    queue_db.execute("UPDATE tokens SET consumed_at = now() WHERE id = %s", (consumed,))
    queue_db.execute("UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = %s", (expired,))
    _emitted_everything(queue_db)

    with pg_connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN token_insert")
        result = requeue(queue_db, QUEUE, Selection(emails=("alice@example.com",)))
        woken = list(listener.notifies(timeout=5, stop_after=1))
    assert len(woken) == 1
    assert result.queued == [valid] and _queued(queue_db) == [valid]
    assert [c.id for c in result.candidates] == [valid, consumed, expired]
    assert (result.already, result.invalid) == (0, 2)
    assert other not in _queued(queue_db)
    assert report(result, Selection(emails=("alice@example.com",)))[-1] == (
        "queued 1 token(s) for queue 'mailroom'; 0 already queued; 2 not valid any more (consumed or expired)"
    )


def test_requeue_is_idempotent(queue_db: psycopg.Connection) -> None:
    alice = _account(queue_db, "alice")
    token = _token(queue_db, alice)
    _emitted_everything(queue_db)
    selection = Selection(emails=("alice@example.com",))
    assert requeue(queue_db, QUEUE, selection).queued == [token]
    again = requeue(queue_db, QUEUE, selection)
    assert (again.queued, again.already) == ([], 1)
    assert _queued(queue_db) == [token]
    assert "already queued: id=" in report(again, selection)[0]


def test_requeue_by_reference_queues_exactly_that_token(queue_db: psycopg.Connection) -> None:
    alice = _account(queue_db, "alice")
    first, second = _token(queue_db, alice), _token(queue_db, alice)
    _emitted_everything(queue_db)
    ref = _ref_in_sql(queue_db, second)
    result = requeue(queue_db, QUEUE, Selection(refs=(ref, "0" * 16)))
    assert result.queued == [second] and _queued(queue_db) == [second] and first not in result.queued
    lines = report(result, Selection(refs=(ref, "0" * 16)))
    assert f"ref={ref}" in lines[0] and "no token: ref=0000000000000000" in lines


def test_requeue_since_takes_every_token_created_since_then(queue_db: psycopg.Connection) -> None:
    alice, bob = _account(queue_db, "alice"), _account(queue_db, "bob")
    old = _token(queue_db, alice, created_ago_s=3 * 3600)
    new_alice, new_bob = _token(queue_db, alice, created_ago_s=600), _token(queue_db, bob, created_ago_s=60)
    queue_db.execute("UPDATE tokens SET expires_at = now() + interval '1 hour'")  # all three still valid
    _emitted_everything(queue_db)
    since = parse_since("2h")
    assert requeue(queue_db, QUEUE, Selection(since=since)).queued == [new_alice, new_bob]
    assert old not in _queued(queue_db)


def test_an_address_with_since_takes_only_that_accounts_recent_tokens(queue_db: psycopg.Connection) -> None:
    alice, bob = _account(queue_db, "alice"), _account(queue_db, "bob")
    _token(queue_db, alice, created_ago_s=600)
    recent = _token(queue_db, alice, created_ago_s=30)
    _token(queue_db, bob, created_ago_s=30)
    _emitted_everything(queue_db)
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert requeue(queue_db, QUEUE, Selection(emails=("alice@example.com",), since=since)).queued == [recent]


def test_requeue_can_be_limited_to_one_action(queue_db: psycopg.Connection) -> None:
    queue_db.execute("INSERT INTO accounts (email, login) VALUES ('new@example.com', 'new')")  # activation token
    account = queue_db.execute("SELECT id FROM accounts WHERE login = 'new'").fetchone()[0]
    recovery = _token(queue_db, account)
    _emitted_everything(queue_db)
    result = requeue(queue_db, QUEUE, Selection(emails=("new@example.com",), action="password_recovery"), dry_run=True)
    assert [c.id for c in result.candidates] == [recovery]


def test_requeue_names_the_actions_when_asked_for_an_unknown_one(queue_db: psycopg.Connection) -> None:
    with pytest.raises(RequeueError, match="unknown action 'nope'; the actions are: activation, password_recovery"):
        requeue(queue_db, QUEUE, Selection(emails=("new@example.com",), action="nope"), dry_run=True)


def test_a_dry_run_says_what_it_would_queue_and_changes_nothing(
    queue_db: psycopg.Connection, database_url: str
) -> None:
    token = _token(queue_db, _account(queue_db, "alice"))
    queue_db.execute("UPDATE tokens SET suppressed = true WHERE id = %s", (token,))
    _emitted_everything(queue_db)
    selection = Selection(emails=("alice@example.com",))
    with pg_connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN token_insert")
        result = requeue(queue_db, QUEUE, selection, dry_run=True)
        queue_db.execute("SELECT pg_notify('token_insert', 'marker')")  # delivered in commit order
        first = next(iter(listener.notifies(timeout=10, stop_after=1)))
        assert first.payload == "marker"
    assert result.queued == [token] and _queued(queue_db) == []
    assert queue_db.execute("SELECT suppressed FROM tokens WHERE id = %s", (token,)).fetchone() == (True,)
    lines = report(result, selection)
    assert lines[0].startswith(f"would queue: id={token} action=password_recovery email=alice@example.com created=")
    assert lines[-1].startswith("would queue 1 token(s)") and lines[-1].endswith("dry run, nothing changed")


def test_a_requeued_token_loses_its_suppressed_mark(queue_db: psycopg.Connection) -> None:
    token = _token(queue_db, _account(queue_db, "alice"))
    queue_db.execute("UPDATE tokens SET suppressed = true WHERE id = %s", (token,))
    _emitted_everything(queue_db)
    requeue(queue_db, QUEUE, Selection(emails=("alice@example.com",)))
    assert queue_db.execute("SELECT suppressed FROM tokens WHERE id = %s", (token,)).fetchone() == (False,)


def test_requeue_on_a_queue_that_is_not_registered_says_so(db: psycopg.Connection) -> None:
    with pytest.raises(RequeueError, match="queue 'nosuch' is not registered"):
        requeue(db, "nosuch", Selection(emails=("alice@example.com",)))


def test_a_rejects_file_gives_its_token_refs_and_else_its_addresses(tmp_path: Path) -> None:
    path = tmp_path / "rejects.jsonl"
    rows = [
        {"time": "t", "reason": "r", "action": "activation", "recipient": "a@x.org", "token_ref": "ABCDEF0123456789"},
        {"time": "t", "reason": "r", "action": "activation", "recipient": "b@x.org"},
        {"time": "t", "reason": "malformed line", "record": ["garbage"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_rejects(path) == (["abcdef0123456789"], ["b@x.org"], 1)


def test_since_takes_an_iso_time_or_a_duration() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    assert parse_since("2026-01-31T09:30:00Z") == datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert parse_since("2026-01-31T09:30:00") == datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert parse_since("2026-01-31T09:30:00+01:00") == datetime(2026, 1, 31, 8, 30, tzinfo=UTC)


def test_a_token_whose_address_is_suppressed_is_skipped_unless_included(queue_db: psycopg.Connection) -> None:
    listed, other = _account(queue_db, "listed"), _account(queue_db, "other")
    tokens = [_token(queue_db, listed), _token(queue_db, other)]
    _emitted_everything(queue_db)
    queue_db.execute("SELECT mailroom_suppress('listed@EXAMPLE.com', 'bounce')")
    selection = Selection(emails=("listed@example.com", "other@example.com"))
    result = requeue(queue_db, QUEUE, selection)
    assert result.queued == [tokens[1]] and _queued(queue_db) == [tokens[1]]
    lines = report(result, selection)
    assert lines[0].startswith("skipped: the address is suppressed (`mailroom suppressions remove` it first): id=")
    assert lines[-1].endswith("; 1 skipped: address suppressed")
    assert requeue(queue_db, QUEUE, selection, include_suppressed=True).queued == [tokens[0]]


def test_a_suppressed_address_with_a_unicode_domain_is_skipped_too(queue_db: psycopg.Connection) -> None:
    row = queue_db.execute(
        "INSERT INTO accounts (email, login, status, activated_at) VALUES ('zoë@bücher.de', 'zoe', 'active', 1) "
        "RETURNING id"
    ).fetchone()
    assert row
    token = _token(queue_db, int(row[0]))
    _emitted_everything(queue_db)
    queue_db.execute("SELECT mailroom_suppress('zoë@xn--bcher-kva.de', 'complaint')")
    assert requeue(queue_db, QUEUE, Selection(emails=("zoë@bücher.de",))).queued == []
    assert requeue(queue_db, QUEUE, Selection(emails=("zoë@bücher.de",)), include_suppressed=True).queued == [token]
