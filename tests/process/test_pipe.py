"""The pipe between `collector` and `sender`, with the real programs: a batch limit that
makes lines longer than the wire's limit is delivered whole, a stop signal ends a
collector blocked on a full pipe with its chunk rolled back, and a socket instead of a
pipe is reported at start (the hand-off cannot protect the lines in it)."""

from __future__ import annotations

import array
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from collector_helpers import backlog, collector_env
from conftest import script

from mailroom.wire import MAX_LINE_BYTES

SAFETY_S = 60.0  # only a safety net: every wait below ends on an event
LONG_LOGIN_SQL = "i || '-' || repeat('é', 120) || repeat('漢', 120)"  # up to 254 characters, ~600 bytes


def queued(fd: int) -> int:
    n = array.array("i", [0])
    fcntl.ioctl(fd, 0x541B, n, True)  # FIONREAD
    return n[0]


def add_long_accounts(db: psycopg.Connection, count: int) -> None:
    db.execute(
        f"INSERT INTO accounts (email, login) SELECT 'long' || i || '@example.com', {LONG_LOGIN_SQL} "
        "FROM generate_series(1, %s) i",
        (count,),
    )


def sender_env(base_env: dict[str, str], out: Path, **extra: str) -> dict[str, str]:
    return {
        **base_env,
        "MAILROOM_DEBUG": "true",
        "MAILROOM_APP_URL": "https://app.example.com",
        "MAILROOM_SES_OUTPUT_PATH": str(out),
        "MAILROOM_SES_SOURCE": "noreply@example.com",
        "MAILROOM_SES_MAX_SEND_RATE": "100000",
        "MAILROOM_LOG_LEVEL": "info",
        **extra,
    }


def test_a_9000_record_batch_limit_with_long_utf8_logins_is_delivered_whole(
    tmp_path: Path, base_env: dict[str, str], database_url: str, secret_key_hex: str, db: psycopg.Connection
) -> None:
    add_long_accounts(db, 9000)
    env = collector_env(base_env, database_url, secret_key_hex, MAILROOM_BATCH_LIMIT="9000")
    out = tmp_path / "out"
    with open(tmp_path / "collector.log", "wb") as clog, open(tmp_path / "sender.log", "wb") as slog:
        collector = subprocess.Popen(
            [script("collector"), "--drain"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=clog
        )
        assert collector.stdout is not None
        sender = subprocess.Popen(
            [script("sender")],
            env=sender_env(base_env, out),
            cwd=tmp_path,
            stdin=collector.stdout,
            stdout=subprocess.DEVNULL,
            stderr=slog,
        )
        collector.stdout.close()
        try:
            assert collector.wait(timeout=SAFETY_S) == 0, (tmp_path / "collector.log").read_text()
            assert sender.wait(timeout=SAFETY_S) == 0, (tmp_path / "sender.log").read_text()
        finally:
            for proc in (collector, sender):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    log = (tmp_path / "collector.log").read_text()
    assert "read 9000 queued tokens" in log and "emitted 9000 in " in log
    lines = int(log.split("emitted 9000 in ")[1].split()[0])
    assert lines >= 9000 * 600 // MAX_LINE_BYTES  # the one chunk was cut into several lines
    rows = [json.loads(line) for line in (out / "deliveries.jsonl").read_text().splitlines()]
    assert len(rows) == 9000 and {r["status"] for r in rows} == {"Success"}
    assert not (out / "rejects.jsonl").read_text()
    assert backlog(db) == 0


@pytest.mark.parametrize(("batch_limit", "accounts"), [(200, 2000), (9000, 9000)])
def test_sigterm_while_blocked_on_a_full_pipe_exits_0_and_leaves_the_tokens_queued(
    tmp_path: Path,
    base_env: dict[str, str],
    database_url: str,
    secret_key_hex: str,
    db: psycopg.Connection,
    batch_limit: int,
    accounts: int,
) -> None:
    # A reader that keeps the pipe open and takes nothing: the collector fills the pipe and
    # blocks in the middle of its first transaction's lines.
    add_long_accounts(db, accounts)
    env = collector_env(base_env, database_url, secret_key_hex, MAILROOM_BATCH_LIMIT=str(batch_limit))
    r, w = os.pipe()
    capacity = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
    with open(tmp_path / "collector.log", "wb") as clog:
        collector = subprocess.Popen([script("collector")], env=env, stdin=subprocess.DEVNULL, stdout=w, stderr=clog)
    os.close(w)
    try:
        deadline = time.monotonic() + SAFETY_S
        while queued(r) < capacity:  # the event: the pipe is full, the collector cannot write on
            assert collector.poll() is None, (tmp_path / "collector.log").read_text()
            assert time.monotonic() < deadline, f"the pipe never filled ({queued(r)} of {capacity} bytes)"
            time.sleep(0.02)
        assert backlog(db) == accounts  # written, not committed
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=SAFETY_S) == 0
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.wait()
        os.close(r)
    assert backlog(db) == accounts  # rolled back: every token stays queued for the next collector
    assert "rolled back its chunk" in (tmp_path / "collector.log").read_text()


def test_a_collector_writing_to_a_socket_warns_that_lines_can_be_lost(
    tmp_path: Path, base_env: dict[str, str], database_url: str, secret_key_hex: str
) -> None:
    ours, theirs = socket.socketpair()
    try:
        done = subprocess.run(
            [script("collector"), "--drain"],
            check=False,
            env=collector_env(base_env, database_url, secret_key_hex),
            stdin=subprocess.DEVNULL,
            stdout=theirs.fileno(),
            stderr=subprocess.PIPE,
            timeout=SAFETY_S,
        )
    finally:
        ours.close()
        theirs.close()
    assert done.returncode == 0, done.stderr.decode()
    assert "stdout is a socket, not a pipe" in done.stderr.decode()
    assert "lost" in done.stderr.decode()


def test_a_sender_reading_a_socket_warns_that_lines_can_be_lost_and_still_sends(
    tmp_path: Path, base_env: dict[str, str]
) -> None:
    from test_sender_process import record  # a valid signed record

    from mailroom.wire import encode_line

    ours, theirs = socket.socketpair()
    out = tmp_path / "out"
    try:
        sender = subprocess.Popen(
            [script("sender")],
            env=sender_env(base_env, out),
            cwd=tmp_path,
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        theirs.close()
        ours.sendall(encode_line([record(1)]))
        ours.shutdown(socket.SHUT_WR)
        _, err = sender.communicate(timeout=SAFETY_S)
    finally:
        ours.close()
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert sender.returncode == 0, err.decode()
    assert "stdin is a socket and the pipe hand-off is off" in err.decode()
    assert "can be lost if the sender is killed" in err.decode()
    rows = [json.loads(line) for line in (out / "deliveries.jsonl").read_text().splitlines()]
    assert [r["recipient"] for r in rows] == ["user1@example.com"]
