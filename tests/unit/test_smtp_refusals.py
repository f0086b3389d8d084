"""mailroom/smtp_refusals.py: which rows of rejects.jsonl are SMTP mailbox refusals, and which
bounce type each is (Permanent only for a mailbox status; a full mailbox is Transient)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailroom import smtp_refusals
from sender.retry import SMTP_RECIPIENT_STATUSES

# Real replies, as the sender writes them (`error`: the code, a space, the server's text).
POSTFIX_UNKNOWN_USER = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown in local recipient table"
QMAIL_NO_MAILBOX = "511 sorry, no mailbox here by that name (#5.1.1)"
DOVECOT_QUOTA_STATUS = "552 5.2.2 Mailbox is full"  # Dovecot's quota_status_overquota default, at RCPT via Postfix
EXCHANGE_DISABLED = "550 5.2.1 Mailbox cannot be accessed"
POSTFIX_NO_STATUS = "550 User unknown"  # no enhanced status: the sender refused it on its text


def _row(status: object, error: object, **more: object) -> dict[str, object]:
    return {
        "time": "2026-12-06T08:00:00.000Z",
        "reason": "smtp refused this recipient",
        "recipient": "gone@example.com",
        "token_ref": "0123456789abcdef",
        "action": "activation",
        "status": status,
        "error": error,
        **more,
    }


def _read(tmp_path: Path, *rows: dict[str, object]) -> smtp_refusals.Read:
    path = tmp_path / "rejects.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return smtp_refusals.read_rejects(path)


@pytest.mark.parametrize(
    ("status", "error", "bounce_type", "subtype"),
    [
        ("SMTP RCPT 550", POSTFIX_UNKNOWN_USER, "Permanent", "SmtpRefusal"),
        ("SMTP RCPT 511", QMAIL_NO_MAILBOX, "Permanent", "SmtpRefusal"),
        ("SMTP RCPT 550", EXCHANGE_DISABLED, "Permanent", "SmtpRefusal"),
        ("SMTP RCPT 552", DOVECOT_QUOTA_STATUS, "Transient", "MailboxFull"),
        (
            "SMTP DATA 552",
            "552 5.2.2 <zoe@example.org> Quota exceeded (mailbox for user is full)",
            "Transient",
            "MailboxFull",
        ),
        ("SMTP RCPT 552", "552 5.3.1 Mail system full", "Transient", "SmtpRefusal"),
        ("SMTP RCPT 550", POSTFIX_NO_STATUS, "Undetermined", "SmtpRefusal"),
        ("SMTP DATA 554", "554 5.7.1 Message rejected as spam", "Undetermined", "SmtpRefusal"),
    ],
)
def test_the_bounce_type_comes_from_the_reply_s_enhanced_status(
    tmp_path: Path, status: str, error: str, bounce_type: str, subtype: str
) -> None:
    read = _read(tmp_path, _row(status, error))
    assert [(e.bounce_type, e.bounce_subtype, e.recipients[0].diagnostic) for e in read.events] == [
        (bounce_type, subtype, error)
    ]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("UnbuildableMessage", "no message can be built for this record: template line 500: unknown helper"),
        ("SMTP RCPT error", "the sender failed on this address at RCPT TO: OSError: [Errno 500] 550 5.1.1"),
        ("UnsendableAddress", "the server does not offer SMTPUTF8 (RFC 6531): 550 cannot be sent"),
        ("SMTP RCPT 452", "452 4.2.2 Mailbox full"),  # not a 5xx: never written off, but not a bounce either
        ("SMTP RCPT no-reply", "550 5.1.1 in the text only"),
        (None, POSTFIX_UNKNOWN_USER),
        ("smtp rcpt 550", POSTFIX_UNKNOWN_USER),
    ],
)
def test_a_row_is_a_refusal_only_by_its_smtp_5xx_status_never_by_a_number_in_its_text(
    tmp_path: Path, status: object, error: str
) -> None:
    read = _read(tmp_path, _row(status, error))
    assert (read.events, read.skipped) == ([], 1)


def test_the_permanent_and_transient_statuses_are_the_senders_recipient_statuses() -> None:
    # the sender writes a recipient off for exactly these (sender/retry.py): each gets a type
    assert smtp_refusals.PERMANENT_STATUSES | {"5.2.2"} == SMTP_RECIPIENT_STATUSES
    assert "5.2.2" in smtp_refusals.TRANSIENT_STATUSES
