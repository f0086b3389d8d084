"""`mailroom events --from-rejects PATH`: the SMTP mailbox refusals of the sender's
rejects.jsonl recorded as bounces, permanent only for a mailbox status (no SQS involved)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
from conftest import script

from mailroom.signing import secret_ref

# Postfix's reply to RCPT TO for an unknown local user (smtpd_check.c, "User unknown in local
# recipient table"), as the sender writes it off (docs/reference/outcomes.md).
DOVECOT_MAILBOX_FULL = "552 5.2.2 Mailbox is full"  # Dovecot's quota_status_overquota default
POSTFIX_UNKNOWN_USER = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown in local recipient table"


def _run(base_env: dict[str, str], database_url: str, tmp_path: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = {**base_env, "MAILROOM_DATABASE_URL": database_url}  # no MAILROOM_EVENTS_QUEUE_URL: not needed
    return subprocess.run(
        [script("mailroom"), "events", "--from-rejects", str(path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_smtp_mailbox_refusals_are_recorded_as_bounces_once_and_other_rows_skipped(
    base_env: dict[str, str], database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    db.execute("INSERT INTO accounts (email, login, status) VALUES ('gone@example.com', 'gone', 'active')")
    db.execute("INSERT INTO tokens (account, action) SELECT id, 'password_recovery' FROM accounts")
    (secret,) = db.execute("SELECT secret FROM tokens").fetchone()
    ref = secret_ref(bytes(secret))
    record = {"action": 2, "email": "gone@example.com", "login": "gone", "secret": "AAECAw…", "code": "12345"}
    rows = [
        {
            "time": "2026-12-06T08:00:00.000Z",
            "reason": "smtp refused this recipient",
            "action": "password_recovery",
            "recipient": "gone@example.com",
            "token_ref": ref,
            "status": "SMTP RCPT 550",
            "error": POSTFIX_UNKNOWN_USER,
            "attempts": 1,
            "record": record,
        },
        {  # a full mailbox (Dovecot's quota-status answer at RCPT): a transient bounce, not suppressed
            "time": "2026-12-06T07:59:00.000Z",
            "reason": "smtp refused this recipient",
            "recipient": "full@example.com",
            "status": "SMTP RCPT 552",
            "error": DOVECOT_MAILBOX_FULL,
        },
        {  # no message could be built: a 500 in its text is no SMTP reply
            "time": "2026-12-06T07:59:30.000Z",
            "reason": "smtp refused this recipient",
            "recipient": "odd@example.com",
            "status": "UnbuildableMessage",
            "error": "no message can be built for this record: line 500: unknown helper",
        },
        {  # SES's refusal: not an SMTP mailbox
            "time": "2026-12-06T08:00:01.000Z",
            "reason": "ses refused this recipient",
            "recipient": "bob@example.org",
            "status": "MessageRejected",
            "error": "Email address is not verified.",
        },
        {  # the server cannot take a non-ASCII local part: not about the mailbox
            "time": "2026-12-06T08:00:02.000Z",
            "reason": "smtp refused this recipient",
            "recipient": "zoë@example.org",
            "status": "UnsendableAddress",
            "error": "the server does not offer SMTPUTF8 (RFC 6531): 550 cannot be sent",
        },
        {"time": "2026-12-06T08:00:03.000Z", "reason": "deadline passed while retrying", "recipient": "x@example.com"},
    ]
    path = tmp_path / "rejects.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\nnot json\n", encoding="utf-8")
    first = _run(base_env, database_url, tmp_path, path)
    assert first.returncode == 1, first.stderr  # one line is not JSON; the rest was recorded
    assert first.stderr.strip().endswith(f"{path}:7: not a JSON object: skipped")
    assert first.stdout == (
        f"{path}: 2 SMTP mailbox refusal(s): 2 recorded now, 0 already recorded; 1 address(es) suppressed; "
        "4 other row(s) skipped\n"
    )
    assert db.execute("SELECT address, reason, bounce_type, diagnostic FROM suppressions").fetchall() == [
        ("gone@example.com", "bounce", "Permanent", POSTFIX_UNKNOWN_USER)
    ]
    assert db.execute("SELECT status FROM delivery_status").fetchall() == [("bounced",)]
    assert db.execute(
        "SELECT address, bounce_type, bounce_subtype FROM delivery_events ORDER BY address"
    ).fetchall() == [
        ("full@example.com", "Transient", "MailboxFull"),
        ("gone@example.com", "Permanent", "SmtpRefusal"),
    ]
    again = _run(base_env, database_url, tmp_path, path)
    assert "2 SMTP mailbox refusal(s): 0 recorded now, 2 already recorded" in again.stdout
    assert db.execute("SELECT count(*) FROM delivery_events").fetchone() == (2,)
