"""MAILROOM_REDIRECT_TO through the real `collector | sender`, against a real SMTP server
(aiosmtpd on loopback) and against `moto_server`: every email arrives at the one redirect
address with its original recipient in the subject, none at its own address except the
allow-listed one; a template pushed without the prefix stops the sender before it reads."""

# The fixture `smtp_server` comes from tests/smtp_server.py (imported below).
# ruff: noqa: F811

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from conftest import FAKE_AWS_ENV, prepare_moto_ses, script
from smtp_server import SmtpServer, smtp_server  # noqa: F401
from test_pipeline import RunningPipeline, pipeline_env, wait_until
from test_sender_process import jsonl
from test_sender_smtp_process import input_file, records, run_sender, smtp_env

from mailroom import templates
from mailroom.redirect import SUBJECT_TAG
from sender.retry import EXIT_OPERATOR_FAULT

STAGING = "staging-inbox@example.org"
ALLOWED = "qa@example.com"  # let through by MAILROOM_REDIRECT_EXCEPT=@example.com
SOURCE = "noreply@example.com"
CUSTOMERS = [f"customer{i}@customers.example" for i in range(20)]
REDIRECT_ENV = {"MAILROOM_REDIRECT_TO": STAGING, "MAILROOM_REDIRECT_EXCEPT": "@EXAMPLE.com, boss@customers.example"}


def add_accounts(db: psycopg.Connection, emails: list[str]) -> None:
    """One transaction per account, as an app signs people up: each gets an activation token."""
    for email in emails:
        db.execute("INSERT INTO accounts (email, login) VALUES (%s, %s)", [email, email.partition("@")[0]])


def check_deliveries(deliveries: Path) -> None:
    rows = {r["recipient"]: r for r in jsonl(deliveries)}
    assert sorted(rows) == sorted([*CUSTOMERS, ALLOWED]) and len(jsonl(deliveries)) == 21
    assert all(r["status"] == "Success" for r in rows.values())
    for email in CUSTOMERS:  # both addresses, in one row
        assert (rows[email]["sent_to"], rows[email]["redirected"]) == (STAGING, True)
    assert "sent_to" not in rows[ALLOWED] and "redirected" not in rows[ALLOWED]


def test_smtp_every_email_reaches_the_redirect_address_with_its_recipient_in_the_subject_but_the_allowed_one(
    smtp_server, database_url: str, db: psycopg.Connection, base_env: dict[str, str], tmp_path: Path
) -> None:
    server: SmtpServer = smtp_server()
    env = {
        **pipeline_env(base_env, database_url, tmp_path),
        **smtp_env(base_env, tmp_path / "output", server),
        **REDIRECT_ENV,
        "MAILROOM_SES_MAX_SEND_RATE": "500",
    }
    env.pop("MAILROOM_SES_SOURCE", None)
    deliveries = tmp_path / "output" / "deliveries.jsonl"
    pipeline = RunningPipeline(env, tmp_path)
    try:
        wait_until(lambda: "REDIRECT ON" in pipeline.sender_log.read_text(), pipeline, "the redirect warning")
        add_accounts(db, [*CUSTOMERS, ALLOWED])
        wait_until(lambda: len(jsonl(deliveries)) >= 21, pipeline, "21 deliveries")
        assert pipeline.sigterm_both() == (0, 0), pipeline.logs()
    finally:
        pipeline.kill()

    by_rcpt: dict[str, list[str]] = {}
    for received in server.messages:
        for rcpt in received.rcpt_tos:
            by_rcpt.setdefault(rcpt, []).append(str(received.message["Subject"]))
    assert sorted(by_rcpt) == sorted([STAGING, ALLOWED])  # no customer got anything
    assert Counter(by_rcpt[STAGING]) == Counter(f"[to: {e}] Activate your account" for e in CUSTOMERS)
    assert by_rcpt[ALLOWED] == ["Activate your account"]
    check_deliveries(deliveries)
    assert (tmp_path / "output" / "rejects.jsonl").read_text() == ""
    log = pipeline.sender_log.read_text()
    assert f"REDIRECT ON: every email goes to {STAGING} instead of its recipient, except to" in log


