"""THE outcome policy of the sender, in one place: what every provider answer means, and how long to wait.

Every answer of a mail provider falls into exactly one `Outcome`:

- DELIVERED: the provider took the message.
- RETRY: throttling, 5xx, network errors, timeouts: tried again with backoff until MAILROOM_SEND_DEADLINE.
- QUOTA: the daily quota is spent: tried again in minutes, not seconds.
- REFUSED: the provider refused *this recipient* (a per-destination rejection, an address it
  cannot take): only these reach rejects.jsonl, with the provider's reason.
- ISOLATE: a whole call failed with an error that a single destination can cause
  (SES `InvalidParameterValue`): the call is split until the culprit stands alone.
- OPERATOR: templates, configuration set, source identity, credentials, permissions, a paused
  account, and every answer this table does not know. Nothing is written off: the sender
  stops, keeps the records in its journal and exits with EXIT_OPERATOR_FAULT.

Providers classify with the functions below (SES: ses_*, SMTP: smtp_*); the dispatcher (dispatch.py) acts on the outcome only.
botocore is configured not to retry (see ses.py): every retry happens here, per destination.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from botocore.retries import standard

from mailroom.backoff import Backoff

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry". The sender
# exits with it when it stopped on an operator fault; a supervisor restarts it with backoff
# and the journal replays once the fault is fixed.
EXIT_OPERATOR_FAULT = 75


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    QUOTA = "quota"
    REFUSED = "recipient_refused"
    ISOLATE = "isolate"
    OPERATOR = "operator_fault"


# -- SES: per-destination statuses of SendBulkTemplatedEmail (BulkEmailDestinationStatus) ---------
SES_STATUS_OUTCOMES: dict[str, Outcome] = {
    "Success": Outcome.DELIVERED,
    "TransientFailure": Outcome.RETRY,
    "AccountThrottled": Outcome.RETRY,
    "Failed": Outcome.RETRY,  # "SES was unable to process your request": unspecific, so try again
    "AccountDailyQuotaExceeded": Outcome.QUOTA,
    "MessageRejected": Outcome.REFUSED,  # for this destination (unless it names the source)
    "InvalidParameterValue": Outcome.REFUSED,  # this destination's address or data
    "MailFromDomainNotVerified": Outcome.OPERATOR,
    "ConfigurationSetDoesNotExist": Outcome.OPERATOR,
    "TemplateDoesNotExist": Outcome.OPERATOR,
    "AccountSuspended": Outcome.OPERATOR,
    "InvalidSendingPoolName": Outcome.OPERATOR,
    "AccountSendingPaused": Outcome.OPERATOR,
    "ConfigurationSetSendingPaused": Outcome.OPERATOR,
}

# -- SES: error codes of a whole call, beyond what botocore's standard retry checkers classify ----
# Operator faults, each with the fix an operator needs (format fields: template, config_set,
# source, region). Codes not listed here and not retryable by botocore are operator faults too.
INTERNAL_FIX = "the sender failed unexpectedly: see the traceback above and report it"
SES_OPERATOR_FIXES: dict[str, str] = {
    "TemplateDoesNotExist": "a template does not exist in {region}: run `mailroom templates push`",
    "ConfigurationSetDoesNotExist": (
        "configuration set {config_set!r} does not exist in {region}: create it, or set MAILROOM_SES_CONFIG_SET="
        " (empty) to send without one"
    ),
    "MailFromDomainNotVerifiedException": "the custom MAIL FROM domain of {source} is not verified in {region}",
    "AccountSendingPausedException": "sending is paused for this SES account in {region}: resolve it in the SES console",
    "ConfigurationSetSendingPausedException": "sending is paused for configuration set {config_set!r}: resume it",
    "AccessDenied": "the AWS identity may not call SES here: grant the actions in the IAM policy of the SES how-to",
    "AccessDeniedException": "the AWS identity may not call SES here: grant the actions in the IAM policy",
    "InvalidClientTokenId": "the AWS access key is not valid: check the credentials the sender gets",
    "UnrecognizedClientException": "the AWS access key is not valid: check the credentials the sender gets",
    "SignatureDoesNotMatch": "the AWS secret key does not match the access key: check the credentials",
    "IncompleteSignature": "the request signature is incomplete: check the AWS credentials",
    "ExpiredToken": "the AWS session credentials expired: refresh them (instance role, IRSA or a new session)",
    "ExpiredTokenException": "the AWS session credentials expired: refresh them",
    "MissingAuthenticationToken": "no AWS credentials were sent: configure them for the sender",
    "OptInRequired": "the AWS account is not subscribed to SES in {region}",
    "NoCredentials": "no AWS credentials found: configure them for the sender",
    "Internal": INTERNAL_FIX,
}
# Operator faults SES reports per destination, in an HTTP 200 answer (BulkEmailDestinationStatus).
# The sender saves only error answers (HTTP 4xx/5xx) under errors/, so these fixes never point
# there: the log line that stops the sender carries the status and SES's message.
SES_STATUS_FIXES: dict[str, str] = {
    "MailFromDomainNotVerified": (
        "SES says the sender address {source} or its domain is not verified in {region}: verify it (and the MX"
        " record of its custom MAIL FROM domain, if it has one), then restart the sender"
    ),
    "ConfigurationSetDoesNotExist": SES_OPERATOR_FIXES["ConfigurationSetDoesNotExist"],
    "TemplateDoesNotExist": SES_OPERATOR_FIXES["TemplateDoesNotExist"],
    "AccountSuspended": (
        "the SES account in {region} is shut down for its sending practices: only AWS can reinstate it (see the"
        " reputation dashboard in the SES console and open a case with AWS support)"
    ),
    "AccountSendingPaused": (
        "sending is disabled for this SES account in {region} (UpdateAccountSendingEnabled, or a reputation"
        " pause): re-enable it in the SES console, then restart the sender"
    ),
    "ConfigurationSetSendingPaused": (
        "sending is disabled for configuration set {config_set!r} in {region}: re-enable it"
        " (UpdateConfigurationSetSendingEnabled), or set MAILROOM_SES_CONFIG_SET to another one"
    ),
    "InvalidSendingPoolName": (
        "configuration set {config_set!r} names a dedicated IP pool that does not exist in {region}: fix its"
        " delivery options, or set MAILROOM_SES_CONFIG_SET to another one"
    ),
}
SOURCE_NOT_VERIFIED_FIX = "verify {source} (or its domain) in SES in {region}, then restart the sender"
UNKNOWN_FIX = "an answer the sender does not know: read the saved response under <output>/errors/ and the SES docs"
UNKNOWN_STATUS_FIX = (
    "SES answered the destination status {status!r}, which the sender does not know (in an HTTP 200 answer, which"
    " is not saved: SES's message for it is in this line): look it up under BulkEmailDestinationStatus in the SES"
    " API reference"
)
DAILY_QUOTA_MESSAGE = "daily message quota exceeded"

_RETRYABLE = standard.OrRetryChecker(
    [
        standard.TransientRetryableChecker(),
        standard.ThrottledRetryableChecker(),
        standard.ThrottlingStatusCodeChecker(),  # type: ignore[attr-defined]  # in botocore, not in botocore-stubs
        standard.ModeledRetryableChecker(),
    ]
)
_ADDRESSES = re.compile(r"[^\s,;:<>()\"']+@[^\s,;:<>()\"']+")


def ses_status_outcome(status: str, error: str | None, source: str = "") -> Outcome:
    """A destination's status. Unknown statuses are operator faults: nothing is written off."""
    outcome = SES_STATUS_OUTCOMES.get(status, Outcome.OPERATOR)
    if outcome is Outcome.REFUSED and source and names(error or "", [source_address(source)]):
        return Outcome.OPERATOR  # "not verified" about the source, reported per destination
    return outcome


