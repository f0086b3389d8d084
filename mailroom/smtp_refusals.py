"""SMTP mailbox refusals from the sender's rejects.jsonl, as bounce events for the recorder.

Through an SMTP relay there are no SES events: a mailbox that does not exist is refused at
`RCPT TO` (or at `DATA` with a mailbox status, RFC 3463 X.1.x / X.2.x), and the sender writes
the recipient off to rejects.jsonl with the server's reply (docs/reference/outcomes.md). A row
is such a refusal only when its `status` is the sender's `SMTP RCPT 5xx` or `SMTP DATA 5xx`
(sender/smtp.py SmtpFault.status), never because its text holds a number. Its bounce type is
read from the reply's enhanced status code, as SES classifies it:

- a mailbox that does not exist or refuses mail for good (5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10,
  5.2.1: sender/retry.py's recipient statuses) is a Permanent bounce: suppressed at once;
- a full mailbox (5.2.2) or a full mail system (5.3.1) is Transient: RFC 3463 says X.2.2
  "should be used as a persistent transient failure" and X.3.1 is "useful only as a
  persistent transient error"; SES calls a full mailbox Transient/MailboxFull. The recorder's
  transient rule suppresses it only after repeated ones, like an SES soft bounce;
- any other reply (no enhanced status, or one this table does not know) is Undetermined:
  recorded, the token marked bounced, the address not suppressed.

Other rows (SES refusals, deadlines, input errors, an address the server could not take
without SMTPUTF8, a row without an SMTP status) are skipped. Reading a file twice records
nothing twice: each row's event id is the hash of the row.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mailroom.ses_events import Recipient, SesEvent

_REFUSED = "smtp refused this recipient"
_SMTP_5XX_STATUS = re.compile(r"^SMTP (RCPT|DATA) 5\d\d$")  # sender/smtp.py SmtpFault.status
# The enhanced status code (RFC 3463) after the reply code ("550 5.1.1 ..."), or qmail's last "(#5.1.1)".
_ENHANCED = re.compile(r"^\s*(?:\d{3}[ -]\s*)?([245])\.(\d{1,3})\.(\d{1,3})\b")
_ENHANCED_LAST = re.compile(r"\(#([245])\.(\d{1,3})\.(\d{1,3})\)\s*$")
# The mailbox statuses the sender writes a recipient off for (sender/retry.py
# SMTP_RECIPIENT_STATUSES, less 5.2.2): permanent.
PERMANENT_STATUSES = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"})
# Full for now (RFC 3463 X.2.2 mailbox full, X.3.1 mail system full): transient.
TRANSIENT_STATUSES = frozenset({"5.2.2", "5.3.1"})
_TOKEN_REF = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Read:
    events: list[SesEvent]
    skipped: int  # rows that are no SMTP mailbox refusal
    unreadable: list[int]  # line numbers that are not JSON objects


def read_rejects(path: Path) -> Read:
    """The SMTP mailbox refusals of a rejects.jsonl, as events; OSError if unreadable."""
    events: list[SesEvent] = []
    skipped = 0
    unreadable: list[int] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            unreadable.append(number)
            continue
        if not isinstance(row, dict):
            unreadable.append(number)
            continue
        event = _event(row, line)
        if event is None:
            skipped += 1
        else:
            events.append(event)
    return Read(events, skipped, unreadable)


def _event(row: dict[str, object], line: str) -> SesEvent | None:
    recipient, error, when = row.get("recipient"), row.get("error"), row.get("time")
    if row.get("reason") != _REFUSED or not isinstance(recipient, str) or "@" not in recipient:
        return None
    status = row.get("status")
    if not isinstance(error, str) or not isinstance(status, str) or not _SMTP_5XX_STATUS.match(status):
        return None
    try:
        occurred = datetime.fromisoformat(str(when))
    except ValueError:
        return None
    if occurred.tzinfo is None:
        return None
    ref = row.get("token_ref")
    action = row.get("action")
    digest = hashlib.sha256(line.strip().encode()).hexdigest()[:32]
    return SesEvent(
        event_id=f"smtp-refusal:{digest}",
        event_type="Bounce",
        occurred_at=occurred,
        message_id=f"smtp-refusal:{digest}",
        recipients=(Recipient(recipient, error),),
        token_ref=ref if isinstance(ref, str) and _TOKEN_REF.fullmatch(ref) else None,
        action=action if isinstance(action, str) else None,
        bounce_type=bounce_type(error),
        bounce_subtype="MailboxFull" if enhanced_status(error) == "5.2.2" else "SmtpRefusal",
    )


def enhanced_status(reply: str) -> str | None:
    """The RFC 3463 enhanced status code of a reply as the sender writes it ("550 5.1.1 ..."), or None."""
    found = _ENHANCED.match(reply) or _ENHANCED_LAST.search(reply)
    return ".".join(found.groups()) if found else None


def bounce_type(reply: str) -> str:
    """Permanent, Transient or Undetermined (SES's bounce types), from the reply's enhanced status."""
    status = enhanced_status(reply)
    if status in PERMANENT_STATUSES:
        return "Permanent"
    if status in TRANSIENT_STATUSES:
        return "Transient"
    return "Undetermined"
