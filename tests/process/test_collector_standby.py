"""Standby collectors: two on one queue never both emit; the standby takes over when the
active one dies."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from collector_helpers import READY, CollectorProcess, add_accounts, collector_env, wait_for_empty_backlog
from conftest import script


@pytest.fixture
def pair(
    tmp_path: Path, base_env: dict[str, str], database_url: str, secret_key_hex: str
) -> Iterator[tuple[CollectorProcess, CollectorProcess]]:
    """Two collectors on the same queue; the first one started is the active one."""
    env = collector_env(base_env, database_url, secret_key_hex)
    first = CollectorProcess(script("collector"), env, tmp_path / "first.log")
    procs = [first]
    try:
        first.wait_until_ready()
        second = CollectorProcess(script("collector"), env, tmp_path / "second.log")
        procs.append(second)
        second.wait_for_log("standing by")
        yield first, second
    finally:
        for proc in procs:
            proc.stop()


def test_only_one_of_two_collectors_on_a_queue_emits(
    pair: tuple[CollectorProcess, CollectorProcess], db: psycopg.Connection
) -> None:
    active, standby = pair
    logins = add_accounts(db, "once", 30)
    records = active.records(30, timeout=10)
    assert sorted(r.login for r in records) == sorted(logins)
    wait_for_empty_backlog(db)
    assert standby.lines_after_stop() == []
    assert active.lines_after_stop() == []
    assert "listening on channel" not in standby.log()


def test_the_standby_takes_over_within_seconds_when_the_active_one_is_killed(
    pair: tuple[CollectorProcess, CollectorProcess], db: psycopg.Connection
) -> None:
    active, standby = pair
    add_accounts(db, "before", 5)
    assert len(active.records(5, timeout=10)) == 5
    wait_for_empty_backlog(db)  # committed: killing it now re-emits nothing (see the README)
    active.signal(signal.SIGKILL)
    active.wait(timeout=5)
    logins = add_accounts(db, "after", 7)
    records = standby.records(7, timeout=10)  # it polls the lock every second
    assert sorted(r.login for r in records) == sorted(logins)
    standby.wait_until_ready()
    wait_for_empty_backlog(db)
    assert standby.lines_after_stop() == []


def _records_from_either(procs: tuple[CollectorProcess, ...], count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    logins: list[str] = []
    while len(logins) < count and time.monotonic() < deadline:
        for proc in procs:
            logins += [r.login for r in proc.records(1, timeout=0.05)]
    return logins


def test_a_new_active_collector_takes_over_when_the_active_one_loses_its_connection(
    pair: tuple[CollectorProcess, CollectorProcess], db: psycopg.Connection
) -> None:
    active, standby = pair
    # Terminate the active session only. The standby (polling every second) usually wins
    # the lock before the old active one has reconnected, which then stands by; either way
    # exactly one of them emits each token.
    row = db.execute(
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
    ).fetchone()
    assert row is not None
    db.execute("SELECT pg_terminate_backend(%s)", row)
    deadline = time.monotonic() + 15
    while READY not in standby.log() and active.log().count(READY) < 2:
        assert time.monotonic() < deadline, "no collector became active again"
        time.sleep(0.05)
    logins = add_accounts(db, "moved", 6)
    got = _records_from_either(pair, 6, timeout=10)
    assert sorted(got) == sorted(logins)  # each exactly once
    assert active.proc.poll() is None and standby.proc.poll() is None
    wait_for_empty_backlog(db)
    assert active.lines_after_stop() == [] and standby.lines_after_stop() == []
