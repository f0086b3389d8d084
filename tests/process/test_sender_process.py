"""The installed `sender` program as a subprocess: against moto_server, a slow fake SES
(to kill it mid-stream), in debug mode, and with bad configuration."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Self

import boto3
import pytest
from conftest import FAKE_AWS_ENV, script

from bench.fake_ses import Faults, serve
from mailroom import templates
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, Action
from mailroom.settings import SENDER_VARIABLES
from mailroom.signing import sign
from mailroom.wire import Record, encode_line

KEY = bytes(range(32))
SOURCE = "noreply@example.com"


def record(i: int, action: Action = ACTIVATION, login: str | None = None) -> Record:
    secret = hashlib.sha256(f"process secret {i}".encode()).digest()
    code = f"{i % 100000:05d}"
    return Record(action, f"user{i}@example.com", login or f"user{i}", sign(KEY, action, secret, code), code)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class FakeSes:
    """bench/fake_ses.py on loopback (SES's real XML answers); `faults` injects SES's errors."""

    def __init__(self, delay: float, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.delay = delay

    def __enter__(self) -> Self:
        self.server, self.stats = serve(0, self.delay, faults=self.faults)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def received(self) -> list[str]:
        """Every address of every SendBulkTemplatedEmail call, in order."""
        with self.stats.lock:
            return [a for call in self.stats.call_addresses for a in call]

    @property
    def delivered(self) -> list[str]:
        with self.stats.lock:
            return list(self.stats.delivered)


def sender_env(base_env: dict[str, str], out: Path, endpoint: str | None, **extra: str) -> dict[str, str]:
    env = {
        **base_env,
        "MAILROOM_SES_OUTPUT_PATH": str(out),
        "MAILROOM_SES_SOURCE": SOURCE,
        "MAILROOM_SES_CONFIG_SET": "",
        "MAILROOM_SES_MAX_SEND_RATE": "1000",
        **extra,
    }
    if endpoint:
        env.update(FAKE_AWS_ENV)
        env["AWS_ENDPOINT_URL_SES"] = endpoint
    return env


def start(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [script("sender")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def test_sender_sends_through_moto_server_after_templates_push(moto_server, base_env, tmp_path):
    env = sender_env(base_env, tmp_path / "out", moto_server)
    pushed = subprocess.run(
        [script("mailroom"), "templates", "push"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "created SES template activationv1" in pushed.stdout
    again = subprocess.run(
        [script("mailroom"), "templates", "push"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and "updated SES template passwordrecoveryv1" in again.stdout  # idempotent
    client = boto3.client(
        "ses",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.verify_email_identity(EmailAddress=SOURCE)

    records = [
        record(i, (ACTIVATION, PASSWORD_RECOVERY)[i % 2], login=['quote " here', "Zoë {{x}}", "<b>b</b>"][i % 3])
        for i in range(60)
    ]
    data = encode_line(records[:30]) + b"1,bad-email,x,y,00000\n" + encode_line(records[30:])
    done = subprocess.run([script("sender")], input=data, env=env, cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    rows = jsonl(tmp_path / "out" / "deliveries.jsonl")
    assert sorted(r["recipient"] for r in rows) == sorted(r.email for r in records)
    assert all(r["status"] == "Success" and r["message_id"] for r in rows)
    assert client.get_send_quota()["SentLast24Hours"] == 60
    assert len(jsonl(tmp_path / "out" / "rejects.jsonl")) == 1
    assert done.stderr.decode().count("rejected input") == 1
    assert done.stdout == b""  # stdout is data: nothing there outside debug mode


def test_sigkill_mid_stream_then_restart_resends_the_unfinished_and_not_the_delivered(base_env, tmp_path):
    out = tmp_path / "out"
    records = [record(i) for i in range(400)]
    with FakeSes(delay=0.2) as ses:
        env = sender_env(base_env, out, ses.url, MAILROOM_SES_CONCURRENCY="2", MAILROOM_SES_MAX_SEND_RATE="100")
        proc = start(env, tmp_path)
        try:
            for i in range(0, 400, 10):
                proc.stdin.write(encode_line(records[i : i + 10]))
            proc.stdin.flush()
            wait_for(lambda: len(jsonl(out / "deliveries.jsonl")) >= 50, what="first deliveries")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            stop(proc)
        delivered_before = {r["recipient"] for r in jsonl(out / "deliveries.jsonl")}
        received_before = len(ses.received)
        assert 50 <= len(delivered_before) < 400

        restarted = subprocess.run(
            [script("sender")], input=b"", env=env, cwd=tmp_path, capture_output=True, timeout=120
        )
        assert restarted.returncode == 0, restarted.stderr.decode()
        resent = ses.received[received_before:]
    assert not delivered_before & set(resent), "a delivered record was sent again"
    assert set(ses.received) == {r.email for r in records}, "a record was lost"
    # at most the calls in flight at the kill (2 x 50) were sent twice
    assert sum(n - 1 for n in Counter(ses.received).values()) <= 100


def test_sigterm_stops_reading_finishes_in_flight_calls_and_exits_0(base_env, tmp_path):
    out = tmp_path / "out"
    records = [record(i) for i in range(300)]
    with FakeSes(delay=0.3) as ses:
        env = sender_env(base_env, out, ses.url, MAILROOM_SES_CONCURRENCY="2", MAILROOM_SES_MAX_SEND_RATE="100")
        proc = start(env, tmp_path)
        try:
            proc.stdin.write(b"".join(encode_line(records[i : i + 10]) for i in range(0, 300, 10)))
            proc.stdin.flush()
            wait_for(lambda: len(ses.received) > 0, what="the first call")
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            stop(proc)
        assert proc.returncode == 0, err.decode()
        rows = jsonl(out / "deliveries.jsonl")
        assert {r["recipient"] for r in rows} == set(ses.received)  # every call that went out was finished
        assert len(rows) < 300
        assert b"unfinished record(s) stay in the journal" in err

        restarted = subprocess.run(
            [script("sender")], input=b"", env=env, cwd=tmp_path, capture_output=True, timeout=120
        )
        assert restarted.returncode == 0
    assert sorted(r["recipient"] for r in jsonl(out / "deliveries.jsonl")) == sorted(r.email for r in records)
    assert Counter(ses.received).most_common(1)[0][1] == 1


def test_end_of_input_waits_for_everything_in_flight_before_exit_0(base_env, tmp_path):
    records = [record(i) for i in range(120)]
    with FakeSes(delay=0.2) as ses:
        env = sender_env(base_env, tmp_path / "out", ses.url)
        done = subprocess.run(
            [script("sender")], input=encode_line(records), env=env, cwd=tmp_path, capture_output=True, timeout=60
        )
    assert done.returncode == 0
    assert len(jsonl(tmp_path / "out" / "deliveries.jsonl")) == 120 and len(ses.received) == 120


def test_debug_mode_prints_each_email_and_needs_no_aws(base_env, tmp_path):
    env = sender_env(
        base_env, tmp_path / "out", None, MAILROOM_DEBUG="true", MAILROOM_APP_URL="https://app.example.com"
    )
    data = encode_line([record(1, login="<a href='x'>hi</a>"), record(2, PASSWORD_RECOVERY)])
    done = subprocess.run([script("sender")], input=data, env=env, cwd=tmp_path, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    for expected in (
        "template:          activationv1",
        "template:          passwordrecoveryv1",
        "configuration set: (none)",
        f"source:            {SOURCE}",
        "to user1@example.com",
        "to user2@example.com",
        "subject: Activate your account",
        "subject: Reset your password",
        "https://app.example.com/activate?token=" + record(1).secret,
    ):
        assert expected in out
    rows = jsonl(tmp_path / "out" / "deliveries.jsonl")
    assert len(rows) == 2 and all(r["debug"] is True for r in rows)


def test_help_lists_every_variable(base_env, tmp_path):
    done = subprocess.run(
        [script("sender"), "--help"], env=base_env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    for name in SENDER_VARIABLES:
        assert name in done.stdout


@pytest.mark.parametrize(
    "extra,needle",
    [
        ({"MAILROOM_SES_CONCURRENCY": "0"}, "MAILROOM_SES_CONCURRENCY"),
        ({"MAILROOM_SES_MAX_SEND_RATE": "fast"}, "MAILROOM_SES_MAX_SEND_RATE"),
        ({"MAILROOM_SEND_DEADLINE": "-1"}, "MAILROOM_SEND_DEADLINE"),
        ({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_CONFIG_FILE": "/nonexistent"}, "AWS_REGION"),
    ],
)
def test_invalid_configuration_exits_2_with_one_line(base_env, tmp_path, extra, needle):
    env = {**sender_env(base_env, tmp_path / "out", None), **extra}
    done = subprocess.run(
        [script("sender")], input="", env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and needle in done.stderr and "invalid configuration" in done.stderr


@pytest.mark.parametrize("debug", ["true", "false"])
def test_a_broken_template_exits_2_with_one_line_naming_file_and_line_before_reading_stdin(base_env, tmp_path, debug):
    mine = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), mine)
    broken = mine / "password_recovery" / "body.txt"
    broken.write_text("Hello {{login}},\n\n{{#if code}}enter {{code}}{{/if}}\n")
    env = sender_env(base_env, tmp_path / "out", None, MAILROOM_DEBUG=debug, MAILROOM_TEMPLATES_DIR=str(mine))
    if debug == "false":
        env.update(FAKE_AWS_ENV)  # SES mode gets as far as it can without a network call
    line = encode_line([record(1)])
    r, w = os.pipe()
    try:
        os.write(w, line)  # waiting in stdin: a sender that read anything would take it out
        done = subprocess.run(
            [script("sender")], check=False, stdin=r, env=env, cwd=tmp_path, capture_output=True, timeout=30
        )
        assert done.returncode == 2, done.stderr
        assert done.stdout == b""
        assert done.stderr.decode() == (
            f"sender: invalid template: {broken}, line 3: unsupported Handlebars expression {{{{#if code}}}}; "
            f"{templates.SUPPORTED}\n"
        )
        os.set_blocking(r, False)
        assert os.read(r, len(line) + 1) == line  # stdin untouched
    finally:
        os.close(r)
        os.close(w)
    assert not (tmp_path / "out").exists()  # nothing started: no journal, no output files


def test_debug_mode_prints_emails_from_a_templates_folder_of_your_own(base_env, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), mine)
    (mine / "activation" / "subject.txt").write_text(
        "Hi, {{{login}}}\n"
    )  # raw: a subject is not HTML; the 64-character fixture: 68 characters
    env = sender_env(base_env, tmp_path / "out", None, MAILROOM_DEBUG="true", MAILROOM_TEMPLATES_DIR=str(mine))
    done = subprocess.run(
        [script("sender")],
        check=False,
        input=encode_line([record(7)]),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert "subject: Hi, user7" in done.stdout.decode()


def test_a_templates_folder_that_does_not_exist_exits_2_naming_the_variable(base_env, tmp_path):
    env = sender_env(base_env, tmp_path / "out", None, MAILROOM_TEMPLATES_DIR=str(tmp_path / "nowhere"))
    done = subprocess.run(
        [script("sender")], check=False, input="", env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.startswith("sender: invalid configuration: MAILROOM_TEMPLATES_DIR: ")
    assert done.stderr.count("\n") == 1