def ses_error_outcome(
    code: str,
    message: str,
    http_status: int | None = None,
    *,
    operation_model: Any = None,
    exception: Exception | None = None,
) -> Outcome:
    """What a whole failed call means: botocore's standard classification first, then this table."""
    if code in ("Throttling", "ThrottlingException") and DAILY_QUOTA_MESSAGE in message.lower():
        return Outcome.QUOTA
    context = standard.RetryContext(
        attempt_number=1,
        operation_model=operation_model,
        parsed_response={"Error": {"Code": code, "Message": message}} if code else None,
        http_response=SimpleNamespace(status_code=http_status) if http_status is not None else None,
        caught_exception=exception,
    )
    if _RETRYABLE.is_retryable(context) or (http_status is not None and http_status >= 500):
        return Outcome.RETRY
    if code == "InvalidParameterValue":
        return Outcome.ISOLATE
    if code == "MessageRejected":
        return Outcome.ISOLATE  # the dispatcher decides from the addresses the message names
    return Outcome.OPERATOR


def ses_fix(code: str, **context: str) -> str:
    """The one-line fix for an operator fault, with the names the operator will recognise."""
    template = SES_OPERATOR_FIXES.get(code, UNKNOWN_FIX)
    return template.format(**{k: context.get(k, "?") for k in ("template", "config_set", "source", "region")})


