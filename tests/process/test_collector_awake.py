"""Awake mode: while the collector is busy, inserts skip their NOTIFY; a transaction that
skipped it must still be emitted, however late it commits.

Each test checks which path read its tokens, from the collector's log line for every read
that found some ("read N queued tokens (REASON)"): a test that only saw the token arrive
would pass as well if a health check or another path had picked it up."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from collector_helpers import CollectorProcess, add_accounts, collector_env, wait_for_empty_backlog
from conftest import pg_connect, script

AWAKE_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND ((classid::bigint << 32) | objid::bigint) = mailroom_awake_lock('mailroom')"
)


@pytest.fixture
def env(base_env: dict[str, str], database_url: str, secret_key_hex: str) -> dict[str, str]:
    # One notification starts a read; awake, it stays so for 5 s without new tokens (the
    # tests look at it within that time); no health check within the test: a token can
    # only come from a read the protocol makes.
    return collector_env(
        base_env,
        database_url,
        secret_key_hex,
        MAILROOM_BATCH_LIMIT="1",
        MAILROOM_BATCH_TIMEOUT="5000",
        MAILROOM_HEALTHCHECK_INTERVAL="60000",
        MAILROOM_LOG_LEVEL="debug",  # the "asleep" line
    )


WRITERS_ENDED = "writers that may have skipped NOTIFY ended"
ASLEEP_WITH_ONE_WRITER = "asleep: waiting for notifications; writers that may have skipped NOTIFY: 1"


@pytest.fixture
def procs() -> Iterator[list[CollectorProcess]]:
    started: list[CollectorProcess] = []
    yield started
    for proc in started:
        proc.stop()


def _awake(db: psycopg.Connection) -> bool:
    return db.execute(AWAKE_HELD).fetchone()[0] == 1


def _make_awake(collector: CollectorProcess, db: psycopg.Connection) -> None:
    add_accounts(db, "wake", 1)
    assert [r.login for r in collector.records(1, timeout=10)] == ["wake1"]
    wait_for_empty_backlog(db)  # committed: a successor would not emit it again
    assert _awake(db)


def _skip_notify(database_url: str, db: psycopg.Connection) -> tuple[psycopg.Connection, psycopg.Connection]:
    """A transaction that queues a token while the collector is awake (no NOTIFY), and a
    listener that proves no notification is sent."""
    listener = pg_connect(database_url, autocommit=True)
    listener.execute("LISTEN token_insert")
    writer = pg_connect(database_url)
    writer.execute("INSERT INTO accounts (email, login) VALUES ('skipper@example.com', 'skipper')")
    assert _awake(db)
    return writer, listener


def test_a_token_queued_while_awake_and_committed_after_it_went_to_sleep_is_emitted(
    tmp_path: Path, env: dict[str, str], procs: list[CollectorProcess], database_url: str, db: psycopg.Connection
) -> None:
    collector = CollectorProcess(script("collector"), env, tmp_path / "collector.log")
    procs.append(collector)
    collector.wait_until_ready()
    _make_awake(collector, db)
    writer, listener = _skip_notify(database_url, db)
    try:
        # Back asleep, its last read done, with the open writer noted.
        collector.wait_for_log(ASLEEP_WITH_ONE_WRITER)
        assert not _awake(db)
        writer.commit()
        assert list(listener.notifies(timeout=0.5)) == []  # the NOTIFY was skipped
        assert [r.login for r in collector.records(1, timeout=5)] == ["skipper"]
    finally:
        writer.close()
        listener.close()
    # Read on a notification, then by the check that the noted writer ended.
    assert collector.reads(2) == [(1, "1 notification, the batch limit"), (1, WRITERS_ENDED)]


def test_a_new_collector_emits_what_its_predecessor_left_when_it_died_awake(
    tmp_path: Path, env: dict[str, str], procs: list[CollectorProcess], database_url: str, db: psycopg.Connection
) -> None:
    first = CollectorProcess(script("collector"), env, tmp_path / "first.log")
    procs.append(first)
    first.wait_for_log("listening on channel")
    _make_awake(first, db)
    writer, listener = _skip_notify(database_url, db)
    try:
        first.signal(signal.SIGKILL)
        first.wait(timeout=5)
        second = CollectorProcess(script("collector"), env, tmp_path / "second.log")
        procs.append(second)
        second.wait_until_ready()  # its first read is done (the token is not committed yet)
        writer.commit()
        assert list(listener.notifies(timeout=0.5)) == []
        assert [r.login for r in second.records(1, timeout=5)] == ["skipper"]
    finally:
        writer.close()
        listener.close()
    # The writer its predecessor left was noted at start, and its end seen.
    assert second.reads(1) == [(1, WRITERS_ENDED)]


def test_it_stays_awake_while_tokens_keep_coming_and_emits_them_all(
    tmp_path: Path, env: dict[str, str], procs: list[CollectorProcess], database_url: str, db: psycopg.Connection
) -> None:
    # Awake, it reads as soon as BATCH_LIMIT (3) tokens are queued; with nothing queued it
    # stays awake for BATCH_TIMEOUT (a minute here, far longer than the test takes).
    collector = CollectorProcess(
        script("collector"),
        dict(env, MAILROOM_BATCH_LIMIT="3", MAILROOM_BATCH_TIMEOUT="60000"),
        tmp_path / "collector.log",
    )
    procs.append(collector)
    collector.wait_until_ready()
    logins = [login for n in range(3) for login in add_accounts(db, f"wake{n}_", 1)]  # 3 notifications: a read
    assert len(collector.records(3, timeout=10)) == 3
    collector.wait_for_log("(3 notifications, the batch limit)")  # that read is over
    assert _awake(db)
    with pg_connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN token_insert")
        for i in range(1, 21):  # 3 tokens per statement, each read as soon as it commits
            logins += add_accounts(db, f"stream{i}_", 3)
            assert sorted(r.login for r in collector.records(3, timeout=10)) == sorted(logins[-3:])
            collector.wait_for_log("(awake)", count=i)  # that read is over before the next insert
        assert list(listener.notifies(timeout=0)) == []  # awake: no insert sent a NOTIFY
    assert _awake(db)
    assert collector.reads(21) == [(3, "3 notifications, the batch limit")] + [(3, "awake")] * 20


def test_a_shared_awake_lock_left_behind_by_an_app_session_does_not_stop_the_mail(
    tmp_path: Path, env: dict[str, str], procs: list[CollectorProcess], database_url: str, db: psycopg.Connection
) -> None:
    # A statement cancelled between the trigger's shared try-lock and its unlock leaves the
    # session holding the lock shared: the collector must not wait for it.
    with pg_connect(database_url, autocommit=True) as leaky:
        leaky.execute("SELECT pg_advisory_lock_shared(mailroom_awake_lock('mailroom'))")
        collector = CollectorProcess(script("collector"), env, tmp_path / "collector.log")
        procs.append(collector)
        collector.wait_until_ready()
        for n in range(1, 4):
            add_accounts(db, f"leak{n}-", 1)
            assert [r.login for r in collector.records(1, timeout=10)] == [f"leak{n}-1"]
            collector.wait_for_log("asleep:", count=n)  # that round is over before the next insert
        assert not _awake(db)
        collector.wait_for_log("could not take the awake lock")
    # Each read on its notification: it never became awake.
    assert collector.reads(3) == [(1, "1 notification, the batch limit")] * 3
    assert collector.log().count("could not take the awake lock") == 1
