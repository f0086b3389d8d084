"""`mailroom requeue` as a process, with a real collector: a token that was emitted (and, say,
written off by the sender) is put back on the queue, wakes the sleeping collector, and is
emitted again."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from collector_helpers import CollectorProcess, backlog, collector_env, wait_for_empty_backlog
from conftest import script

from mailroom.signing import token_ref

KEY_HEX = "5f" * 32


def _requeue(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("mailroom"), "requeue", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def collector(tmp_path: Path, base_env: dict[str, str], database_url: str) -> Iterator[CollectorProcess]:
    # A health check an hour away: within this test only the requeue's NOTIFY can wake it.
    env = collector_env(base_env, database_url, KEY_HEX, MAILROOM_HEALTHCHECK_INTERVAL="3600000")
    proc = CollectorProcess(script("collector"), env, tmp_path / "collector.log")
    try:
        proc.wait_for_log("listening on channel")
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def env(base_env: dict[str, str], database_url: str) -> dict[str, str]:
    return {**base_env, "MAILROOM_DATABASE_URL": database_url}


def test_a_requeued_token_is_emitted_again_by_the_sleeping_collector(
    collector: CollectorProcess, db: psycopg.Connection, env: dict[str, str], tmp_path: Path
) -> None:
    db.execute("INSERT INTO accounts (email, login) VALUES ('alice@example.com', 'alice')")
    first = collector.records(1, timeout=15)
    assert [r.login for r in first] == ["alice"]
    wait_for_empty_backlog(db)

    dry = _requeue(env, tmp_path, "--email", "alice@example.com", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would queue: id=") and "dry run, nothing changed" in dry.stdout
    assert backlog(db) == 0

    done = _requeue(env, tmp_path, "--email", "alice@example.com")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("queued: id=") and "email=alice@example.com" in lines[0]
    assert f"ref={token_ref(first[0].secret)}" in lines[0]
    assert (
        lines[-1]
        == "queued 1 token(s) for queue 'mailroom'; 0 already queued; 0 not valid any more (consumed or expired)"
    )
    assert collector.records(1, timeout=15) == first  # the same token, the same link

    # And from a rejects file, by the token reference a reject row carries.
    wait_for_empty_backlog(db)
    rejects = tmp_path / "rejects.jsonl"
    row = {"time": "2026-01-01T00:00:00Z", "reason": "operator fault", "action": "activation", "recipient": "x@y.z"}
    rejects.write_text(json.dumps({**row, "token_ref": token_ref(first[0].secret)}) + "\n")
    again = _requeue(env, tmp_path, "--rejects", str(rejects))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("queued 1 token(s)")
    assert collector.records(1, timeout=15) == first


def test_requeue_without_a_selection_is_a_usage_error(
    env: dict[str, str], db: psycopg.Connection, tmp_path: Path
) -> None:
    done = _requeue(env, tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert "say which tokens: --email, --ref, --rejects or --since" in done.stderr


def test_requeue_on_an_unregistered_queue_changes_nothing_and_says_so(
    env: dict[str, str], db: psycopg.Connection, tmp_path: Path
) -> None:
    done = _requeue({**env, "MAILROOM_QUEUE_NAME": "nosuch"}, tmp_path, "--since", "1h")
    assert done.returncode == 1
    assert "queue 'nosuch' is not registered" in done.stderr


def test_a_malformed_reference_is_refused_by_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    done = _requeue(env, tmp_path, "--ref", "not-a-ref")
    assert done.returncode == 2 and "a token reference is 16 hex characters" in done.stderr
