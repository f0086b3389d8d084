"""mailroom/recorder.py against a real PostgreSQL: one transaction per event (record) or a
batch in the caller's (record_many), idempotent by event id, the suppression rules. Events are the documented SES examples
(tests/data/ses_events), addressed and tagged for each test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailroom.recorder import TransientRule, record, record_many
from mailroom.ses_events import TAG_ACTION, TAG_TOKEN_REF, SesEvent, parse
from mailroom.signing import secret_ref

DATA = Path(__file__).resolve().parents[1] / "data" / "ses_events"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ses_event(
    kind: str,
    address: str,
    *,
    message_id: str,
    at: datetime = T0,
    token_ref: str | None = None,
    feedback_id: str | None = None,
    bounce_type: str = "Permanent",
    bounce_subtype: str = "General",
    diagnostic: str = "smtp; 550 5.1.1 user unknown",
) -> SesEvent:
    """The documented event-publishing record of `kind`, about `address` (an SQS body, parsed)."""
    name = {"Bounce": "bounce", "Complaint": "complaint", "Delivery": "delivery", "Send": "send"}[kind]
    record: dict[str, Any] = json.loads((DATA / f"publishing-{name}.json").read_text())
    mail = record["mail"]
    mail["messageId"], mail["destination"], mail["timestamp"] = message_id, [address], _iso(at - timedelta(seconds=5))
    if token_ref is not None:
        mail["tags"] |= {TAG_TOKEN_REF: [token_ref], TAG_ACTION: ["password_recovery"]}
    if kind == "Bounce":
        record["bounce"] |= {
            "bouncedRecipients": [{"emailAddress": address, "status": "5.1.1", "diagnosticCode": diagnostic}],
            "bounceType": bounce_type,
            "bounceSubType": bounce_subtype,
            "timestamp": _iso(at),
            "feedbackId": feedback_id or f"fb-{message_id}",
        }
    elif kind == "Complaint":
        record["complaint"] |= {
            "complainedRecipients": [{"emailAddress": address}],
            "timestamp": _iso(at),
            "feedbackId": feedback_id or f"fb-{message_id}",
        }
    elif kind == "Delivery":
        record["delivery"] |= {"recipients": [address], "timestamp": _iso(at)}
    return parse(json.dumps(record))


def _recovery_tokens(db: psycopg.Connection, count: int) -> list[tuple[str, str]]:
    """`count` active accounts, each with a password-recovery token: (email, token_ref)."""
    db.execute(
        "INSERT INTO accounts (email, login, status) "
        "SELECT 'user' || i || '@example.com', 'user' || i, 'active' FROM generate_series(1, %s) i",
        (count,),
    )
    db.execute("INSERT INTO tokens (account, action) SELECT id, 'password_recovery' FROM accounts")
    rows = db.execute(
        "SELECT a.email, t.secret FROM tokens t JOIN accounts a ON a.id = t.account ORDER BY a.id"
    ).fetchall()
    return [(email, secret_ref(bytes(secret))) for email, secret in rows]


def _suppressed(db: psycopg.Connection) -> list[tuple[str, str]]:
    return db.execute("SELECT address, reason FROM suppressions ORDER BY address").fetchall()


def _snapshot(db: psycopg.Connection) -> list[Any]:
    return [
        db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("delivery_events", "token_deliveries", "suppressions")
    ]


def test_a_hard_bounce_for_one_of_100_recipients_suppresses_it_and_marks_only_its_token(
    db: psycopg.Connection,
) -> None:
    tokens = _recovery_tokens(db, 100)
    for i, (email, ref) in enumerate(tokens):
        record(db, ses_event("Send", email, message_id=f"m{i}", token_ref=ref, at=T0))
        record(db, ses_event("Delivery", email, message_id=f"m{i}", token_ref=ref, at=T0 + timedelta(seconds=3)))
    bounced_email, bounced_ref = tokens[41]
    done = record(
        db,
        ses_event(
            "Bounce",
            bounced_email,
            message_id="m41",
            token_ref=bounced_ref,
            at=T0 + timedelta(minutes=1),
            diagnostic="smtp; 550 5.1.1 <user42@example.com>: Recipient address rejected: User unknown",
        ),
    )
    assert done.new == 1 and done.suppressed == [bounced_email]
    assert _suppressed(db) == [(bounced_email, "bounce")]
    statuses = dict(db.execute("SELECT token_ref, status FROM token_deliveries").fetchall())
    assert statuses.pop(bounced_ref) == "bounced"
    assert len(statuses) == 99 and set(statuses.values()) == {"delivered"}
    view = db.execute(
        "SELECT status, diagnostic, suppressed_reason FROM delivery_status WHERE token_ref = %s", (bounced_ref,)
    ).fetchall()
    assert view == [
        ("bounced", "smtp; 550 5.1.1 <user42@example.com>: Recipient address rejected: User unknown", "bounce")
    ]
    assert db.execute("SELECT count(*) FROM delivery_status WHERE suppressed_reason IS NOT NULL").fetchone() == (1,)


def test_a_complaint_suppresses_with_its_feedback_type(db: psycopg.Connection) -> None:
    [(email, ref)] = _recovery_tokens(db, 1)
    record(db, ses_event("Complaint", email, message_id="m1", token_ref=ref))
    assert db.execute("SELECT reason, feedback_type FROM suppressions").fetchall() == [("complaint", "abuse")]
    assert db.execute("SELECT status FROM token_deliveries").fetchall() == [("complained",)]


def _transient(address: str, n: int, at: datetime) -> SesEvent:
    return ses_event(
        "Bounce",
        address,
        message_id=f"t{n}",
        at=at,
        bounce_type="Transient",
        bounce_subtype="MailboxFull",
        diagnostic="smtp; 452 4.2.2 Mailbox full",
    )


def test_three_transient_bounces_within_the_window_suppress_and_two_do_not(db: psycopg.Connection) -> None:
    address = "full@example.com"
    record(db, _transient(address, 1, T0))
    record(db, _transient(address, 2, T0 + timedelta(days=3)))
    assert _suppressed(db) == []
    done = record(db, _transient(address, 3, T0 + timedelta(days=6)))
    assert done.suppressed == [address]
    assert db.execute("SELECT reason, bounce_type, bounce_subtype, diagnostic FROM suppressions").fetchall() == [
        ("bounce", "Transient", "MailboxFull", "smtp; 452 4.2.2 Mailbox full")
    ]


def test_transient_bounces_further_apart_than_the_window_do_not_suppress(db: psycopg.Connection) -> None:
    address = "sometimes@example.com"
    for n, days in enumerate((0, 4, 8, 12)):  # never three within any 7 days
        record(db, _transient(address, n, T0 + timedelta(days=days)))
    assert _suppressed(db) == []


def test_the_transient_rule_is_configurable(db: psycopg.Connection) -> None:
    rule = TransientRule(count=2, window_s=3600)
    record(db, _transient("a@example.com", 1, T0), rule)
    record(db, _transient("a@example.com", 2, T0 + timedelta(hours=2)), rule)
    assert _suppressed(db) == []
    record(db, _transient("a@example.com", 3, T0 + timedelta(hours=2, minutes=30)), rule)
    assert _suppressed(db) == [("a@example.com", "bounce")]


def test_transient_bounces_of_spellings_of_one_mailbox_count_together(db: psycopg.Connection) -> None:
    record(db, _transient("Ann@Example.com", 1, T0))
    record(db, _transient("Ann@EXAMPLE.COM", 2, T0 + timedelta(hours=1)))
    record(db, _transient("Ann@example.com", 3, T0 + timedelta(hours=2)))
    assert _suppressed(db) == [("Ann@example.com", "bounce")]  # spelled as in the bounce that suppressed it


def test_an_undetermined_bounce_is_recorded_and_suppresses_nothing(db: psycopg.Connection) -> None:
    done = record(
        db,
        ses_event(
            "Bounce", "who@example.com", message_id="u1", bounce_type="Undetermined", bounce_subtype="Undetermined"
        ),
    )
    assert done.new == 1 and _suppressed(db) == []


def test_a_redelivered_event_changes_nothing_and_is_not_counted_twice(db: psycopg.Connection) -> None:
    [(email, _)] = _recovery_tokens(db, 1)
    record(db, _transient(email, 1, T0))
    second = _transient(email, 2, T0 + timedelta(hours=1))
    record(db, second)
    before = _snapshot(db)
    again = record(db, second)  # SQS delivered the same message twice
    assert (again.new, again.duplicates, again.suppressed) == (0, 1, [])
    assert _snapshot(db) == before and _suppressed(db) == []
    # The same bounce through the other format (an identity notification) is the same event too.
    assert (
        record(db, ses_event("Bounce", email, message_id="t2", feedback_id=second.event_id[len("bounce:") :])).new == 0
    )


def test_a_notification_for_several_recipients_records_each(db: psycopg.Connection) -> None:
    event = parse((DATA / "notification-bounce-no-dsn.json").read_bytes())
    done = record(db, event)
    assert done.new == 2
    assert _suppressed(db) == [("jane@example.com", "bounce"), ("richard@example.com", "bounce")]


def test_a_unicode_domain_is_suppressed_for_its_punycode_spelling_too(db: psycopg.Connection) -> None:
    record(db, ses_event("Bounce", "zoë@bücher.de", message_id="z1"))
    assert db.execute("SELECT mailroom_is_suppressed('zoë@xn--bcher-kva.de')").fetchone() == (True,)


def test_an_event_is_recorded_whole_or_not_at_all(db: psycopg.Connection) -> None:
    [(email, ref)] = _recovery_tokens(db, 1)
    # The suppression (the last write of the event) fails: a trigger stands in for a fault.
    db.execute(
        "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;"
        "CREATE TRIGGER fail BEFORE INSERT ON suppressions FOR EACH ROW EXECUTE FUNCTION fail()"
    )
    bounce = ses_event("Bounce", email, message_id="m1", token_ref=ref)
    with pytest.raises(psycopg.errors.RaiseException, match="disk full"):
        record(db, bounce)
    assert _snapshot(db) == [[], [], []]  # neither the event nor the token's status stayed
    db.execute("DROP TRIGGER fail ON suppressions")
    assert record(db, bounce).suppressed == [email]  # the redelivery records it all
    assert db.execute("SELECT status FROM token_deliveries").fetchall() == [("bounced",)]


def test_a_recipient_that_is_no_address_is_skipped_and_the_others_recorded(db: psycopg.Connection) -> None:
    event = parse((DATA / "notification-bounce-no-dsn.json").read_bytes())
    broken = SesEvent(
        **{**event.__dict__, "recipients": (event.recipients[0].__class__("no-at-sign"), *event.recipients)}
    )
    done = record(db, broken)
    assert done.not_addresses == ["no-at-sign"] and done.new == 2


def test_events_of_the_senders_probe_to_the_mailbox_simulator_are_not_recorded(db: psycopg.Connection) -> None:
    # the bisection probe (sender/dispatch.py) is tagged with its action only; SES counts mail to
    # its simulator in no rate, so its Send and Delivery must not count as sent either
    for kind in ("Send", "Delivery"):
        done = record(db, ses_event(kind, "success@simulator.amazonses.com", message_id="probe"))
        assert (done.new, done.simulated) == (0, 1)
    assert db.execute("SELECT count(*) FROM delivery_events").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM token_deliveries").fetchone() == (0,)


def test_a_batch_records_each_event_once_even_when_it_holds_one_twice(db: psycopg.Connection) -> None:
    [(first, first_ref), (second, second_ref)] = _recovery_tokens(db, 2)
    delivered = ses_event("Delivery", first, message_id="m1", token_ref=first_ref)
    bounced = ses_event("Bounce", second, message_id="m2", token_ref=second_ref)
    with db.transaction():
        done = record_many(db, [delivered, bounced, delivered])  # SQS handed out the first message twice
    assert [(d.new, d.duplicates, d.statuses) for d in done] == [(1, 0, 1), (1, 0, 1), (0, 1, 0)]
    assert done[1].suppressed == [second] and _suppressed(db) == [(second, "bounce")]
    assert dict(db.execute("SELECT token_ref, status FROM token_deliveries").fetchall()) == {
        first_ref: "delivered",
        second_ref: "bounced",
    }
    before = _snapshot(db)
    with db.transaction():
        again = record_many(db, [bounced, delivered])  # the whole batch redelivered
    assert [(d.new, d.duplicates, d.suppressed) for d in again] == [(0, 1, []), (0, 1, [])]
    assert _snapshot(db) == before


def test_a_batch_sets_a_tokens_status_as_its_events_would_one_by_one(db: psycopg.Connection) -> None:
    [(email, ref)] = _recovery_tokens(db, 1)
    send = ses_event("Send", email, message_id="m1", token_ref=ref, at=T0)
    delivery = ses_event("Delivery", email, message_id="m1", token_ref=ref, at=T0 + timedelta(seconds=2))
    with db.transaction():
        done = record_many(db, [delivery, send])  # SQS keeps no order: the Send arrives last
    assert [d.statuses for d in done] == [1, 0]  # the later stage stays
    assert db.execute("SELECT status, status_at FROM token_deliveries").fetchall() == [
        ("delivered", T0 + timedelta(seconds=2))
    ]


def test_three_transient_bounces_in_one_batch_suppress_whatever_their_order_and_two_do_not(
    db: psycopg.Connection,
) -> None:
    with db.transaction():
        record_many(db, [_transient("two@example.com", n, T0 + timedelta(days=n)) for n in (2, 1)])
    assert _suppressed(db) == []
    latest_first = [_transient("three@example.com", n, T0 + timedelta(days=n)) for n in (3, 1, 2)]
    with db.transaction():
        done = record_many(db, latest_first)
    assert _suppressed(db) == [("three@example.com", "bounce")]
    assert done[0].suppressed == ["three@example.com"]  # the third of the window, counted with the batch's others


def test_a_batch_that_fails_leaves_nothing_of_any_of_its_events(db: psycopg.Connection) -> None:
    tokens = _recovery_tokens(db, 3)
    db.execute(
        "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;"
        "CREATE TRIGGER fail BEFORE INSERT ON suppressions FOR EACH ROW EXECUTE FUNCTION fail()"
    )
    events = [ses_event("Delivery", email, message_id=f"m{i}", token_ref=ref) for i, (email, ref) in enumerate(tokens)]
    events.append(ses_event("Complaint", tokens[0][0], message_id="m0", token_ref=tokens[0][1]))
    with pytest.raises(psycopg.errors.RaiseException, match="disk full"), db.transaction():
        record_many(db, events)
    assert _snapshot(db) == [[], [], []]
