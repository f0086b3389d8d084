"""The reputation guard (MAILROOM_RECOVERY_COOLDOWN): at most one email per account and
action per cooldown, decided by the collector's chunk query and Queue.chunk, against a real
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from conftest import pg_connect

from collector.connection import register_and_listen, try_lock
from collector.output import LineWriter
from collector.queue import Queue
from collector.signals import StopFlag
from mailroom.actions import ACTIVATION
from mailroom.settings import CollectorSettings
from mailroom.signing import verify
from mailroom.wire import Record, decode_line

QUEUE = "mailroom"
KEY = bytes.fromhex("5f" * 32)


class Captured(LineWriter):
    def __init__(self) -> None:
        super().__init__(fd=-1)
        self.written: list[bytes] = []

    def write_line(self, line: bytes) -> None:
        self.written.append(line)

    def wait_until_read(self) -> None:
        pass

    def records(self) -> list[Record]:
        out: list[Record] = []
        for line in self.written:
            records, rejected = decode_line(line.rstrip(b"\n"))
            assert not rejected
            out.extend(records)
        return out


@pytest.fixture
def make_queue(database_url: str, secret_key_hex: str) -> Iterator[Callable[..., Queue]]:
    conns: list[psycopg.Connection] = []

    def make(cooldown_s: float = 60.0, limit: int = 10) -> Queue:
        settings = CollectorSettings.from_environ(
            {"MAILROOM_DATABASE_URL": database_url, "MAILROOM_SECRET_KEY": secret_key_hex}
        )
        conn = pg_connect(database_url, autocommit=True)
        conns.append(conn)
        assert try_lock(conn, QUEUE)
        register_and_listen(conn, settings)
        return Queue(conn, QUEUE, limit, settings.secret_key, cooldown_s)

    yield make
    for conn in conns:
        conn.close()


def _active_account(db: psycopg.Connection, login: str) -> int:
    row = db.execute(
        "INSERT INTO accounts (email, login, status, activated_at) VALUES (%s, %s, 'active', 1) RETURNING id",
        (f"{login}@example.com", login),
    ).fetchone()
    assert row
    return int(row[0])


def _recovery_requests(db: psycopg.Connection, account: int, seconds_ago: list[float]) -> list[int]:
    """One recovery token per entry, created that many seconds ago, inserted in that order."""
    ids = []
    for ago in seconds_ago:
        row = db.execute(
            "INSERT INTO tokens (account, action, created_at) "
            "VALUES (%s, 'password_recovery', now() - make_interval(secs => %s)) RETURNING id",
            (account, ago),
        ).fetchone()
        assert row
        ids.append(int(row[0]))
    return ids


def _drain(queue: Queue) -> tuple[list[Record], int, int]:
    """(records emitted, tokens read, tokens skipped by the cooldown)."""
    out = Captured()
    result = queue.drain(out, StopFlag())
    assert result.emitted == len(out.records())
    return out.records(), result.claimed, result.cooled


def _suppressed(db: psycopg.Connection, account: int) -> list[bool]:
    return [r[0] for r in db.execute("SELECT suppressed FROM tokens WHERE account = %s ORDER BY id", (account,))]


def _consume(db: psycopg.Connection, record: Record) -> int | None:
    secret = verify(KEY, record.secret, record.action, record.code)
    row = db.execute("SELECT mailroom_consume_token(%s, %s)", (secret, record.code)).fetchone()
    return row[0] if row else None


@pytest.mark.parametrize("limit", [1, 7, 200])
def test_100_recovery_requests_within_the_cooldown_produce_one_email(
    make_queue: Callable[..., Queue], db: psycopg.Connection, limit: int
) -> None:
    queue = make_queue(limit=limit)
    victim = _active_account(db, "victim")
    ids = _recovery_requests(db, victim, [10 - i * 0.1 for i in range(100)])  # 100 requests over 10 s

    records, read, cooled = _drain(queue)
    assert [r.login for r in records] == ["victim"]
    assert (read, cooled) == (100, 99)
    assert _suppressed(db, victim) == [False] + [True] * 99
    # The one email is the first request's, and its link works.
    first = db.execute("SELECT code FROM tokens WHERE id = %s", (ids[0],)).fetchone()
    assert first and records[0].code == first[0]
    assert _consume(db, records[0]) == victim


def test_requests_after_an_email_went_out_are_skipped_until_the_cooldown_has_passed(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue()
    victim = _active_account(db, "victim")
    _recovery_requests(db, victim, [5])
    assert len(_drain(queue)[0]) == 1
    _recovery_requests(db, victim, [4, 3, 2, 1, 0])  # a later flood, read separately
    assert _drain(queue) == ([], 5, 5)
    # Skipped tokens were still created and stay valid: a link to one would work.
    valid = db.execute(
        "SELECT count(*) FROM tokens WHERE account = %s AND consumed_at IS NULL AND expires_at > now()", (victim,)
    ).fetchone()
    assert valid and valid[0] == 6


# limit 2: -100 is skipped in the first chunk, and must be marked before the second chunk's
# claim looks for emails that went out (else it would cover -50).
@pytest.mark.parametrize("limit", [1, 2, 10])
def test_a_request_after_the_cooldown_of_the_last_email_is_emailed_again(
    make_queue: Callable[..., Queue], db: psycopg.Connection, limit: int
) -> None:
    queue = make_queue(limit=limit)
    user = _active_account(db, "user")
    # Emailed at -130; -100 is within its cooldown; -50 is 80 s after the last email (a
    # skipped request does not extend the window); 0 is within the cooldown of -50's email.
    _recovery_requests(db, user, [130, 100, 50, 0])
    records, read, cooled = _drain(queue)
    assert (len(records), read, cooled) == (2, 4, 2)
    assert _suppressed(db, user) == [False, True, False, True]


def test_a_request_read_after_the_cooldown_of_an_earlier_read_is_emailed(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue()
    user = _active_account(db, "user")
    _recovery_requests(db, user, [90])
    assert len(_drain(queue)[0]) == 1
    _recovery_requests(db, user, [20])
    assert len(_drain(queue)[0]) == 1


def test_other_accounts_are_not_affected(make_queue: Callable[..., Queue], db: psycopg.Connection) -> None:
    queue = make_queue()
    victim, bystander = _active_account(db, "victim"), _active_account(db, "bystander")
    _recovery_requests(db, victim, [3, 2, 1])
    _recovery_requests(db, bystander, [2])
    records, _, cooled = _drain(queue)
    assert sorted(r.login for r in records) == ["bystander", "victim"] and cooled == 2


def test_repeated_activation_emails_share_the_same_window(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue()
    db.execute("INSERT INTO accounts (email, login) VALUES ('new@example.com', 'new')")  # its activation token
    account = db.execute("SELECT id FROM accounts WHERE login = 'new'").fetchone()[0]
    for _ in range(4):  # "send me the activation email again"
        db.execute("INSERT INTO tokens (account, action) VALUES (%s, 'activation')", (account,))
    records, read, cooled = _drain(queue)
    assert [(r.login, r.action) for r in records] == [("new", ACTIVATION)]
    assert (read, cooled) == (5, 4)


def test_a_cooldown_of_0_emails_every_request(make_queue: Callable[..., Queue], db: psycopg.Connection) -> None:
    queue = make_queue(cooldown_s=0)
    victim = _active_account(db, "victim")
    _recovery_requests(db, victim, [10 - i * 0.1 for i in range(100)])
    records, read, cooled = _drain(queue)
    assert (len(records), read, cooled) == (100, 100, 0)
    assert not any(_suppressed(db, victim))


def test_a_request_after_the_last_link_was_used_is_emailed(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue()
    user = _active_account(db, "user")
    _recovery_requests(db, user, [0])
    records, _, _ = _drain(queue)
    assert _consume(db, records[0]) == user  # the password was reset with it
    _recovery_requests(db, user, [0])  # and a new request, seconds later
    assert len(_drain(queue)[0]) == 1


def test_a_token_that_was_not_sendable_does_not_start_a_window(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue()
    user = _active_account(db, "user")
    db.execute("UPDATE accounts SET status = 'suspended' WHERE id = %s", (user,))
    _recovery_requests(db, user, [2])
    assert _drain(queue) == ([], 1, 0)  # not sendable: no email, and not a cooldown skip
    db.execute("UPDATE accounts SET status = 'active' WHERE id = %s", (user,))
    _recovery_requests(db, user, [1])
    assert len(_drain(queue)[0]) == 1
    assert _suppressed(db, user) == [True, False]


def test_a_token_of_the_chunk_claimed_ahead_is_cooled_by_an_email_of_the_chunk_before_it(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    # Five accounts, one request each: a full chunk of the common kind, so the collector claims
    # the next chunk while it writes this one. That chunk holds account 1's second request.
    queue = make_queue(limit=5)
    accounts = [_active_account(db, f"ahead{i}") for i in range(1, 6)]
    for account in accounts:
        _recovery_requests(db, account, [20])
    _recovery_requests(db, accounts[0], [10])

    records, read, cooled = _drain(queue)
    assert sorted(r.login for r in records) == [f"ahead{i}" for i in range(1, 6)]
    assert (read, cooled) == (6, 1)
    assert _suppressed(db, accounts[0]) == [False, True]