def moto_messages(url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(template, recipient, DefaultTemplateData merged with the destination's data) of every
    destination moto_server accepted: the data SES renders the template with."""
    with urllib.request.urlopen(url + "/moto-api/data.json", timeout=10) as response:
        data = json.load(response)
    found = []
    for message in data.get("ses", {}).get("TemplateMessage", []):
        defaults = json.loads(message["template_data"])
        for dest in message["destinations"]:
            for to in dest["Destination"]["ToAddresses"]:
                found.append((message["template"], to, {**defaults, **json.loads(dest["ReplacementTemplateData"])}))
    return found


def ses_env(base_env: dict[str, str], database_url: str, tmp_path: Path, moto_server: str) -> dict[str, str]:
    return {
        **pipeline_env(base_env, database_url, tmp_path),
        **FAKE_AWS_ENV,
        "MAILROOM_DEBUG": "false",
        "AWS_ENDPOINT_URL_SES": moto_server,
    }


def test_ses_every_email_reaches_the_redirect_address_with_its_recipient_in_the_subject_but_the_allowed_one(
    database_url: str, db: psycopg.Connection, base_env: dict[str, str], tmp_path: Path, moto_server: str
) -> None:
    env = {**ses_env(base_env, database_url, tmp_path, moto_server), **REDIRECT_ENV}
    ses = prepare_moto_ses(env, moto_server, tmp_path, SOURCE)  # the real `mailroom templates push`
    subject = ses.get_template(TemplateName="activationv1")["Template"]["SubjectPart"]
    assert subject == SUBJECT_TAG + "Activate your account"

    db.execute("SELECT mailroom_register_queue('mailroom', 'token_insert')")
    check = subprocess.run(
        [script("mailroom"), "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert f"✓ redirect: ON (MAILROOM_REDIRECT_TO): every email goes to {STAGING} instead of" in check.stdout, (
        check.stdout + check.stderr
    )

    deliveries = tmp_path / "output" / "deliveries.jsonl"
    pipeline = RunningPipeline(env, tmp_path)
    try:
        add_accounts(db, [*CUSTOMERS, ALLOWED])
        wait_until(lambda: len(jsonl(deliveries)) >= 21, pipeline, "21 deliveries")
        assert pipeline.sigterm_both() == (0, 0), pipeline.logs()
    finally:
        pipeline.kill()

    sent = moto_messages(moto_server)
    assert Counter(to for _, to, _ in sent) == Counter({STAGING: 20, ALLOWED: 1})
    # the subjects SES renders from the pushed template and the data it was given
    subjects = Counter((to, templates.render(subject, data)) for _, to, data in sent)
    expected = [(STAGING, f"[to: {e}] Activate your account") for e in CUSTOMERS]
    assert subjects == Counter([*expected, (ALLOWED, "Activate your account")])
    check_deliveries(deliveries)
    assert (tmp_path / "output" / "rejects.jsonl").read_text() == ""


def test_ses_templates_pushed_without_the_prefix_stop_a_redirecting_sender_before_it_reads(
    database_url: str, base_env: dict[str, str], tmp_path: Path, moto_server: str
) -> None:
    env = ses_env(base_env, database_url, tmp_path, moto_server)
    ses = prepare_moto_ses(env, moto_server, tmp_path, SOURCE)  # pushed as production does: no prefix
    pushed = ses.list_templates()["TemplatesMetadata"]  # one per action and locale
    redirecting = {**env, **REDIRECT_ENV}
    (tmp_path / "input").write_text("1,customer@customers.example,c,AAAA\n")
    with open(tmp_path / "input", "rb") as stdin:
        done = subprocess.run(
            [script("sender")], env=redirecting, cwd=tmp_path, stdin=stdin, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2, done.stderr
    failed = [line for line in done.stderr.splitlines() if "preflight failed" in line]
    # one line per SES template the sender would send: every action and locale pushed
    assert len(failed) == len(pushed) == len(templates.load_every()) > 2
    assert all(SUBJECT_TAG in line and "MAILROOM_REDIRECT_TO" in line for line in failed)
    assert moto_messages(moto_server) == []
    assert jsonl(tmp_path / "output" / "deliveries.jsonl") == [] == jsonl(tmp_path / "output" / "rejects.jsonl")


def test_a_redirect_address_the_provider_cannot_take_exits_2_with_one_line_naming_it(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    cases = [
        ({"MAILROOM_REDIRECT_TO": "Staging <s@example.org>"}, "MAILROOM_REDIRECT_TO"),
        ({"MAILROOM_REDIRECT_TO": "zoë@example.org"}, "MAILROOM_REDIRECT_TO"),  # SES takes no UTF-8 local part
        ({"MAILROOM_REDIRECT_EXCEPT": "@example.com"}, "MAILROOM_REDIRECT_EXCEPT"),
        ({"MAILROOM_REDIRECT_TO": STAGING, "MAILROOM_REDIRECT_EXCEPT": "example.com"}, "MAILROOM_REDIRECT_EXCEPT"),
    ]
    for extra, name in cases:
        env = {**base_env, **FAKE_AWS_ENV, "MAILROOM_SES_OUTPUT_PATH": str(tmp_path / "out"), **extra}
        done = subprocess.run(
            [script("sender")],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (extra, done.stderr)
        assert done.stderr.count("\n") == 1 and f"invalid configuration: {name}" in done.stderr, (extra, done.stderr)


def test_smtp_refusing_the_redirect_address_stops_the_sender_and_the_restart_redirects_the_journaled_records(
    smtp_server, base_env: dict[str, str], tmp_path: Path
) -> None:
    server: SmtpServer = smtp_server()
    # Postfix's answer for a mailbox it does not have (smtpd_recipient_restrictions, local_recipient_maps)
    server.refuse_rcpt[STAGING] = (
        f"550 5.1.1 <{STAGING}>: Recipient address rejected: User unknown in local recipient table"
    )
    out = tmp_path / "out"
    rs = records(30)
    env = {**smtp_env(base_env, out, server), "MAILROOM_REDIRECT_TO": STAGING}

    done = run_sender(env, tmp_path, input_file(tmp_path, rs))
    assert done.returncode == EXIT_OPERATOR_FAULT, done.stderr
    assert "MAILROOM_REDIRECT_TO" in done.stderr and "User unknown" in done.stderr
    assert server.messages == []
    assert jsonl(out / "deliveries.jsonl") == [] == jsonl(out / "rejects.jsonl")  # nothing written off

    del server.refuse_rcpt[STAGING]  # the operator fixed the mailbox
    done = run_sender(env, tmp_path, None)  # the journal replays, redirected again
    assert done.returncode == 0, done.stderr
    assert server.recipients() == [STAGING] * 30
    subjects = Counter(str(m.message["Subject"]).partition("] ")[0] + "]" for m in server.messages)
    assert subjects == Counter(f"[to: {r.email}]" for r in rs)
    rows = jsonl(out / "deliveries.jsonl")
    assert Counter((d["recipient"], d["sent_to"]) for d in rows) == Counter((r.email, STAGING) for r in rs)
    assert jsonl(out / "rejects.jsonl") == []


def test_debug_mode_prints_every_email_to_the_redirect_address_with_the_prefixed_subject(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    rs = records(6)  # user0..5@example.com; the allow-list lets user3 through
    env = {
        **base_env,
        "MAILROOM_DEBUG": "true",
        "MAILROOM_SES_OUTPUT_PATH": str(tmp_path / "out"),
        "MAILROOM_REDIRECT_TO": STAGING,
        "MAILROOM_REDIRECT_EXCEPT": "user3@EXAMPLE.COM",
    }
    done = run_sender(env, tmp_path, input_file(tmp_path, rs))
    assert done.returncode == 0, done.stderr
    subjects = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("subject:")]
    to = [line.split(" to ", 1)[1].strip() for line in done.stdout.splitlines() if "] to " in line]
    assert Counter(to) == Counter({STAGING: 5, "user3@example.com": 1})
    titles = {"activation": "Activate your account", "password_recovery": "Reset your password"}
    redirected = [r for r in rs if r.email != "user3@example.com"]
    assert sorted(s for s in subjects if s.startswith("subject: [to: ")) == sorted(
        f"subject: [to: {r.email}] {titles[r.action.name]}" for r in redirected
    )
    assert len(subjects) == 6 and "REDIRECT ON" in done.stderr