def ses_status_fix(status: str, **context: str) -> str:
    """The fix for a destination status that is an operator fault (SES_STATUS_FIXES)."""
    names = {k: context.get(k, "?") for k in ("template", "config_set", "source", "region")}
    template = SES_STATUS_FIXES.get(status)
    if template is None:
        return UNKNOWN_STATUS_FIX.format(status=status)
    return template.format(**names)


def ses_source_fix(source: str, region: str) -> str:
    return SOURCE_NOT_VERIFIED_FIX.format(source=source_address(source), region=region)


def source_address(source: str) -> str:
    """The bare address of `Name <addr>` or `addr`."""
    return source.split("<")[-1].rstrip(">").strip()


def names(message: str, addresses: Iterable[str]) -> set[str]:
    """Which of `addresses` the message names (SES's "not verified" lists them), case-insensitively."""
    found = {a.lower().rstrip(".") for a in _ADDRESSES.findall(message)}
    return {a for a in addresses if a.lower() in found}


# -- SMTP: what a reply (or no reply) at each stage of a session means -------------------------
# One message to one recipient is one transaction (MAIL, RCPT, DATA), so a reply is about one
# recipient at most. `code` None means no reply at all: refused, dropped or timed out.
SMTP_CONNECT = "connect"  # the TCP connection and the server's greeting
SMTP_TLS = "tls"  # the TLS handshake (implicit TLS or STARTTLS): certificate, protocol
SMTP_EHLO = "ehlo"  # EHLO, and STARTTLS's own reply, and the extensions the sender needs
SMTP_AUTH = "auth"
SMTP_MAIL = "mail"  # MAIL FROM (and RSET before it)
SMTP_RCPT = "rcpt"
SMTP_DATA = "data"  # the DATA command and the reply to the message
SMTP_EXTENSION = "extension"  # the server lacks what the settings need (STARTTLS, AUTH, a common mechanism)

