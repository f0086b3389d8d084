"""The SMTP rows of the one outcome table (sender/retry.py): what each reply at each stage means."""

from __future__ import annotations

import pytest

from sender.retry import (
    SMTP_AUTH,
    SMTP_CONNECT,
    SMTP_DATA,
    SMTP_EHLO,
    SMTP_EXTENSION,
    SMTP_MAIL,
    SMTP_RCPT,
    SMTP_TLS,
    Outcome,
    smtp_fix,
    smtp_outcome,
)


@pytest.mark.parametrize(
    ("stage", "code", "reply", "outcome"),
    [
        # delivered: only a 2xx to the message itself
        (SMTP_DATA, 250, "2.0.0 Ok: queued as ABC", Outcome.DELIVERED),
        # retry: every 4xx, and no reply at all (refused, dropped, timed out)
        (SMTP_CONNECT, None, "ConnectionRefusedError", Outcome.RETRY),
        (SMTP_CONNECT, 421, "4.3.2 Service shutting down", Outcome.RETRY),
        (SMTP_AUTH, 454, "4.7.0 Temporary authentication failure", Outcome.RETRY),
        (SMTP_MAIL, 451, "4.3.0 Local error", Outcome.RETRY),
        (SMTP_RCPT, 450, "4.2.0 Greylisted", Outcome.RETRY),
        (SMTP_RCPT, 452, "4.5.3 Too many recipients", Outcome.RETRY),
        (SMTP_DATA, 451, "4.3.0 Queue full", Outcome.RETRY),
        (SMTP_DATA, None, "SMTPServerDisconnected", Outcome.RETRY),
        (SMTP_MAIL, None, "TimeoutError", Outcome.RETRY),
        # recipient refused: a 5xx to RCPT, and a 5xx to DATA that names the mailbox
        (SMTP_RCPT, 550, "5.1.1 User unknown", Outcome.REFUSED),
        (SMTP_RCPT, 553, "5.1.3 Bad address syntax", Outcome.REFUSED),
        (SMTP_RCPT, 552, "5.2.2 Mailbox full", Outcome.REFUSED),
        (SMTP_DATA, 550, "5.1.1 <x@example.com>: mailbox unavailable", Outcome.REFUSED),
        (SMTP_DATA, 552, "5.2.2 Mailbox full", Outcome.REFUSED),
        # operator faults: ours to fix, nothing written off
        (SMTP_AUTH, 535, "5.7.8 Authentication credentials invalid", Outcome.OPERATOR),
        (SMTP_AUTH, 534, "5.7.9 Authentication mechanism is too weak", Outcome.OPERATOR),
        (SMTP_MAIL, 553, "5.7.1 Sender address rejected: not owned by user", Outcome.OPERATOR),
        (SMTP_MAIL, 530, "5.7.0 Authentication required", Outcome.OPERATOR),
        (SMTP_RCPT, 554, "5.7.1 <x@example.com>: Relay access denied", Outcome.OPERATOR),
        (SMTP_RCPT, 550, "5.7.1 Relaying denied", Outcome.OPERATOR),
        (SMTP_RCPT, 530, "5.7.0 Authentication required", Outcome.OPERATOR),
        (SMTP_DATA, 554, "5.7.1 Message rejected as spam", Outcome.OPERATOR),
        (SMTP_DATA, 552, "5.3.4 Message size exceeds fixed limit", Outcome.OPERATOR),
        (SMTP_DATA, 554, "Transaction failed", Outcome.OPERATOR),
        (SMTP_TLS, None, "SSLCertVerificationError: self-signed certificate", Outcome.OPERATOR),
        (SMTP_TLS, 502, "5.5.1 STARTTLS not supported", Outcome.OPERATOR),
        (SMTP_CONNECT, 554, "5.3.2 No SMTP service here", Outcome.OPERATOR),
        (SMTP_EHLO, 501, "5.5.4 Syntax error", Outcome.OPERATOR),
        (SMTP_EXTENSION, None, "does not offer STARTTLS", Outcome.OPERATOR),
        # unknown answers
        (SMTP_RCPT, 600, "what", Outcome.OPERATOR),
        (SMTP_DATA, 354, "unexpected", Outcome.OPERATOR),
        (SMTP_MAIL, 199, "", Outcome.OPERATOR),
    ],
)
def test_each_smtp_reply_has_one_outcome(stage: str, code: int | None, reply: str, outcome: Outcome) -> None:
    assert smtp_outcome(stage, code, reply) is outcome


@pytest.mark.parametrize(
    ("stage", "code", "reply", "needle"),
    [
        (SMTP_AUTH, 535, "5.7.8 Authentication credentials invalid", "MAILROOM_SMTP_PASSWORD"),
        (SMTP_MAIL, 553, "5.7.1 Sender address rejected", "MAILROOM_SOURCE"),
        (SMTP_TLS, None, "SSLCertVerificationError", "MAILROOM_SMTP_CA_FILE"),
        (SMTP_RCPT, 554, "5.7.1 Relay access denied", "MAILROOM_SMTP_USERNAME"),
        (SMTP_DATA, 554, "5.7.1 spam", "same for every recipient"),
        (SMTP_EXTENSION, None, "does not offer STARTTLS", "MAILROOM_SMTP_TLS"),
        (SMTP_RCPT, 600, "what", "does not know"),
    ],
)
def test_every_smtp_operator_fault_names_its_fix_with_the_reply(stage: str, code: int | None, reply: str, needle: str):
    fix = smtp_fix(stage, code, reply, host="smtp.example.com", port=587, source="noreply@example.com")
    assert needle in fix and reply in fix
