"""The collector's chunk query and drain against a real PostgreSQL, in-process: what is
emitted, in what form, and that progress is only committed after the write."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import pg_connect

from collector.connection import register_and_listen, try_lock
from collector.output import LineWriter
from collector.queue import CHUNKS_PER_COMMIT, Chunk, OutputClosed, Queue
from collector.signals import StopFlag
from mailroom.settings import CollectorSettings
from mailroom.wire import Record, decode_line

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "data" / "interop_vectors.json").read_text())
QUEUE = "mailroom"


class Captured(LineWriter):
    """Lines kept in memory; `on_line` runs after each write (to act in the middle of a drain)."""

    def __init__(self, on_line: Callable[[int], None] | None = None, fail: bool = False) -> None:
        super().__init__(fd=-1)
        self.written: list[bytes] = []
        self.on_line = on_line
        self.fail = fail

    def write_line(self, line: bytes) -> None:
        if self.fail:
            raise BrokenPipeError(32, "Broken pipe")
        self.written.append(line)
        if self.on_line:
            self.on_line(len(self.written))

    def records(self) -> list[Record]:
        out: list[Record] = []
        for line in self.written:
            records, rejected = decode_line(line.rstrip(b"\n"))
            assert not rejected
            out.extend(records)
        return out


def _settings(database_url: str, key_hex: str, limit: int) -> CollectorSettings:
    return CollectorSettings.from_environ(
        {"MAILROOM_DATABASE_URL": database_url, "MAILROOM_SECRET_KEY": key_hex, "MAILROOM_BATCH_LIMIT": str(limit)}
    )


@pytest.fixture
def make_queue(database_url: str, secret_key_hex: str) -> Iterator[Callable[..., Queue]]:
    conns: list[psycopg.Connection] = []

    def make(limit: int = 10, key_hex: str = secret_key_hex) -> Queue:
        settings = _settings(database_url, key_hex, limit)
        conn = pg_connect(database_url, autocommit=True)
        conns.append(conn)
        assert try_lock(conn, QUEUE)
        register_and_listen(conn, settings)
        return Queue(conn, QUEUE, limit, settings.secret_key)

    yield make
    for conn in conns:
        conn.close()


def _backlog(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM job_tokens WHERE job = %s", (QUEUE,)).fetchone()[0]


def _account(db: psycopg.Connection, login: str, status: str = "provisioned") -> int:
    return db.execute(
        "INSERT INTO accounts (email, login, status) VALUES (%s, %s, %s) RETURNING id",
        (f"{login}@example.com", login, status),
    ).fetchone()[0]


def test_expired_consumed_and_wrong_status_tokens_are_consumed_without_being_emitted(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue()
    _account(db, "fresh")  # the one good activation: emitted
    expired = _account(db, "expired")
    db.execute("UPDATE tokens SET expires_at = now() - interval '1 second' WHERE account = %s", (expired,))
    consumed_by_hand = _account(db, "consumed")
    db.execute("UPDATE tokens SET consumed_at = now() WHERE account = %s", (consumed_by_hand,))
    activation_of_active = _account(db, "already-active")
    db.execute("UPDATE accounts SET status = 'active' WHERE id = %s", (activation_of_active,))
    activation_of_suspended = _account(db, "suspended-provisioned")
    db.execute("UPDATE accounts SET status = 'suspended' WHERE id = %s", (activation_of_suspended,))
    good_recovery = _account(db, "recovering", "active")
    recovery_of_provisioned = _account(db, "not-yet-active", "active")
    recovery_of_suspended = _account(db, "suspended", "suspended")
    for account in (good_recovery, recovery_of_provisioned, recovery_of_suspended):
        db.execute("INSERT INTO tokens (account, action) VALUES (%s, 'password_recovery')", (account,))
    db.execute("UPDATE accounts SET status = 'provisioned' WHERE id = %s", (recovery_of_provisioned,))
    deleted = _account(db, "deleted-account")
    db.execute("DELETE FROM accounts WHERE id = %s", (deleted,))  # its token goes with it (cascade)

    out = Captured()
    result = queue.drain(out, StopFlag())
    assert sorted((r.login, r.action.number) for r in out.records()) == [("fresh", 1), ("recovering", 2)]
    assert result.claimed == 9 and result.emitted == 2
    assert _backlog(db) == 0


def test_a_chunk_of_only_unsendable_tokens_is_not_taken_for_the_end_of_the_queue(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue(limit=5)
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 'old' || i || '@example.com', 'old' || i "
        "FROM generate_series(1, 12) i"
    )
    db.execute("UPDATE tokens SET expires_at = now() - interval '1 minute'")
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 'new' || i || '@example.com', 'new' || i "
        "FROM generate_series(1, 3) i"
    )
    out = Captured()
    result = queue.drain(out, StopFlag())
    assert sorted(r.login for r in out.records()) == ["new1", "new2", "new3"]
    assert result.claimed == 15 and len(out.written) == 1


def test_the_interop_vectors_are_emitted_byte_for_byte(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue(limit=10, key_hex=VECTORS["secret_key_hex"])
    with db.transaction():
        for row in VECTORS["rows"]:
            account = db.execute(
                "INSERT INTO accounts (email, login, status) VALUES (%s, %s, 'active') RETURNING id",
                (row["email"], row["login"]),
            ).fetchone()[0]
            db.execute(
                "INSERT INTO tokens (account, action, secret, code) VALUES (%s, %s, %s, %s)",
                (account, row["action"], bytes.fromhex(row["secret_hex"]), row["code"]),
            )
            if row["account_status"] != "active":
                db.execute("UPDATE accounts SET status = %s WHERE id = %s", (row["account_status"], account))
    out = Captured()
    queue.drain(out, StopFlag())
    assert out.written == [VECTORS["line"].encode("utf-8") + b"\n"]


def test_a_failed_write_rolls_back_the_chunk_and_the_one_claimed_ahead(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue(limit=4)
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 'p' || i || '@example.com', 'p' || i FROM generate_series(1, 6) i"
    )
    with pytest.raises(OutputClosed) as raised:
        queue.drain(Captured(fail=True), StopFlag())
    # The first chunk was full: the second (the 2 others) was claimed while it was being
    # written, and both are rolled back and counted.
    assert raised.value.claimed == 6
    assert _backlog(db) == 6
    out = Captured()
    queue.drain(out, StopFlag())  # the same connection goes on after the rollback
    assert sorted(r.login for r in out.records()) == [f"p{i}" for i in range(1, 7)]


def test_a_lower_token_committed_during_a_drain_is_emitted_by_that_drain(
    make_queue: Callable[..., Queue], db: psycopg.Connection, database_url: str
) -> None:
    queue = make_queue(limit=10)
    with pg_connect(database_url) as late:
        late.execute("INSERT INTO accounts (email, login) VALUES ('straggler@example.com', 'straggler')")
        db.execute(
            "INSERT INTO accounts (email, login) SELECT 'b' || i || '@example.com', 'b' || i "
            "FROM generate_series(1, 35) i"
        )

        def commit_the_straggler(lines: int) -> None:
            if lines == 1:
                late.commit()  # its token id is below everything the drain has read so far

        out = Captured(on_line=commit_the_straggler)
        queue.drain(out, StopFlag())
    logins = [r.login for r in out.records()]
    assert sorted(logins) == sorted(["straggler"] + [f"b{i}" for i in range(1, 36)])
    assert logins[-1] == "straggler"
    assert _backlog(db) == 0


def test_a_stop_signal_ends_a_drain_after_the_chunk_in_progress_and_the_one_claimed_ahead(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue(limit=5)
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 's' || i || '@example.com', 's' || i FROM generate_series(1, 30) i"
    )
    stop = StopFlag()
    out = Captured(on_line=lambda lines: stop.set("SIGTERM") if lines == 2 else None)
    result = queue.drain(out, stop)
    # Chunk 3 was claimed while chunk 2 was written: it is emitted too, and nothing after it.
    assert len(out.written) == 3 and result.claimed == 15
    assert _backlog(db) == 15


# CHUNKS_PER_COMMIT is 10: line 10 ends a transaction (nothing is claimed ahead of the
# last chunk of a transaction), line 11 is the first chunk of the next one. A stop emits
# the chunk claimed ahead of the one in progress, commits, and leaves everything after
# them queued.
@pytest.mark.parametrize("stop_at_line", [1, 9, 10, 11, 13])
def test_a_stop_signal_leaves_every_entry_after_the_chunks_already_claimed_queued(
    make_queue: Callable[..., Queue], db: psycopg.Connection, stop_at_line: int
) -> None:
    queue = make_queue(limit=3)
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 'm' || i || '@example.com', 'm' || i FROM generate_series(1, 40) i"
    )
    stop = StopFlag()
    out = Captured(on_line=lambda lines: stop.set("SIGTERM") if lines == stop_at_line else None)
    result = queue.drain(out, stop)
    lines = stop_at_line if stop_at_line % CHUNKS_PER_COMMIT == 0 else stop_at_line + 1
    claimed = min(3 * lines, 40)  # line 14 is the last token's
    assert (len(out.written), result.claimed) == (lines, claimed)
    assert _backlog(db) == 40 - claimed
    rest = Captured()
    queue.drain(rest, StopFlag())
    emitted = [r.login for r in out.records() + rest.records()]
    assert sorted(emitted) == sorted(f"m{i}" for i in range(1, 41))


def test_only_one_session_holds_the_queue_lock(database_url: str) -> None:
    with pg_connect(database_url, autocommit=True) as a, pg_connect(database_url, autocommit=True) as b:
        assert try_lock(a, QUEUE)
        assert not try_lock(b, QUEUE)
        assert try_lock(b, "another_queue")
    with pg_connect(database_url, autocommit=True) as c:
        assert try_lock(c, QUEUE)  # released with the sessions


def test_without_pipeline_mode_the_claim_ahead_runs_as_the_next_statement(
    make_queue: Callable[..., Queue], db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older system libpq (before 14) has no pipeline mode: the drain reads the same
    # chunks, one statement after the other, and a stop still emits the chunk claimed ahead.
    monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: False))
    queue = make_queue(limit=5)
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 'n' || i || '@example.com', 'n' || i FROM generate_series(1, 30) i"
    )
    stop = StopFlag()
    out = Captured(on_line=lambda lines: stop.set("SIGTERM") if lines == 2 else None)
    result = queue.drain(out, stop)
    assert (len(out.written), result.claimed, _backlog(db)) == (3, 15, 15)
    rest = Captured()
    queue.drain(rest, StopFlag())
    assert sorted(r.login for r in out.records() + rest.records()) == sorted(f"n{i}" for i in range(1, 31))
    assert _backlog(db) == 0


def test_a_claim_ahead_that_fails_on_the_server_writes_nothing_and_loses_nothing(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue(limit=4)
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 'f' || i || '@example.com', 'f' || i FROM generate_series(1, 10) i"
    )
    backend = queue.conn.info.backend_pid
    sign = queue.signed

    def cut_while_signing(chunk: Chunk) -> Chunk:
        # The first chunk is full and common: the second one's claim is in flight now.
        db.execute("SELECT pg_terminate_backend(%s, 5000)", (backend,))
        return sign(chunk)

    queue.signed = cut_while_signing  # type: ignore[method-assign]
    out = Captured()
    with pytest.raises(psycopg.OperationalError):
        queue.drain(out, StopFlag())
    assert out.written == []
    assert _backlog(db) == 10
