"""Awake mode: while the collector is busy, inserts skip their NOTIFY; a transaction that
skipped it must still be emitted, however late it commits."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from collector_helpers import CollectorProcess, add_accounts, collector_env
from conftest import script

AWAKE_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND ((classid::bigint << 32) | objid::bigint) = mailroom_awake_lock('mailroom')"
)


@pytest.fixture
def env(base_env: dict[str, str], database_url: str, secret_key_hex: str) -> dict[str, str]:
    # One notification starts a read; awake, it stays so for 2 s without new tokens; no
    # health check within the test: a token can only come from a read the protocol makes.
    return collector_env(
        base_env,
        database_url,
        secret_key_hex,
        MAILROOM_BATCH_LIMIT="1",
        MAILROOM_BATCH_TIMEOUT="2000",
        MAILROOM_HEALTHCHECK_INTERVAL="60000",
    )


@pytest.fixture
def procs() -> Iterator[list[CollectorProcess]]:
    started: list[CollectorProcess] = []
    yield started
    for proc in started:
        proc.stop()


def _awake(db: psycopg.Connection) -> bool:
    return db.execute(AWAKE_HELD).fetchone()[0] == 1


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _make_awake(collector: CollectorProcess, db: psycopg.Connection) -> None:
    add_accounts(db, "wake", 1)
    assert [r.login for r in collector.records(1, timeout=10)] == ["wake1"]
    assert _awake(db)


def _skip_notify(database_url: str, db: psycopg.Connection) -> tuple[psycopg.Connection, psycopg.Connection]:
    """A transaction that queues a token while the collector is awake (no NOTIFY), and a
    listener that proves no notification is sent."""
    listener = psycopg.connect(database_url, autocommit=True)
    listener.execute("LISTEN token_insert")
    writer = psycopg.connect(database_url)
    writer.execute("INSERT INTO accounts (email, login) VALUES ('skipper@example.com', 'skipper')")
    assert _awake(db)
    return writer, listener


def test_a_token_queued_while_awake_and_committed_after_it_went_to_sleep_is_emitted(
    tmp_path: Path, env: dict[str, str], procs: list[CollectorProcess], database_url: str, db: psycopg.Connection
) -> None:
    collector = CollectorProcess(script("collector"), env, tmp_path / "collector.log")
    procs.append(collector)
    collector.wait_for_log("listening on channel")
    _make_awake(collector, db)
    writer, listener = _skip_notify(database_url, db)
    try:
        _wait(lambda: not _awake(db), 10, "the collector to go back to sleep")
        time.sleep(0.3)  # asleep, waiting for notifications
        writer.commit()
        assert list(listener.notifies(timeout=0.5)) == []  # the NOTIFY was skipped
        assert [r.login for r in collector.records(1, timeout=5)] == ["skipper"]
    finally:
        writer.close()
        listener.close()


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
        second.wait_for_log("listening on channel")
        time.sleep(0.3)  # its first read is done; it waits for notifications
        writer.commit()
        assert list(listener.notifies(timeout=0.5)) == []
        assert [r.login for r in second.records(1, timeout=5)] == ["skipper"]
    finally:
        writer.close()
        listener.close()


def test_it_stays_awake_while_tokens_keep_coming_and_emits_them_all(
    tmp_path: Path, env: dict[str, str], procs: list[CollectorProcess], db: psycopg.Connection
) -> None:
    collector = CollectorProcess(
        script("collector"),
        dict(env, MAILROOM_BATCH_LIMIT="5", MAILROOM_BATCH_TIMEOUT="300"),
        tmp_path / "collector.log",
    )
    procs.append(collector)
    collector.wait_for_log("listening on channel")
    logins: list[str] = []
    held = 0
    for i in range(40):
        logins += add_accounts(db, f"stream{i}_", 3)
        held += _awake(db)
        time.sleep(0.02)
    got = collector.records(len(logins), timeout=15)
    assert sorted(r.login for r in got) == sorted(logins)
    assert held > 0  # it was awake (inserts skipped their NOTIFY) for part of the stream
    _wait(lambda: not _awake(db), 10, "the collector to go back to sleep")


def test_a_shared_awake_lock_left_behind_by_an_app_session_does_not_stop_the_mail(
    tmp_path: Path, env: dict[str, str], procs: list[CollectorProcess], database_url: str, db: psycopg.Connection
) -> None:
    # A statement cancelled between the trigger's shared try-lock and its unlock leaves the
    # session holding the lock shared: the collector must not wait for it.
    with psycopg.connect(database_url, autocommit=True) as leaky:
        leaky.execute("SELECT pg_advisory_lock_shared(mailroom_awake_lock('mailroom'))")
        collector = CollectorProcess(script("collector"), env, tmp_path / "collector.log")
        procs.append(collector)
        collector.wait_for_log("listening on channel")
        for n in range(1, 4):
            add_accounts(db, f"leak{n}-", 1)
            assert [r.login for r in collector.records(1, timeout=10)] == [f"leak{n}-1"]
        assert not _awake(db)
        collector.wait_for_log("could not take the awake lock")
