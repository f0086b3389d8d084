"""Recording one SES event: the event itself, the token's delivery status, the suppression.

One event is one transaction: either all of it is recorded or none, so that the SQS message
is deleted only once its event is safely in the database. Recording is idempotent by event
id (the primary key of delivery_events): a redelivered event inserts nothing and so changes
nothing else either.

What suppresses an address: a permanent bounce, a complaint, or the transient bounce that
makes `TransientRule.count` of them within `TransientRule.window_s` (default 3 in 7 days).
An `Undetermined` bounce is recorded and suppresses nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg

from mailroom.db import queries
from mailroom.ses_events import SesEvent
from mailroom.suppressions import NotAnAddress, address_key

log = logging.getLogger("mailroom.events")

# SES's mailbox simulator, where the sender's bisection probe goes (sender/ses.py probe_address).
# SES counts mail to it in no reputation metric, so neither does mailroom: its events are not
# recorded (no row for the rates, no status, no suppression).
SIMULATOR_DOMAIN = "simulator.amazonses.com"

DEFAULT_TRANSIENT_COUNT = 3
DEFAULT_TRANSIENT_WINDOW_S = 7 * 86400.0


@dataclass(frozen=True)
class TransientRule:
    """Transient bounces suppress an address once `count` of them fall within `window_s`."""

    count: int = DEFAULT_TRANSIENT_COUNT
    window_s: float = DEFAULT_TRANSIENT_WINDOW_S


@dataclass
class Recorded:
    """What recording one event did, for the log and the metrics."""

    new: int = 0  # recipients whose part of the event was recorded now
    duplicates: int = 0  # recipients whose part was already recorded (a redelivery)
    not_addresses: list[str] = field(default_factory=list)  # recipients with no usable address
    suppressed: list[str] = field(default_factory=list)  # addresses put on (or kept on) the list
    statuses: int = 0  # token statuses that changed
    simulated: int = 0  # recipients at SES's mailbox simulator (the sender's probe): not recorded


def record(
    conn: psycopg.Connection, event: SesEvent, rule: TransientRule = TransientRule(), *, own_block: bool = True
) -> Recorded:
    """Record `event` in one transaction of `conn` (committed on return), or in a savepoint
    when `conn` is in a transaction already. With `own_block=False` it runs in the caller's
    transaction as it is: the caller then keeps the event whole by rolling back everything
    when it fails (`mailroom events` batches its commits so)."""
    done = Recorded()
    if own_block:
        with conn.transaction():
            _record(conn, event, rule, done)
    else:
        _record(conn, event, rule, done)
    return done


def _record(conn: psycopg.Connection, event: SesEvent, rule: TransientRule, done: Recorded) -> None:
    q = queries("events.sql")
    for recipient in event.recipients:
        if recipient.address.rpartition("@")[2].lower() == SIMULATOR_DOMAIN:
            done.simulated += 1
            continue
        try:
            key = address_key(recipient.address)
        except NotAnAddress:
            done.not_addresses.append(recipient.address)
            continue
        row = conn.execute(
            q["insert_event"],
            {
                "event_id": event.event_id,
                "address_key": key,
                "address": recipient.address,
                "event_type": event.event_type,
                "occurred_at": event.occurred_at,
                "token_ref": event.token_ref,
                "action": event.action,
                "message_id": event.message_id,
                "bounce_type": event.bounce_type,
                "bounce_subtype": event.bounce_subtype,
                "feedback_type": event.feedback_type,
                "diagnostic": recipient.diagnostic,
                "status": event.delivery_status,
            },
        ).fetchone()
        if row is None:
            done.duplicates += 1
            continue
        done.new += 1
        done.statuses += bool(row[1])
        reason = _suppression_reason(conn, event, key, rule)
        if reason is not None:
            conn.execute(
                q["suppress"],
                {
                    "address": recipient.address,
                    "reason": reason,
                    "diagnostic": recipient.diagnostic,
                    "bounce_type": event.bounce_type,
                    "bounce_subtype": event.bounce_subtype,
                    "feedback_type": event.feedback_type,
                    "event_id": event.event_id,
                    "at": event.occurred_at,
                },
            )
            done.suppressed.append(recipient.address)


def _suppression_reason(conn: psycopg.Connection, event: SesEvent, key: str, rule: TransientRule) -> str | None:
    if event.event_type == "Complaint":
        return "complaint"
    if event.is_permanent_bounce:
        return "bounce"
    if not event.is_transient_bounce:
        return None
    q = queries("events.sql")
    conn.execute(q["lock_address"], {"address_key": key})
    row = conn.execute(
        q["transient_bounces"], {"address_key": key, "until": event.occurred_at, "window_s": rule.window_s}
    ).fetchone()
    return "bounce" if row is not None and row[0] >= rule.count else None
