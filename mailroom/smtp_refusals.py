"""SMTP mailbox refusals from the sender's rejects.jsonl, as bounce events for the recorder.

Through an SMTP relay there are no SES events: a mailbox that does not exist is refused at
`RCPT TO` (or at `DATA` with a mailbox status, RFC 3463 X.1.x / X.2.x), and the sender writes
the recipient off to rejects.jsonl with the server's reply (docs/reference/outcomes.md). Each
such row becomes one permanent `Bounce` (a 5xx reply is permanent), with the row's token_ref,
so that `mailroom events --from-rejects PATH` suppresses the address like an SES hard bounce.
Other rows (SES refusals, deadlines, input errors, an address the server could not take
without SMTPUTF8) are not mailbox refusals and are skipped. Reading a file twice records
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
_REPLY_5XX = re.compile(r"(?<!\d)5\d\d(?!\d)")
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
    if not isinstance(error, str) or not _REPLY_5XX.search(error) or row.get("status") == "UnsendableAddress":
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
        bounce_type="Permanent",
        bounce_subtype="SmtpRefusal",
    )
