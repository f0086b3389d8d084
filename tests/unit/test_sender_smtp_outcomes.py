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


# Replies real servers give, quoted from their source or documentation (docs/reference/outcomes.md
# lists where each comes from), at the stage the server gives them. smtplib hands over the text
# after the basic code, lines of a multi-line reply joined.
REAL_REPLIES = [
    # -- Postfix (smtpd_check.c), with smtpd_delay_reject=yes: client, HELO and sender
    # restrictions are answered at RCPT TO
    (
        "postfix reject_sender_login_mismatch",
        SMTP_RCPT,
        553,
        "5.7.1 <noreply@example.com>: Sender address rejected: not owned by user mailroom",
        Outcome.OPERATOR,
    ),
    (
        "postfix reject_sender_login_mismatch, not logged in",
        SMTP_RCPT,
        553,
        "5.7.1 <noreply@example.com>: Sender address rejected: not logged in",
        Outcome.OPERATOR,
    ),
    (
        "postfix reject_rbl_client",
        SMTP_RCPT,
        554,
        "5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
        Outcome.OPERATOR,
    ),
    (
        "postfix reject_unknown_sender_domain",
        SMTP_RCPT,
        550,
        "5.1.8 <noreply@example.com>: Sender address rejected: Domain not found",
        Outcome.OPERATOR,
    ),
    (
        "postfix reject_unknown_sender_domain, DNS failing",
        SMTP_RCPT,
        450,
        "4.1.8 <noreply@example.com>: Sender address rejected: Domain not found",
        Outcome.RETRY,
    ),
    (
        "postfix reject_unlisted_sender",
        SMTP_RCPT,
        550,
        "5.1.0 <noreply@example.com>: Sender address rejected: User unknown in virtual mailbox table",
        Outcome.OPERATOR,
    ),
    (
        "postfix reject_unknown_client_hostname",
        SMTP_RCPT,
        450,
        "4.7.1 Client host rejected: cannot find your hostname, [203.0.113.9]",
        Outcome.RETRY,
    ),
    ("postfix relay", SMTP_RCPT, 554, "5.7.1 <ada@example.org>: Relay access denied", Outcome.OPERATOR),
    (
        "postfix unknown local user",
        SMTP_RCPT,
        550,
        "5.1.1 <ada@example.org>: Recipient address rejected: User unknown in local recipient table",
        Outcome.REFUSED,
    ),
    (
        "postfix unknown virtual user",
        SMTP_RCPT,
        550,
        "5.1.1 <ada@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
        Outcome.REFUSED,
    ),
    (
        "postfix sender restriction at MAIL FROM (smtpd_delay_reject=no)",
        SMTP_MAIL,
        553,
        "5.7.1 <noreply@example.com>: Sender address rejected: not owned by user mailroom",
        Outcome.OPERATOR,
    ),
    # -- Exim: sender verification is an ACL of RCPT TO; no enhanced codes by default
    (
        "exim sender verify",
        SMTP_RCPT,
        550,
        "Verification failed for <noreply@example.com> Unrouteable address Sender verify failed",
        Outcome.OPERATOR,
    ),
    ("exim unknown user", SMTP_RCPT, 550, "Unknown user", Outcome.REFUSED),
    ("exim relay", SMTP_RCPT, 550, "relay not permitted", Outcome.OPERATOR),
    # -- Gmail (Google's published SMTP error list)
    (
        "gmail no such user",
        SMTP_RCPT,
        550,
        (
            "5.1.1 The email account that you tried to reach does not exist. Please try 5.1.1 double-checking the"
            " recipient's email address for typos or 5.1.1 unnecessary spaces. Learn more at 5.1.1"
            " https://support.google.com/mail/?p=NoSuchUser a1-v6si1 - gsmtp"
        ),
        Outcome.REFUSED,
    ),
    (
        "gmail disabled account",
        SMTP_RCPT,
        550,
        "5.2.1 The email account that you tried to reach is disabled. - gsmtp",
        Outcome.REFUSED,
    ),
    (
        "gmail full mailbox, for good",
        SMTP_RCPT,
        552,
        "5.2.2 The email account that you tried to reach is over quota. - gsmtp",
        Outcome.REFUSED,
    ),
    (
        "gmail full mailbox, for now",
        SMTP_RCPT,
        452,
        "4.2.2 The email account that you tried to reach is over quota. - gsmtp",
        Outcome.RETRY,
    ),
    (
        "gmail daily quota at MAIL FROM",
        SMTP_MAIL,
        550,
        "5.4.5 Daily user sending quota exceeded. - gsmtp",
        Outcome.QUOTA,
    ),
    ("gmail daily quota at RCPT TO", SMTP_RCPT, 550, "5.4.5 Daily user sending quota exceeded. - gsmtp", Outcome.QUOTA),
    ("gmail daily quota after the message", SMTP_DATA, 550, "5.4.5 Daily user sending quota exceeded.", Outcome.QUOTA),
    ("gmail relay limit", SMTP_RCPT, 550, "5.4.5 Daily SMTP relay limit exceeded for user. - gsmtp", Outcome.QUOTA),
    (
        "gmail peak relay limit",
        SMTP_RCPT,
        450,
        "4.2.1 Peak SMTP relay limit exceeded for customer. - gsmtp",
        Outcome.RETRY,
    ),
    ("gmail login", SMTP_AUTH, 535, "5.7.8 Username and Password not accepted. - gsmtp", Outcome.OPERATOR),
    ("gmail authentication required", SMTP_MAIL, 530, "5.7.0 Authentication Required. - gsmtp", Outcome.OPERATOR),
    ("gmail busy", SMTP_CONNECT, 421, "4.7.0 Try again later, closing connection. - gsmtp", Outcome.RETRY),
    (
        "gmail policy",
        SMTP_DATA,
        550,
        "5.7.1 This message violates example.com email policy. - gcdp <sessionid> - gsmtp",
        Outcome.OPERATOR,
    ),
    # -- Microsoft 365 / Exchange Online Protection
    (
        "m365 IP not accepted",
        SMTP_RCPT,
        550,
        (
            "5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. For more information please"
            " go to https://go.microsoft.com/fwlink/?LinkID=526655 AS(7171)"
        ),
        Outcome.OPERATOR,
    ),
    (
        "m365 blocklisted client",
        SMTP_RCPT,
        550,
        "5.7.1 Service unavailable, Client host [203.0.113.9] blocked using Spamhaus. (AS16012611)",
        Outcome.OPERATOR,
    ),
    (
        "m365 tenant over threshold",
        SMTP_RCPT,
        550,
        "5.7.705 Access denied, tenant has exceeded threshold.",
        Outcome.OPERATOR,
    ),
    (
        "m365 send-as",
        SMTP_DATA,
        550,
        "5.7.60 SMTP; Client does not have permissions to send as this sender [BY2PR1001MB1094.namprd10.prod.outlook.com]",
        Outcome.OPERATOR,
    ),
    (
        "m365 recipient not found",
        SMTP_RCPT,
        550,
        "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        Outcome.REFUSED,
    ),
    # -- the SES SMTP interface (the sandbox and an unverified source are answered after the message)
    (
        "ses identity not verified",
        SMTP_DATA,
        554,
        (
            "Message rejected: Email address is not verified. The following identities failed the check in region"
            " EU-WEST-1: noreply@example.com"
        ),
        Outcome.OPERATOR,
    ),
    ("ses daily quota", SMTP_DATA, 454, "Throttling failure: Daily message quota exceeded.", Outcome.QUOTA),
    ("ses sending rate", SMTP_DATA, 454, "Throttling failure: Maximum sending rate exceeded.", Outcome.RETRY),
    ("ses login", SMTP_AUTH, 535, "Authentication Credentials Invalid", Outcome.OPERATOR),
    # -- qmail puts its enhanced status at the end
    (
        "qmail badmailfrom",
        SMTP_MAIL,
        553,
        "sorry, your envelope sender is in my badmailfrom list (#5.7.1)",
        Outcome.OPERATOR,
    ),
    ("qmail no such user", SMTP_RCPT, 550, "sorry, no mailbox here by that name. (#5.1.1)", Outcome.REFUSED),
    ("hotmail mailbox unavailable", SMTP_RCPT, 550, "Requested action not taken: mailbox unavailable", Outcome.REFUSED),
]


