"""The cooldown with the real `collector`: a flood of password-recovery requests for one
account produces one email (MAILROOM_RECOVERY_COOLDOWN, default 60 s)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg
from collector_helpers import CollectorProcess, collector_env, wait_for_empty_backlog
from conftest import script

from mailroom.wire import Record, decode_line

KEY_HEX = "5f" * 32
_COOLED = re.compile(r"(\d+) within the cooldown")


def _cooled(proc: CollectorProcess) -> int:
    return sum(int(n) for n in _COOLED.findall(proc.log()))


def test_100_recovery_requests_for_one_account_produce_one_email(
    tmp_path: Path, base_env: dict[str, str], database_url: str, db: psycopg.Connection
) -> None:
    env = collector_env(base_env, database_url, KEY_HEX)  # the default cooldown
    assert "MAILROOM_RECOVERY_COOLDOWN" not in env
    proc = CollectorProcess(script("collector"), env, tmp_path / "collector.log")
    try:
        proc.wait_for_log("listening on channel")
        db.execute(
            "INSERT INTO accounts (email, login, status, activated_at) VALUES ('v@x.org', 'victim', 'active', 1)"
        )
        for _ in range(100):  # "forgot my password", 100 times, each its own transaction
            db.execute(
                "INSERT INTO tokens (account, action) "
                "SELECT id, 'password_recovery' FROM accounts WHERE email = 'v@x.org' AND status = 'active'"
            )
        wait_for_empty_backlog(db, timeout=30)
        # A sentinel after the flood: every line about the flood comes before its record.
        db.execute("INSERT INTO accounts (email, login) VALUES ('sentinel@x.org', 'sentinel')")
        logins: list[str] = []
        deadline = time.monotonic() + 30
        while "sentinel" not in logins and (line := proc.next_line(deadline - time.monotonic())) is not None:
            logins += [r.login for r in _decode(line)]
        assert logins == ["victim", "sentinel"]
        deadline = time.monotonic() + 15
        while _cooled(proc) < 99 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _cooled(proc) == 99, proc.log()
        row = db.execute(
            "SELECT count(*) FILTER (WHERE suppressed), count(*) FROM tokens WHERE action = 'password_recovery'"
        ).fetchone()
        assert row == (99, 100)
    finally:
        proc.stop()


def _decode(line: bytes) -> list[Record]:
    records, rejected = decode_line(line)
    assert not rejected
    return records