# What a 5xx means is read from its RFC 3463 enhanced status code ("5.1.1"), never from the basic
# code or the stage alone: Postfix (smtpd_delay_reject=yes, its default), Exim and Microsoft 365
# answer a refused *sender* or *client* at RCPT TO, with the same 550/553/554 as an unknown
# mailbox. The replies this table was built from are quoted in docs/reference/outcomes.md.
#
# Only these name the destination mailbox (RFC 3463 X.1.1 bad mailbox, X.1.2 bad system, X.1.3
# bad syntax, X.1.6 moved, X.1.10 null MX, X.2.1 disabled, X.2.2 full): a 5xx to RCPT TO or to
# the message carrying one of them refuses that recipient, and only that one.
SMTP_RECIPIENT_STATUSES = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1", "5.2.2"})
# Our sending quota is spent (Gmail: "550 5.4.5 Daily user sending quota exceeded"): wait minutes.
SMTP_QUOTA_STATUSES = frozenset({"5.4.5"})
_SMTP_RECIPIENT_4XX = frozenset("4" + s[1:] for s in SMTP_RECIPIENT_STATUSES)  # 4.2.2: their mailbox, full for now
# Every other enhanced status of a 5xx is the operator's: 5.7.x policy, authentication, client
# and sender blocks; 5.1.7/5.1.8 our sender address; 5.5.x protocol; 5.3.4 size; and the codes
# this table does not know. Nothing is written off for them.
_SMTP_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_ENHANCED_LAST = re.compile(r"\(#([245])\.(\d{1,3})\.(\d{1,3})\)\s*$")  # qmail puts it last: "(#5.1.1)"
# A reply about us, whatever its code says: Postfix prefixes a sender or client refusal given
# at RCPT TO with these words (reject_unlisted_sender even says "5.1.0 ... User unknown").
_SMTP_ABOUT_US = re.compile(
    r"sender address rejected|client host rejected|helo command rejected|relay access denied|relaying denied"
    r"|not permitted to relay|relay not permitted|authentication required|not authenticated|must authenticate"
    r"|blocked using|not owned by user|not logged in|sender verify failed",
    re.IGNORECASE,
)
# Without an enhanced code, a reply refuses the recipient only when its text names the mailbox.
_SMTP_MAILBOX_TEXT = re.compile(
    r"user unknown|unknown user|no such user|no such recipient|no such mailbox|mailbox (?:is )?unavailable"
    r"|mailbox not found|mailbox does not exist|account (?:that you tried to reach )?does not exist"
    r"|mailbox (?:is )?full|mailbox for user is full",
    re.IGNORECASE,
)
# Without an enhanced code (SES: "454 Throttling failure: Daily message quota exceeded"), a
# quota is read from the text; a recipient's full mailbox ("over quota") is not ours.
_SMTP_QUOTA_TEXT = re.compile(r"(?:daily|hourly|sending|message)\s+(?:\w+\s+){0,2}quota|sending limit", re.IGNORECASE)

SMTP_FIXES: dict[str, str] = {
    SMTP_CONNECT: (
        "the server at {host}:{port} does not accept mail from us ({reply}): check MAILROOM_SMTP_HOST and"
        " MAILROOM_SMTP_PORT"
    ),
    SMTP_TLS: (
        "TLS with {host}:{port} failed ({reply}): the certificate must be valid for {host} and trusted (set"
        " MAILROOM_SMTP_CA_FILE for a private CA), and MAILROOM_SMTP_TLS must match the port (starttls: 587,"
        " tls: 465)"
    ),
    SMTP_EHLO: "the server at {host}:{port} answered {reply}: check MAILROOM_SMTP_TLS and the server's configuration",
    SMTP_EXTENSION: (
        "the server at {host}:{port} {reply}: check MAILROOM_SMTP_TLS, MAILROOM_SMTP_PORT and MAILROOM_SMTP_USERNAME"
        " against the relay's documentation"
    ),
    SMTP_AUTH: (
        "the server at {host}:{port} refused the login ({reply}): check MAILROOM_SMTP_USERNAME and"
        " MAILROOM_SMTP_PASSWORD (or the relay's API key), then restart the sender"
    ),
    SMTP_MAIL: (
        "the server refused the sender address {source} ({reply}): verify it (or its domain) with the relay,"
        " or fix MAILROOM_SOURCE"
    ),
    SMTP_RCPT: (
        "the server refused us, not the recipient, at RCPT TO ({reply}): a sender it will not take (verify"
        " {source} with the relay, or fix MAILROOM_SOURCE), this host blocked (its IP on a blocklist, or not"
        " allowed by the relay), or no relaying for us (set MAILROOM_SMTP_USERNAME/MAILROOM_SMTP_PASSWORD, or allow"
        " this host on the relay); then restart the sender"
    ),
    SMTP_DATA: (
        "the server refused the message itself ({reply}); our content is the same for every recipient: read the"
        " reply (size, content policy, DKIM/SPF of {source}), fix it, then restart the sender"
    ),
}
SMTP_UNKNOWN_FIX = "the server at {host}:{port} answered {reply} at {stage}, which the sender does not know: read it"


