"""Recording one SES event: the event itself, the token's delivery status, the suppression.

An event is recorded whole or not at all, in a transaction the SQS message outlives: it is
deleted only once its event is safely in the database. `record` gives an event a transaction
(or a savepoint) of its own; `record_many` records a batch in the caller's transaction, in one
statement (`mailroom events` commits up to 100 events at once). Recording is idempotent by event
id (the primary key of delivery_events): a redelivered event inserts nothing and so changes
nothing else either.

What suppresses an address: a permanent bounce, a complaint, or the transient bounce that
makes `TransientRule.count` of them within `TransientRule.window_s` (default 3 in 7 days).
An `Undetermined` bounce is recorded and suppresses nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from mailroom.db import queries
from mailroom.ses_events import Recipient, SesEvent
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
    when it fails."""
    if own_block:
        with conn.transaction():
            return record_many(conn, [event], rule)[0]
    return record_many(conn, [event], rule)[0]


def record_many(
    conn: psycopg.Connection, events: Sequence[SesEvent], rule: TransientRule = TransientRule()
) -> list[Recorded]:
    """Record `events` in the caller's transaction, as it is: what each one did, in their order.

    One statement records every recipient's part of every event and the token statuses (one
    round trip for a batch, which is what lets `mailroom events` keep up with SQS); then one
    statement per suppression, which are few. The caller keeps each event whole by rolling
    back the whole transaction when any of this fails (or calls `record`, one savepoint per
    event, to find the event the database refuses). An event given twice is recorded once:
    the second is a duplicate, as a redelivery would be.
    """
    done = [Recorded() for _ in events]
    rows: list[tuple[int, Recipient, str]] = []  # (the event's index, the recipient, its address key)
    seen: set[tuple[str, str]] = set()
    for i, event in enumerate(events):
        for recipient in event.recipients:
            if recipient.address.rpartition("@")[2].lower() == SIMULATOR_DOMAIN:
                done[i].simulated += 1
                continue
            try:
                key = address_key(recipient.address)
            except NotAnAddress:
                done[i].not_addresses.append(recipient.address)
                continue
            if (event.event_id, key) in seen:
                done[i].duplicates += 1
                continue
            seen.add((event.event_id, key))
            rows.append((i, recipient, key))
    if not rows:
        return done
    q = _queries()
    columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    for i, recipient, key in rows:
        event = events[i]
        for name, value in zip(
            _COLUMNS,
            (
                event.event_id,
                key,
                recipient.address,
                event.event_type,
                event.occurred_at,
                event.token_ref,
                event.action,
                event.message_id,
                event.bounce_type,
                event.bounce_subtype,
                event.feedback_type,
                recipient.diagnostic,
                event.delivery_status,
            ),
            strict=True,
        ):
            columns[name].append(value)
    new: dict[int, bool] = {row: changed for row, changed in conn.execute(q["insert_events"], columns).fetchall()}
    for row, (i, _, _) in enumerate(rows):
        if row in new:
            done[i].new += 1
            done[i].statuses += new[row]
        else:
            done[i].duplicates += 1
    suppressing = [(i, recipient, key) for row, (i, recipient, key) in enumerate(rows) if row in new]
    # Transient bounces are counted under a lock per address, taken in one order (the keys
    # sorted) so that two recorders with the same addresses in one batch cannot deadlock.
    for key in sorted({key for i, _, key in suppressing if events[i].is_transient_bounce}):
        conn.execute(q["lock_address"], {"address_key": key})
    for i, recipient, key in suppressing:
        event = events[i]
        reason = _suppression_reason(conn, event, key, rule)
        if reason is None:
            continue
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
        done[i].suppressed.append(recipient.address)
    return done


# The columns of sql/events.sql's insert_events, one array each, in this order.
_COLUMNS = (
    "event_id",
    "address_key",
    "address",
    "event_type",
    "occurred_at",
    "token_ref",
    "action",
    "message_id",
    "bounce_type",
    "bounce_subtype",
    "feedback_type",
    "diagnostic",
    "status",
)


@functools.cache
def _queries() -> dict[str, str]:
    return queries("events.sql")


def _suppression_reason(conn: psycopg.Connection, event: SesEvent, key: str, rule: TransientRule) -> str | None:
    """Why this new event suppresses its address, or None. For a transient bounce the caller
    holds the address's lock (lock_address) already."""
    if event.event_type == "Complaint":
        return "complaint"
    if event.is_permanent_bounce:
        return "bounce"
    if not event.is_transient_bounce:
        return None
    row = conn.execute(
        _queries()["transient_bounces"], {"address_key": key, "until": event.occurred_at, "window_s": rule.window_s}
    ).fetchone()
    return "bounce" if row is not None and row[0] >= rule.count else None
