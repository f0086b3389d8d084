"""The installed `sender` with MAILROOM_PROVIDER=smtp as a subprocess, against a real SMTP server
on loopback (aiosmtpd in this test process): preflight, an operator fault that stops the sender
with nothing written off and a restart that delivers everything once, configuration errors, and
the real `collector | sender` pipeline, a relay refusing *us* at RCPT TO, an address no message
can be built for, and a SIGKILL in the middle of a run (at most one message per connection sent
twice)."""

# The fixture `smtp_server` comes from tests/smtp_server.py (imported below).
# ruff: noqa: F811

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from conftest import script
from smtp_server import PASSWORD, USERNAME, SmtpServer, smtp_server  # noqa: F401
from test_pipeline import (
    RunningPipeline,
    activate_and_request_recovery,
    check_with_mailroom_verify,
    consume_recoveries,
    create_accounts_concurrently,
    exactly_once,
    pipeline_env,
    wait_until,
)
from test_sender_process import jsonl, record
from test_ses_faults import insert_accounts

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.wire import Record, encode_line
from sender.retry import EXIT_OPERATOR_FAULT

SOURCE = "noreply@example.com"
TIMEOUT = 60


def smtp_env(base_env: dict[str, str], out: Path, server: SmtpServer, **extra: str) -> dict[str, str]:
    env = {
        **base_env,
        "MAILROOM_PROVIDER": "smtp",
        "MAILROOM_SMTP_HOST": server.host,
        "MAILROOM_SMTP_PORT": str(server.port),
        "MAILROOM_SMTP_TLS": "none",  # loopback
        "MAILROOM_SES_OUTPUT_PATH": str(out),
        "MAILROOM_SOURCE": SOURCE,
        "MAILROOM_SES_MAX_SEND_RATE": "1000",
        "MAILROOM_CONNECTIONS": "2",
    }
    if server.password is not None:
        env.update(MAILROOM_SMTP_USERNAME=USERNAME, MAILROOM_SMTP_PASSWORD=PASSWORD)
    env.update(extra)
    return env


def records(n: int) -> list:
    return [record(i, ACTIVATION if i % 3 else PASSWORD_RECOVERY) for i in range(n)]


def input_file(tmp_path: Path, rs: list) -> Path:
    path = tmp_path / "input.lines"
    path.write_bytes(b"".join(encode_line(rs[i : i + 25]) for i in range(0, len(rs), 25)))
    return path


def run_sender(env: dict[str, str], cwd: Path, stdin: Path | None) -> subprocess.CompletedProcess[str]:
    with open(stdin or "/dev/null", "rb") as f:
        return subprocess.run(
            [script("sender")], check=False, stdin=f, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT
        )


def test_a_wrong_password_fails_preflight_reading_nothing_and_the_right_one_delivers_all_once(
    smtp_server, base_env, tmp_path
):
    server = smtp_server(password=PASSWORD)
    out = tmp_path / "out"
    rs = records(60)
    lines = input_file(tmp_path, rs)

    done = run_sender(smtp_env(base_env, out, server, MAILROOM_SMTP_PASSWORD="wrong-pass-123"), tmp_path, lines)
    assert done.returncode == 2, done.stderr
    assert "535" in done.stderr and "MAILROOM_SMTP_PASSWORD" in done.stderr
    assert "wrong-pass-123" not in done.stderr + done.stdout
    assert server.messages == []
    assert jsonl(out / "deliveries.jsonl") == [] and jsonl(out / "rejects.jsonl") == []

    done = run_sender(smtp_env(base_env, out, server), tmp_path, lines)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stderr
    assert Counter(server.recipients()) == Counter(r.email for r in rs)
    assert Counter(d["recipient"] for d in jsonl(out / "deliveries.jsonl")) == Counter(r.email for r in rs)
    assert all(d["message_id"].startswith("250 ") for d in jsonl(out / "deliveries.jsonl"))
    assert jsonl(out / "rejects.jsonl") == []