def smtp_enhanced_status(reply: str) -> str | None:
    """The RFC 3463 enhanced status code a reply's text starts with ("5.1.1"), or None."""
    found = _SMTP_ENHANCED.match(reply) or _SMTP_ENHANCED_LAST.search(reply)
    return ".".join(found.groups()) if found else None


def smtp_outcome(stage: str, code: int | None, reply: str = "") -> Outcome:
    """What an SMTP reply (or none) at `stage` means, read from its enhanced status code (and,
    for a reply without one, its text). Anything this function does not know is an operator fault."""
    if stage == SMTP_EXTENSION:
        return Outcome.OPERATOR
    if code is None:
        # TLS refused or a certificate not trusted is configuration; a connection refused,
        # dropped or timed out is the network or the server, and passes.
        return Outcome.OPERATOR if stage == SMTP_TLS else Outcome.RETRY
    if 200 <= code < 300 and stage == SMTP_DATA:
        return Outcome.DELIVERED
    if not 400 <= code < 600:
        return Outcome.OPERATOR
    status = smtp_enhanced_status(reply)
    transaction = stage in (SMTP_MAIL, SMTP_RCPT, SMTP_DATA)
    if code < 500:
        # 421 closing, 450/451/452 try later, 454 TLS or auth temporarily unavailable: retried;
        # our own quota (not a recipient's full mailbox, 4.2.2) is retried after minutes.
        if transaction and status not in _SMTP_RECIPIENT_4XX and _SMTP_QUOTA_TEXT.search(reply):
            return Outcome.QUOTA
        return Outcome.RETRY
    if not transaction:
        return Outcome.OPERATOR  # greeting, TLS, EHLO, AUTH (535)
    if status in SMTP_QUOTA_STATUSES or (status is None and _SMTP_QUOTA_TEXT.search(reply)):
        return Outcome.QUOTA
    if stage == SMTP_MAIL or _SMTP_ABOUT_US.search(reply):
        return Outcome.OPERATOR  # our sender, our client, our relay, our login
    if status is not None:
        return Outcome.REFUSED if status in SMTP_RECIPIENT_STATUSES else Outcome.OPERATOR
    return Outcome.REFUSED if _SMTP_MAILBOX_TEXT.search(reply) else Outcome.OPERATOR


def smtp_fix(stage: str, code: int | None, reply: str = "", **context: object) -> str:
    """The one-line fix for an SMTP operator fault (context: host, port, source)."""
    shown = f"{code} {reply}".strip() if code is not None else (reply or "no answer")
    if stage == SMTP_EXTENSION:
        shown = reply
    names = {k: context.get(k, "?") for k in ("host", "port", "source")}
    known = code is None or 400 <= code < 600
    template = SMTP_FIXES.get(stage, SMTP_UNKNOWN_FIX) if known else SMTP_UNKNOWN_FIX
    return template.format(reply=shown, stage=stage, **names)


@dataclass(frozen=True)
class RetryPolicy:
    """Delays between attempts; tests inject small values so nothing sleeps for real."""

    backoff: Backoff = Backoff(base=0.2, cap=20.0)
    quota_delay: float = 300.0  # "minutes": half to all of this, drawn at random
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, outcome: Outcome, attempt: int) -> float:
        if outcome is Outcome.QUOTA:
            return self.rng.uniform(self.quota_delay / 2, self.quota_delay)
        return self.backoff.delay(attempt, self.rng)