@pytest.mark.parametrize(
    ("server", "stage", "code", "reply", "outcome"), REAL_REPLIES, ids=[r[0] for r in REAL_REPLIES]
)
def test_real_replies_at_the_stage_servers_give_them(server: str, stage: str, code: int, reply: str, outcome: Outcome):
    assert smtp_outcome(stage, code, reply) is outcome


@pytest.mark.parametrize("status", ["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1", "5.2.2"])
def test_only_a_status_that_names_the_mailbox_refuses_the_recipient(status: str) -> None:
    assert smtp_outcome(SMTP_RCPT, 550, f"{status} some text") is Outcome.REFUSED
    assert smtp_outcome(SMTP_DATA, 550, f"{status} some text") is Outcome.REFUSED
    assert smtp_outcome(SMTP_MAIL, 550, f"{status} some text") is Outcome.OPERATOR  # MAIL FROM is about us


@pytest.mark.parametrize(
    "status", ["5.7.1", "5.7.0", "5.7.606", "5.1.7", "5.1.8", "5.1.0", "5.5.1", "5.3.4", "5.0.0", "5.4.1"]
)
def test_every_other_5xx_status_at_rcpt_is_the_operators(status: str) -> None:
    assert smtp_outcome(SMTP_RCPT, 550, f"{status} some text") is Outcome.OPERATOR


def test_a_reply_without_an_enhanced_code_refuses_only_when_it_names_the_mailbox() -> None:
    for text in ["User unknown", "No such user here", "mailbox unavailable", "Unknown user: ada"]:
        assert smtp_outcome(SMTP_RCPT, 550, text) is Outcome.REFUSED, text
    for text in ["Access denied", "Transaction failed", "Unrouteable address", "Rejected"]:
        assert smtp_outcome(SMTP_RCPT, 550, text) is Outcome.OPERATOR, text


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