def test_a_password_rotated_while_running_stops_the_sender_with_nothing_written_off_and_a_restart_delivers_once(
    smtp_server, base_env, tmp_path
):
    server = smtp_server(password=PASSWORD)
    out = tmp_path / "out"
    rs = records(60)
    env = smtp_env(base_env, out, server)
    with open(tmp_path / "sender.stderr", "wb") as log:
        sender = subprocess.Popen([script("sender")], stdin=subprocess.PIPE, env=env, cwd=tmp_path, stderr=log)
    try:
        # preflight logged in and quit before the sender reads stdin: rotate the password now
        server.wait_for(
            lambda: server.logins == [(USERNAME, True)] and server.closed == server.sessions == 1, "preflight"
        )
        server.password = "rotated-password"
        assert sender.stdin is not None
        sender.stdin.write(input_file(tmp_path, rs).read_bytes())
        sender.stdin.close()
        status = sender.wait(TIMEOUT)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    stderr = (tmp_path / "sender.stderr").read_text()
    assert status == EXIT_OPERATOR_FAULT, stderr  # the lead's dispatcher: stop on an operator fault
    assert "MAILROOM_SMTP_PASSWORD" in stderr and PASSWORD not in stderr
    assert server.messages == []
    assert jsonl(out / "deliveries.jsonl") == [] and jsonl(out / "rejects.jsonl") == []

    done = run_sender({**env, "MAILROOM_SMTP_PASSWORD": "rotated-password"}, tmp_path, None)  # the journal replays
    assert done.returncode == 0, done.stderr
    assert Counter(server.recipients()) == Counter(r.email for r in rs)
    assert Counter(d["recipient"] for d in jsonl(out / "deliveries.jsonl")) == Counter(r.email for r in rs)
    assert jsonl(out / "rejects.jsonl") == []


def test_smtp_configuration_errors_exit_2_with_one_line_before_any_connection(smtp_server, base_env, tmp_path):
    server = smtp_server()
    cases = [
        ({"MAILROOM_SMTP_HOST": "smtp.example.com", "MAILROOM_SMTP_TLS": "none"}, "MAILROOM_SMTP_TLS"),
        ({"MAILROOM_SMTP_HOST": ""}, "MAILROOM_SMTP_HOST"),
        ({"MAILROOM_SMTP_TLS": "maybe"}, "MAILROOM_SMTP_TLS"),
        ({"MAILROOM_SMTP_USERNAME": "u", "MAILROOM_SMTP_PASSWORD": ""}, "MAILROOM_SMTP_PASSWORD"),
        ({"MAILROOM_CONNECTIONS": "8", "MAILROOM_SES_CONCURRENCY": "4"}, "MAILROOM_CONNECTIONS"),
    ]
    for extra, name in cases:
        done = run_sender(smtp_env(base_env, tmp_path / "out", server, **extra), tmp_path, None)
        assert done.returncode == 2, (extra, done.stderr)
        assert done.stderr.count("\n") == 1 and name in done.stderr and "invalid configuration" in done.stderr
    assert server.sessions == 0


# -- the real pipeline ------------------------------------------------------------------------------

_TOKEN = re.compile(r"/(activate|recover)\?token=([A-Za-z0-9_-]+)")
_CODE = re.compile(r"enter this code when asked: ([0-9]{5})")


