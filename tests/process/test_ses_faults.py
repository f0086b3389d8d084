"""A misconfigured, revoked or refusing SES account stops the mail and loses none of it.

The real `sender` (and the real `collector | sender`) against `moto_server`, and against
bench/fake_ses.py on loopback, which answers with SES's real XML error bodies where moto
cannot produce a fault. Every test waits on observable events (exit, log lines, rows).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import FAKE_AWS_ENV, pg_connect, prepare_moto_ses, script, two_action_templates
from test_pipeline import RunningPipeline, _moto_messages, pipeline_env, wait_until
from test_sender_process import SOURCE, FakeSes, jsonl, record, sender_env

from bench.fake_ses import Faults
from mailroom import templates
from mailroom.wire import encode_line
from sender.retry import EXIT_OPERATOR_FAULT

ACCOUNTS = 60


def run_sender(env: dict[str, str], cwd: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("sender"), *args],
        input=data.decode(),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- preflight and `sender --check` ------------------------------------------------------------
@pytest.mark.parametrize(
    ("faults", "extra", "expected"),
    [
        (
            Faults(verified={"other@example.com"}),
            {},
            ["✗ source identity: neither noreply@example.com nor example.com"],
        ),
        (
            Faults(templates={"passwordrecoveryv1"}),
            {},
            ["✗ template activation: template 'activationv1' does not exist"],
        ),
        (
            Faults(config_sets=set()),
            {"MAILROOM_SES_CONFIG_SET": "default"},
            ["✗ configuration set: 'default' does not exist"],
        ),
        (Faults(sending_enabled=False), {}, ["✗ account sending: disabled"]),
        (
            Faults(errors={"GetSendQuota": (403, "AccessDenied", "not authorized to perform ses:GetSendQuota")}),
            {},
            ["✗ send quota: SES answered AccessDenied"],
        ),
        (
            Faults(verified=set(), templates=set()),
            {},
            ["✗ source identity", "✗ template activation", "✗ template password_recovery"],
        ),
    ],
)
def test_preflight_failures_exit_2_with_one_line_each_and_read_nothing(base_env, tmp_path, faults, extra, expected):
    out = tmp_path / "out"
    # the original two actions' templates only: the preflight checks each action and locale of the folder
    folder = tmp_path / "templates"
    for name in ("activation", "password_recovery"):
        shutil.copytree(templates.template_dir() / name, folder / name, ignore=shutil.ignore_patterns("pt"))
    with FakeSes(0.0, faults) as ses:
        env = sender_env(base_env, out, ses.url, MAILROOM_TEMPLATES_DIR=str(two_action_templates(tmp_path)), **extra)
        done = run_sender(env, tmp_path, encode_line([record(i) for i in range(5)]))
        assert ses.received == []
    assert done.returncode == 2, done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("sender: preflight failed: ")]
    assert len(problems) == len(expected), done.stderr
    for line, needle in zip(problems, expected, strict=True):
        assert needle in line
        assert "fix:" in line
    assert "Traceback" not in done.stderr
    journal = "".join(p.read_text() for p in out.glob("journal/seg-*.jsonl"))
    assert '"k":"L"' not in journal, "preflight failed, yet input was read"


def test_sender_check_prints_every_check_and_exits_0_when_all_pass(base_env, tmp_path):
    with FakeSes(0.0, Faults(max_send_rate=200.0)) as ses:
        env = sender_env(base_env, tmp_path / "out", ses.url, MAILROOM_SES_CONFIG_SET="transactional")
        done = run_sender(env, tmp_path, b"", "--check")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ templates",
        "✓ source identity",
        "✓ template activation",
        "✓ template password_recovery",
        # then every other action and locale of the shipped templates
        "✓ template activation (pt)",
        "✓ template email_change",
        "✓ template email_change (pt)",
        "✓ template invitation",
        "✓ template invitation (pt)",
        "✓ template magic_link",
        "✓ template magic_link (pt)",
        "✓ template password_recovery (pt)",
        "✓ template welcome",
        "✓ template welcome (pt)",
        "✓ configuration set",
        "✓ account sending",
        "✓ send quota",
    ]
    assert "at most 200 emails/s" in lines[-1]


def test_sender_check_exits_1_and_names_the_fix(base_env, tmp_path):
    with FakeSes(0.0, Faults(templates=set())) as ses:
        done = run_sender(sender_env(base_env, tmp_path / "out", ses.url), tmp_path, b"", "--check")
    assert done.returncode == 1
    assert "✗ template activation: template 'activationv1' does not exist in us-east-1 — fix: run `mailroom " in (
        done.stdout
    )


# -- faults while sending ----------------------------------------------------------------------
def test_one_refused_address_in_100_costs_only_itself_through_the_real_sender(base_env, tmp_path):
    records = [record(i) for i in range(100)]
    bad = records[61].email
    faults = Faults(refuse_call={bad: ("InvalidParameterValue", "Local address contains control or whitespace")})
    with FakeSes(0.0, faults) as ses:
        env = sender_env(base_env, tmp_path / "out", ses.url, MAILROOM_SES_MAX_SEND_RATE="50")
        done = run_sender(env, tmp_path, encode_line(records))
        delivered = ses.delivered
    assert done.returncode == 0, done.stderr
    assert Counter(delivered) == Counter(r.email for r in records if r.email != bad)
    rejects = jsonl(tmp_path / "out" / "rejects.jsonl")
    assert [(r["recipient"], r["status"]) for r in rejects] == [(bad, "InvalidParameterValue")]


@pytest.mark.parametrize(
    ("code", "message", "http"),
    [
        ("AccessDenied", "User is not authorized to perform ses:SendBulkTemplatedEmail", 403),
        ("InvalidClientTokenId", "The security token included in the request is invalid.", 403),
        ("AccountSendingPausedException", "Account sending paused.", 400),
        ("SomeCodeNobodyKnows", "surprise", 400),
    ],
)
def test_an_operator_fault_while_sending_exits_75_writes_off_nothing_and_a_restart_delivers_once(
    base_env, tmp_path, code, message, http
):
    out = tmp_path / "out"
    records = [record(i) for i in range(20)]
    with FakeSes(0.0, Faults(script=[(http, code, message)])) as ses:
        env = sender_env(base_env, out, ses.url)
        stopped = run_sender(env, tmp_path, encode_line(records))
        assert stopped.returncode == EXIT_OPERATOR_FAULT, stopped.stderr
        fault_lines = [line for line in stopped.stderr.splitlines() if "operator fault" in line]
        assert len(fault_lines) == 1 and code in fault_lines[0] and "fix:" in fault_lines[0]
        assert jsonl(out / "rejects.jsonl") == []
        restarted = run_sender(env, tmp_path, b"")
        assert restarted.returncode == 0, restarted.stderr
        assert Counter(ses.delivered) == Counter(r.email for r in records)
    assert jsonl(out / "rejects.jsonl") == []


# -- the real pipeline against moto_server: fix, restart, exactly once ---------------------------
def insert_accounts(database_url: str, n: int, prefix: str) -> list[str]:
    emails = [f"{prefix}{i}@example.com" for i in range(n)]
    with pg_connect(database_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO accounts (email, login) VALUES (%s, %s)", [(e, e.split("@")[0]) for e in emails]
        )
    return emails


def queued(database_url: str) -> int:
    with pg_connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM job_tokens").fetchone()[0]


def run_until_delivered(env: dict[str, str], workdir: Path, moto: str, recipients: list[str]) -> None:
    pipeline = RunningPipeline(env, workdir)
    try:
        wait_until(
            lambda: {to for _, to, _ in _moto_messages(moto)} >= set(recipients),
            pipeline,
            f"{len(recipients)} emails at moto_server",
        )
        assert pipeline.sigterm_both() == (0, 0), pipeline.logs()
    finally:
        pipeline.kill()


def moto_env(base_env: dict[str, str], database_url: str, workdir: Path, moto: str) -> dict[str, str]:
    return {
        **pipeline_env(base_env, database_url, workdir),
        **FAKE_AWS_ENV,
        "MAILROOM_DEBUG": "false",
        "AWS_ENDPOINT_URL_SES": moto,
    }


def test_templates_not_pushed_the_pipeline_writes_off_nothing_and_after_push_delivers_each_once(
    database_url, base_env, tmp_path, moto_server
):
    env = moto_env(base_env, database_url, tmp_path, moto_server)
    recipients = insert_accounts(database_url, ACCOUNTS, "early")
    ses = prepare_moto_ses(env, moto_server, tmp_path, SOURCE)
    for name in ("activationv1", "passwordrecoveryv1"):
        ses.delete_template(TemplateName=name)

    pipeline = RunningPipeline(env, tmp_path)
    try:
        assert pipeline.sender.wait(60) == 2, pipeline.logs()
        pipeline.collector.wait(60)  # it sees its reader gone and rolls back what it had not handed over
    finally:
        pipeline.kill()
    assert "✗ template activation" in pipeline.sender_log.read_text()
    assert "mailroom templates push" in pipeline.sender_log.read_text()
    assert queued(database_url) == ACCOUNTS, "a token left the queue while the sender could not send"
    assert jsonl(tmp_path / "output" / "rejects.jsonl") == []

    prepare_moto_ses(env, moto_server, tmp_path, SOURCE)  # the fix: `mailroom templates push`
    run_until_delivered(env, tmp_path, moto_server, recipients)
    assert Counter(to for _, to, _ in _moto_messages(moto_server)) == Counter(recipients)
    assert jsonl(tmp_path / "output" / "rejects.jsonl") == [] and queued(database_url) == 0


@pytest.mark.parametrize("fault", ["template deleted", "source unverified"])
def test_a_fault_while_running_stops_the_pipeline_and_a_restart_after_the_fix_delivers_each_once(
    database_url, base_env, tmp_path, moto_server, fault
):
    env = moto_env(base_env, database_url, tmp_path, moto_server)
    ses = prepare_moto_ses(env, moto_server, tmp_path, SOURCE)
    pipeline = RunningPipeline(env, tmp_path)
    try:
        wait_until(lambda: "ready: preflight passed" in pipeline.sender_log.read_text(), pipeline, "sender ready")
        if fault == "template deleted":
            ses.delete_template(TemplateName="activationv1")
        else:
            ses.delete_identity(Identity=SOURCE)
        recipients = insert_accounts(database_url, ACCOUNTS, "late")
        assert pipeline.sender.wait(60) == EXIT_OPERATOR_FAULT, pipeline.logs()
        # An idle collector notices its reader is gone only at its next line; `mailroom run`
        # (or systemd) stops it as soon as the sender exits. Here the test does.
        pipeline.collector.terminate()
        pipeline.collector.wait(60)
    finally:
        pipeline.kill()
    log = pipeline.sender_log.read_text()
    fault_lines = [line for line in log.splitlines() if "operator fault" in line]
    assert len(fault_lines) == 1, log
    assert ("mailroom templates push" if fault == "template deleted" else f"verify {SOURCE}") in fault_lines[0]
    assert jsonl(tmp_path / "output" / "rejects.jsonl") == []
    assert _moto_messages(moto_server) == []

    prepare_moto_ses(env, moto_server, tmp_path, SOURCE)  # the fix: verify and push again
    run_until_delivered(env, tmp_path, moto_server, recipients)
    assert Counter(to for _, to, _ in _moto_messages(moto_server)) == Counter(recipients)
    assert jsonl(tmp_path / "output" / "rejects.jsonl") == []
    deliveries = [d for d in jsonl(tmp_path / "output" / "deliveries.jsonl") if d["status"] == "Success"]
    assert Counter(d["recipient"] for d in deliveries) == Counter(recipients)
