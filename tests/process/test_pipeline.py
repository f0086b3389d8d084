"""The real `collector | sender` pipeline, as two subprocesses joined by a pipe.

Accounts are created from four concurrent connections, some of them are activated the
way an app does and then request a password recovery; every recipient must get each of
its emails exactly once, with a token the real `mailroom verify` accepts, and SIGTERM must
stop both programs with status 0. Once with the sender in debug mode (emails on stdout),
once against `moto_server` (emails through the SES API).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import FAKE_AWS_ENV, TEST_KEY_HEX, pg_connect, prepare_moto_ses, script

from mailroom.verify import verify_link_token

WRITERS = 4
ACCOUNTS_PER_WRITER = 20
RECOVERIES = 10
WAIT_S = 60.0
SOURCE = "noreply@example.com"
COLLECTOR_READY = "ready: start drain done"
SENDER_READY = "ready: preflight passed"

_BULK = re.compile(r"^bulk send: \d+ (activation|password_recovery) emails? ")
_TO = re.compile(r"^\s+\[\d+/\d+\] to (\S+)\s*$")
_DATA = re.compile(r"^\s+data:\s+(\{.*\})\s*$")


class RunningPipeline:
    """collector | sender as subprocesses; the sender's stdout is read by a thread."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.workdir = workdir
        self.collector_log = workdir / "collector.stderr"
        self.sender_log = workdir / "sender.stderr"
        with open(self.collector_log, "wb") as clog, open(self.sender_log, "wb") as slog:
            self.collector = subprocess.Popen(
                [script("collector")],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=clog,
            )
            self.sender = subprocess.Popen(
                [script("sender")],
                env=env,
                cwd=workdir,
                stdin=self.collector.stdout,
                stdout=subprocess.PIPE,
                stderr=slog,
                text=True,
            )
        assert self.collector.stdout is not None
        self.collector.stdout.close()  # the pipe belongs to the two children now
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.sender.stdout is not None
        for line in self.sender.stdout:
            with self._lock:
                self.lines.append(line)

    def debug_emails(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(action, recipient, template data) of each email the debug sender printed so far."""
        with self._lock:
            lines = list(self.lines)
        found, action, to = [], None, None
        for line in lines:
            if m := _BULK.match(line):
                action, to = m.group(1), None
            elif m := _TO.match(line):
                to = m.group(1)
            elif (m := _DATA.match(line)) and action and to:
                found.append((action, to, json.loads(m.group(1))))
                to = None
        return found

    def alive(self) -> bool:
        return self.collector.poll() is None and self.sender.poll() is None

    def logs(self) -> str:
        return (
            f"--- collector stderr ---\n{self.collector_log.read_text(errors='replace')}\n"
            f"--- sender stderr ---\n{self.sender_log.read_text(errors='replace')}"
        )

    def wait_ready(self, timeout: float = WAIT_S) -> None:
        """Until both programs logged their ready line: before it, a signal may find a program
        whose handlers are not installed yet (the default action kills it: exit -15)."""
        for log, line in ((self.collector_log, COLLECTOR_READY), (self.sender_log, SENDER_READY)):
            wait_until(lambda log=log, line=line: line in log.read_text(errors="replace"), self, line, timeout)

    def sigterm_both(self, timeout: float = 30) -> tuple[int, int]:
        self.wait_ready()
        self.collector.send_signal(signal.SIGTERM)
        self.sender.send_signal(signal.SIGTERM)
        codes = (self.collector.wait(timeout), self.sender.wait(timeout))
        self._reader.join(10)
        return codes

    def kill(self) -> None:
        for proc in (self.collector, self.sender):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._reader.join(10)


def wait_until(condition, pipeline: RunningPipeline, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if not pipeline.alive():
            pytest.fail(f"the pipeline died while waiting for {what}\n{pipeline.logs()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{pipeline.logs()}")
        time.sleep(0.05)


def create_accounts_concurrently(database_url: str) -> list[str]:
    """WRITERS threads, each on its own connection, insert accounts in transactions of 1-4 rows."""
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def writer(w: int) -> None:
        try:
            with pg_connect(database_url) as conn:
                start.wait()
                i = 0
                while i < ACCOUNTS_PER_WRITER:
                    n = min(1 + i % 4, ACCOUNTS_PER_WRITER - i)
                    rows = [(f"w{w}-u{j}@example.com", f"w{w}-u{j}") for j in range(i, i + n)]
                    with conn.transaction(), conn.cursor() as cur:
                        cur.executemany("INSERT INTO accounts (email, login) VALUES (%s, %s)", rows)
                    i += n
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return [f"w{w}-u{j}@example.com" for w in range(WRITERS) for j in range(ACCOUNTS_PER_WRITER)]


def activate_and_request_recovery(db: psycopg.Connection, tokens: dict[str, str]) -> list[str]:
    """The app flow for RECOVERIES accounts: verify + consume the activation token, then a recovery."""
    chosen = sorted(tokens)[:RECOVERIES]
    key = bytes.fromhex(TEST_KEY_HEX)
    for email in chosen:
        secret = verify_link_token(key, tokens[email], "activation")
        account = db.execute("SELECT mailroom_consume_token(%s, NULL)", [secret]).fetchone()[0]
        assert account is not None, f"the activation token mailed to {email} was not consumable"
        assert db.execute("SELECT status FROM accounts WHERE id = %s", [account]).fetchone()[0] == "active"
    # Two of them in one statement: one trigger run, one notification, two tokens.
    db.execute(
        "INSERT INTO tokens (account, action) SELECT id, 'password_recovery' FROM accounts WHERE email = ANY(%s)",
        [chosen[:2]],
    )
    for email in chosen[2:]:
        db.execute(
            "INSERT INTO tokens (account, action) SELECT id, 'password_recovery' FROM accounts WHERE email = %s",
            [email],
        )
    return chosen


def check_with_mailroom_verify(
    env: dict[str, str], activation: dict[str, dict[str, Any]], recovery: dict[str, dict[str, Any]]
) -> None:
    """The real `mailroom verify` accepts a sample of delivered tokens and refuses a tampered one."""

    def verify(token: str, action: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
        # `--` because a base64url token may start with "-" (it would read as an option)
        argv = [script("mailroom"), "verify", "--action", action] + (["--code", code] if code else []) + ["--", token]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)

    sample = sorted(activation)[:5] + [e for e in sorted(activation) if activation[e]["secret"].startswith("-")][:1]
    for email in sample:
        result = verify(activation[email]["secret"], "activation")
        assert result.returncode == 0, (email, result.stderr)
        assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout)
    for email in sorted(recovery)[:2]:
        data = recovery[email]
        assert verify(data["secret"], "password_recovery", data["code"]).returncode == 0
    token = activation[min(activation)]["secret"]
    tampered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    result = verify(tampered, "activation")
    assert result.returncode == 1
    assert "invalid token" in result.stderr


def consume_recoveries(db: psycopg.Connection, recovery: dict[str, dict[str, Any]]) -> None:
    key = bytes.fromhex(TEST_KEY_HEX)
    for email, data in recovery.items():
        secret = verify_link_token(key, data["secret"], "password_recovery", data["code"])
        account = db.execute("SELECT mailroom_consume_token(%s, %s)", [secret, data["code"]]).fetchone()[0]
        expected = db.execute("SELECT id FROM accounts WHERE email = %s", [email]).fetchone()[0]
        assert account == expected


def exactly_once(
    emails: list[tuple[str, str, dict[str, Any]]], action: str, recipients: list[str]
) -> dict[str, dict[str, Any]]:
    counts = Counter(to for a, to, _ in emails if a == action)
    assert counts == Counter(recipients), (
        f"{action}: missing {sorted(set(recipients) - set(counts))}, "
        f"duplicated {sorted(to for to, n in counts.items() if n > 1)}, "
        f"unexpected {sorted(set(counts) - set(recipients))}"
    )
    return {to: data for a, to, data in emails if a == action}


def pipeline_env(base_env: dict[str, str], database_url: str, workdir: Path) -> dict[str, str]:
    return {
        **base_env,
        "MAILROOM_DATABASE_URL": database_url,
        "MAILROOM_SECRET_KEY": TEST_KEY_HEX,
        "MAILROOM_BATCH_TIMEOUT": "200",
        "MAILROOM_BATCH_LIMIT": "10",
        "MAILROOM_SES_OUTPUT_PATH": str(workdir / "output"),
        "MAILROOM_SES_SOURCE": SOURCE,
        "MAILROOM_SES_MAX_SEND_RATE": "500",  # the default paces debug mode at 14 emails/s
        "MAILROOM_LOG_LEVEL": "info",
    }


def test_debug_pipeline_delivers_each_email_once_with_verifiable_tokens_and_stops_on_sigterm(
    database_url: str, db: psycopg.Connection, base_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**pipeline_env(base_env, database_url, tmp_path), "MAILROOM_DEBUG": "true"}
    pipeline = RunningPipeline(env, tmp_path)
    try:
        recipients = create_accounts_concurrently(database_url)
        wait_until(
            lambda: len({to for a, to, _ in pipeline.debug_emails() if a == "activation"}) >= len(recipients),
            pipeline,
            f"{len(recipients)} activation emails",
        )
        activation = {to: d for a, to, d in pipeline.debug_emails() if a == "activation"}
        chosen = activate_and_request_recovery(db, {e: d["secret"] for e, d in activation.items()})
        wait_until(
            lambda: sum(a == "password_recovery" for a, _, _ in pipeline.debug_emails()) >= len(chosen),
            pipeline,
            f"{len(chosen)} recovery emails",
        )

        assert pipeline.sigterm_both() == (0, 0), pipeline.logs()
    finally:
        pipeline.kill()

    emails = pipeline.debug_emails()  # complete now: the sender has exited
    activation = exactly_once(emails, "activation", recipients)
    recovery = exactly_once(emails, "password_recovery", chosen)
    assert all(re.fullmatch(r"[0-9]{5}", d["code"]) for d in recovery.values())
    check_with_mailroom_verify(env, activation, recovery)
    consume_recoveries(db, recovery)
    rendered = "".join(pipeline.lines)
    assert f"http://localhost:8000/activate?token={activation[recipients[0]]['secret']}" in rendered
    assert (tmp_path / "output" / "rejects.jsonl").read_text() == ""


def _moto_messages(url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(template, recipient, template data) of every destination moto_server accepted."""
    with urllib.request.urlopen(url + "/moto-api/data.json", timeout=10) as response:
        data = json.load(response)
    found = []
    for message in data.get("ses", {}).get("TemplateMessage", []):
        for dest in message["destinations"]:
            for to in dest["Destination"]["ToAddresses"]:
                found.append((message["template"], to, json.loads(dest["ReplacementTemplateData"])))
    return found


def _deliveries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_ses_pipeline_against_moto_server_delivers_each_email_once_and_stops_on_sigterm(
    database_url: str, db: psycopg.Connection, base_env: dict[str, str], tmp_path: Path, moto_server: str
) -> None:
    env = {
        **pipeline_env(base_env, database_url, tmp_path),
        **FAKE_AWS_ENV,
        "MAILROOM_DEBUG": "false",
        "AWS_ENDPOINT_URL_SES": moto_server,
    }
    ses = prepare_moto_ses(env, moto_server, tmp_path, SOURCE)
    # every action and locale is pushed (tests/process/test_templates_push.py pins the names); these two are sent
    assert {"activationv1", "passwordrecoveryv1"} <= {t["Name"] for t in ses.list_templates()["TemplatesMetadata"]}

    deliveries = tmp_path / "output" / "deliveries.jsonl"
    pipeline = RunningPipeline(env, tmp_path)
    try:
        recipients = create_accounts_concurrently(database_url)
        wait_until(
            lambda: len(_deliveries(deliveries)) >= len(recipients),
            pipeline,
            f"{len(recipients)} deliveries.jsonl rows",
        )
        activation = {to: d for t, to, d in _moto_messages(moto_server) if t == "activationv1"}
        chosen = activate_and_request_recovery(db, {e: d["secret"] for e, d in activation.items()})
        wait_until(
            lambda: len(_deliveries(deliveries)) >= len(recipients) + len(chosen), pipeline, "the recovery deliveries"
        )

        assert pipeline.sigterm_both() == (0, 0), pipeline.logs()
    finally:
        pipeline.kill()

    rows = _deliveries(deliveries)
    assert all(r["status"] == "Success" and r.get("message_id") for r in rows), rows
    assert Counter((r["action"], r["recipient"]) for r in rows) == Counter(
        [("activation", e) for e in recipients] + [("password_recovery", e) for e in chosen]
    )
    assert (tmp_path / "output" / "rejects.jsonl").read_text() == ""

    # What SES (moto) itself received: every recipient once, with the tokens the app can use.
    sent = [
        ("activation" if t == "activationv1" else "password_recovery", to, d)
        for t, to, d in _moto_messages(moto_server)
    ]
    activation = exactly_once(sent, "activation", recipients)
    recovery = exactly_once(sent, "password_recovery", chosen)
    assert ses.get_send_quota()["SentLast24Hours"] == len(recipients) + len(chosen)
    check_with_mailroom_verify(env, activation, recovery)
    consume_recoveries(db, recovery)