def smtp_emails(server: SmtpServer) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, recipient, {secret, code}) of every message the server accepted, read from its text part."""
    found = []
    for received in list(server.messages):
        text = received.message.get_body(("plain",)).get_content()
        path, secret = _TOKEN.search(text).groups()  # type: ignore[union-attr]
        data = {"secret": secret}
        if path == "recover":
            data["code"] = _CODE.search(text).group(1)  # type: ignore[union-attr]
        action = "activation" if path == "activate" else "password_recovery"
        found.extend((action, to, data) for to in received.rcpt_tos)
    return found


def test_smtp_pipeline_delivers_each_email_once_with_verifiable_tokens_and_stops_on_sigterm(
    smtp_server, database_url: str, db: psycopg.Connection, base_env: dict[str, str], tmp_path: Path
) -> None:
    server = smtp_server(password=PASSWORD)
    env = {
        **pipeline_env(base_env, database_url, tmp_path),
        **smtp_env(base_env, tmp_path / "output", server),
        "MAILROOM_SES_MAX_SEND_RATE": "500",
    }
    env.pop("MAILROOM_SES_SOURCE", None)
    deliveries = tmp_path / "output" / "deliveries.jsonl"
    pipeline = RunningPipeline(env, tmp_path)
    try:
        recipients = create_accounts_concurrently(database_url)
        wait_until(lambda: len(jsonl(deliveries)) >= len(recipients), pipeline, f"{len(recipients)} deliveries")
        activation = {to: d for a, to, d in smtp_emails(server) if a == "activation"}
        chosen = activate_and_request_recovery(db, {e: d["secret"] for e, d in activation.items()})
        wait_until(lambda: len(jsonl(deliveries)) >= len(recipients) + len(chosen), pipeline, "the recoveries")
        assert pipeline.sigterm_both() == (0, 0), pipeline.logs()
    finally:
        pipeline.kill()

    rows = jsonl(deliveries)
    assert all(r["status"] == "Success" and r["message_id"].startswith("250 ") for r in rows), rows
    assert Counter((r["action"], r["recipient"]) for r in rows) == Counter(
        [("activation", e) for e in recipients] + [("password_recovery", e) for e in chosen]
    )
    assert (tmp_path / "output" / "rejects.jsonl").read_text() == ""
    sent = smtp_emails(server)
    activation = exactly_once(sent, "activation", recipients)
    recovery = exactly_once(sent, "password_recovery", chosen)
    check_with_mailroom_verify(env, activation, recovery)
    consume_recoveries(db, recovery)
    assert PASSWORD not in pipeline.logs()


# -- a relay refusing *us* at RCPT TO ---------------------------------------------------------------

# Postfix reject_sender_login_mismatch, answered at RCPT TO under its default smtpd_delay_reject=yes
NOT_OWNED = f"553 5.7.1 <{SOURCE}>: Sender address rejected: not owned by user mailroom"


def test_a_relay_refusing_our_sender_at_rcpt_exits_75_writes_nothing_off_and_after_the_fix_delivers_each_once(
    smtp_server, base_env, tmp_path
):
    server = smtp_server()
    server.rcpt_reply = NOT_OWNED
    out = tmp_path / "out"
    rs = records(60)
    env = smtp_env(base_env, out, server)

    done = run_sender(env, tmp_path, input_file(tmp_path, rs))
    assert done.returncode == EXIT_OPERATOR_FAULT, done.stderr
    fault = [line for line in done.stderr.splitlines() if "operator fault" in line]
    assert len(fault) == 1 and "Sender address rejected" in fault[0] and "MAILROOM_SOURCE" in fault[0], done.stderr
    assert server.messages == []
    assert jsonl(out / "rejects.jsonl") == [] and jsonl(out / "deliveries.jsonl") == []

    server.rcpt_reply = None  # the relay's owner fixed the login map
    done = run_sender(env, tmp_path, None)  # the journal replays
    assert done.returncode == 0, done.stderr
    assert Counter(server.recipients()) == Counter(r.email for r in rs)
    assert Counter(d["recipient"] for d in jsonl(out / "deliveries.jsonl")) == Counter(r.email for r in rs)
    assert jsonl(out / "rejects.jsonl") == []


def test_collector_and_sender_stop_on_a_relay_refusing_us_at_rcpt_and_after_the_fix_deliver_each_once(
    smtp_server, database_url: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    server = smtp_server()
    server.rcpt_reply = "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org"
    env = {**pipeline_env(base_env, database_url, tmp_path), **smtp_env(base_env, tmp_path / "output", server)}
    env.pop("MAILROOM_SES_SOURCE", None)
    pipeline = RunningPipeline(env, tmp_path)
    try:
        wait_until(lambda: "ready: preflight passed" in pipeline.sender_log.read_text(), pipeline, "sender ready")
        recipients = insert_accounts(database_url, 40, "late")
        assert pipeline.sender.wait(TIMEOUT) == EXIT_OPERATOR_FAULT, pipeline.logs()
        pipeline.collector.terminate()  # `mailroom run` (or systemd) does this when the sender exits
        pipeline.collector.wait(TIMEOUT)
    finally:
        pipeline.kill()
    assert "blocked using zen.spamhaus.org" in pipeline.sender_log.read_text()
    assert server.messages == []
    assert jsonl(tmp_path / "output" / "rejects.jsonl") == []

    server.rcpt_reply = None  # this host delisted
    pipeline = RunningPipeline(env, tmp_path)
    try:
        wait_until(lambda: set(server.recipients()) >= set(recipients), pipeline, f"{len(recipients)} emails")
        # the journal alone may deliver everything before the collector has its signal handlers
        wait_until(lambda: "ready: start drain done" in pipeline.collector_log.read_text(), pipeline, "collector")
        assert pipeline.sigterm_both() == (0, 0), pipeline.logs()
    finally:
        pipeline.kill()
    assert Counter(server.recipients()) == Counter(recipients)
    assert jsonl(tmp_path / "output" / "rejects.jsonl") == []


# -- an address no message can be built for -------------------------------------------------------


def test_an_address_no_message_can_be_built_for_is_rejected_alone_and_does_not_wedge_the_sender(
    smtp_server, base_env, tmp_path
):
    server = smtp_server()
    out = tmp_path / "out"
    good = records(40)
    other = record(999)  # a token of its own
    bad = Record(ACTIVATION, "typo@[example.com", "typo", other.secret, other.code)
    lines = tmp_path / "input.lines"
    lines.write_bytes(encode_line(good[:20] + [bad] + good[20:]))  # in the middle of one line
    env = smtp_env(base_env, out, server)

    done = run_sender(env, tmp_path, lines)
    assert done.returncode == 0, done.stderr
    assert Counter(server.recipients()) == Counter(r.email for r in good)
    rejects = jsonl(out / "rejects.jsonl")
    assert [r["recipient"] for r in rejects] == ["typo@[example.com"]
    # refused at admission by the address rule (mailroom/addresses.py), before any message is built
    assert rejects[0]["status"] == "InvalidAddress" and "address literal" in rejects[0]["reason"], rejects
    assert "operator fault" not in done.stderr

    done = run_sender(env, tmp_path, None)  # a restart: nothing is left, nothing is sent again
    assert done.returncode == 0, done.stderr
    assert len(server.messages) == 40


# -- a SIGKILL in the middle of a run ---------------------------------------------------------------


def test_a_sigkill_mid_run_sends_again_at_most_the_message_in_flight_on_each_connection(
    smtp_server, base_env, tmp_path
):
    server = smtp_server()
    server.hold_from = 80  # from the 80th message on, the server keeps each message but never replies
    out = tmp_path / "out"
    rs = records(200)
    env = smtp_env(base_env, out, server, MAILROOM_CONNECTIONS="2")
    with open(input_file(tmp_path, rs), "rb") as stdin, open(tmp_path / "sender.stderr", "wb") as log:
        sender = subprocess.Popen([script("sender")], stdin=stdin, env=env, cwd=tmp_path, stderr=log)
    try:
        # both connections wait for the reply to their message in flight: kill the sender now
        server.wait_for(lambda: server.held == 2, "a message in flight on each connection", TIMEOUT)
        sender.send_signal(signal.SIGKILL)
        assert sender.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    in_flight = [m.rcpt_tos[0] for m in server.messages[79:]]
    assert len(in_flight) == 2

    server.hold_from = None
    done = run_sender(env, tmp_path, None)  # the journal replays what was not recorded as sent
    assert done.returncode == 0, done.stderr
    arrivals = Counter(server.recipients())
    assert set(arrivals) == {r.email for r in rs}  # nothing lost
    twice = {to: n for to, n in arrivals.items() if n > 1}
    assert sum(n - 1 for n in twice.values()) <= 2, twice  # MAILROOM_CONNECTIONS
    assert set(twice) == set(in_flight)
    delivered = [d["recipient"] for d in jsonl(out / "deliveries.jsonl") if d["status"] == "Success"]
    assert Counter(delivered) == Counter(r.email for r in rs)
