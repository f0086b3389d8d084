"""mailroom/ses_events.py: every event example the SES Developer Guide documents, in both
formats and both wrappings (tests/data/ses_events/README.md names the source of each)."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailroom.ses_events import TAG_ACTION, TAG_TOKEN_REF, NotRecorded, Recipient, SesEvent, Unparseable, parse

DATA = Path(__file__).resolve().parents[1] / "data" / "ses_events"
SNS_ENVELOPE = json.loads((DATA / "sns-envelope.json").read_text())


def _doc(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())


def _sns(record: dict[str, Any] | str) -> str:
    """The body SQS holds when SNS delivers `record` without raw message delivery."""
    message = record if isinstance(record, str) else json.dumps(record)
    return json.dumps({**SNS_ENVELOPE, "Message": message})


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


EXAMPLE_MESSAGE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
PUBLISHING_FEEDBACK = "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000"

# What each documented example says, field by field, as read from the page.
EXPECTED: dict[str, SesEvent] = {
    "publishing-bounce": SesEvent(
        event_id="bounce:" + PUBLISHING_FEEDBACK,
        event_type="Bounce",
        occurred_at=_at("2017-08-05T00:41:02.669Z"),
        message_id=EXAMPLE_MESSAGE_ID,
        recipients=(Recipient("recipient@example.com", "smtp; 550 5.1.1 user unknown", "5.1.1"),),
        bounce_type="Permanent",
        bounce_subtype="General",
    ),
    "publishing-complaint": SesEvent(
        event_id="complaint:" + PUBLISHING_FEEDBACK,
        event_type="Complaint",
        occurred_at=_at("2017-08-05T00:41:02.669Z"),
        message_id=EXAMPLE_MESSAGE_ID,
        recipients=(Recipient("recipient@example.com"),),
        feedback_type="abuse",
    ),
    "publishing-delivery": SesEvent(
        event_id="delivery:" + EXAMPLE_MESSAGE_ID,
        event_type="Delivery",
        occurred_at=_at("2016-10-19T23:21:04.133Z"),
        message_id=EXAMPLE_MESSAGE_ID,
        recipients=(Recipient("recipient@example.com", "250 2.6.0 Message received"),),
    ),
    "publishing-send": SesEvent(
        event_id="send:" + EXAMPLE_MESSAGE_ID,
        event_type="Send",
        occurred_at=_at("2016-10-14T05:02:16.645Z"),
        message_id=EXAMPLE_MESSAGE_ID,
        recipients=(Recipient("recipient@example.com"),),
    ),
    "publishing-reject": SesEvent(
        event_id="reject:" + EXAMPLE_MESSAGE_ID,
        event_type="Reject",
        occurred_at=_at("2016-10-14T17:38:15.211Z"),
        message_id=EXAMPLE_MESSAGE_ID,
        recipients=(Recipient("sender@example.com", "Bad content"),),  # the documented destination
    ),
    "publishing-rendering-failure": SesEvent(
        event_id="renderingfailure:" + EXAMPLE_MESSAGE_ID,
        event_type="RenderingFailure",
        occurred_at=_at("2018-01-22T18:43:06.197Z"),
        message_id=EXAMPLE_MESSAGE_ID,
        recipients=(
            Recipient("recipient@example.com", "Attribute 'attributeName' is not present in the rendering data."),
        ),
    ),
    "publishing-delivery-delay": SesEvent(
        event_id=f"deliverydelay:{EXAMPLE_MESSAGE_ID}:2020-06-16T00:25:40.095Z",
        event_type="DeliveryDelay",
        occurred_at=_at("2020-06-16T00:25:40.095Z"),
        message_id=EXAMPLE_MESSAGE_ID,
        recipients=(Recipient("recipient@example.com", "smtp; 421 4.4.1 Unable to connect to remote host", "4.4.1"),),
    ),
    "notification-bounce-dsn": SesEvent(
        event_id="bounce:00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
        event_type="Bounce",
        occurred_at=_at("2016-01-27T14:59:38.237Z"),
        message_id="00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        recipients=(Recipient("jane@example.com", "smtp; 550 5.1.1 <jane@example.com>... User", "5.1.1"),),
        bounce_type="Permanent",
        bounce_subtype="General",
    ),
    "notification-bounce-no-dsn": SesEvent(
        event_id="bounce:00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000",
        event_type="Bounce",
        occurred_at=_at("2016-01-27T14:59:38.237Z"),
        message_id="00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000",
        recipients=(Recipient("jane@example.com"), Recipient("richard@example.com")),
        bounce_type="Permanent",
        bounce_subtype="General",
    ),
    "notification-complaint-feedback": SesEvent(
        event_id="complaint:000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
        event_type="Complaint",
        occurred_at=_at("2016-01-27T14:59:38.237Z"),
        message_id="000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
        recipients=(Recipient("richard@example.com"),),
        feedback_type="abuse",
    ),
    "notification-complaint-no-feedback": SesEvent(
        event_id="complaint:0000013786031775-fea503bc-7497-49e1-881b-a0379bb037d3-000000",
        event_type="Complaint",
        occurred_at=_at("2016-01-27T14:59:38.237Z"),
        message_id="0000013786031775-163e3910-53eb-4c8e-a04a-f29debf88a84-000000",
        recipients=(Recipient("richard@example.com"),),
    ),
    "notification-delivery": SesEvent(
        event_id="delivery:0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
        event_type="Delivery",
        occurred_at=_at("2016-01-27T14:59:38.237Z"),
        message_id="0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
        recipients=(Recipient("jane@example.com", "250 ok:  Message 64111812 accepted"),),
    ),
}


def test_every_documented_example_is_covered() -> None:
    assert sorted(EXPECTED) == sorted(p.stem for p in DATA.glob("*.json") if p.stem != "sns-envelope")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_documented_example_delivered_raw_reads_as_documented(name: str) -> None:
    assert parse((DATA / f"{name}.json").read_bytes()) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_documented_example_in_its_sns_envelope_reads_the_same(name: str) -> None:
    event = parse(_sns(_doc(name)))
    assert event.wrapping == "sns"
    assert event == dataclasses.replace(EXPECTED[name], wrapping="sns")


def test_a_bounce_has_one_event_id_in_both_formats_so_it_is_recorded_once() -> None:
    publishing = _doc("notification-bounce-dsn")
    publishing["eventType"] = publishing.pop("notificationType")
    assert parse(json.dumps(publishing)).event_id == parse(json.dumps(_doc("notification-bounce-dsn"))).event_id


def test_a_bounce_and_a_complaint_with_the_same_feedback_id_are_two_events() -> None:
    # The documented Bounce and Complaint records share one feedbackId.
    assert (
        parse(json.dumps(_doc("publishing-bounce"))).event_id
        != parse(json.dumps(_doc("publishing-complaint"))).event_id
    )


def test_mailroom_s_tags_give_the_token_ref_and_action() -> None:
    record = _doc("publishing-bounce")
    record["mail"]["tags"] |= {TAG_TOKEN_REF: ["3f2a9c0d41b7e655"], TAG_ACTION: ["password_recovery"]}
    event = parse(_sns(record))
    assert (event.token_ref, event.action) == ("3f2a9c0d41b7e655", "password_recovery")
    assert event.is_permanent_bounce and not event.is_transient_bounce and event.delivery_status == "bounced"


def test_a_token_ref_tag_that_is_not_16_hex_digits_is_not_taken() -> None:
    record = _doc("publishing-delivery")
    record["mail"]["tags"][TAG_TOKEN_REF] = ["'; DROP TABLE tokens; --"]
    assert parse(json.dumps(record)).token_ref is None


def test_a_transient_bounce_says_so() -> None:
    record = _doc("publishing-bounce")
    record["bounce"] |= {"bounceType": "Transient", "bounceSubType": "MailboxFull"}
    event = parse(json.dumps(record))
    assert event.is_transient_bounce and not event.is_permanent_bounce and event.bounce_subtype == "MailboxFull"


@pytest.mark.parametrize("kind", ["Open", "Click", "Subscription"])
def test_event_types_mailroom_does_not_record_are_not_recorded(kind: str) -> None:
    record = _doc("publishing-send")
    record["eventType"] = kind
    with pytest.raises(NotRecorded, match=kind):
        parse(_sns(record))


def test_an_sns_subscription_confirmation_is_not_recorded() -> None:
    with pytest.raises(NotRecorded, match="SubscriptionConfirmation"):
        parse(json.dumps({**SNS_ENVELOPE, "Type": "SubscriptionConfirmation"}))


def _broken(name: str, change: Any) -> str:
    record = copy.deepcopy(_doc(name))
    change(record)
    return json.dumps(record)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"hello": "world"}', "neither eventType nor notificationType"),
        (_sns("Hello world!"), "Message is not JSON"),
        (json.dumps({**SNS_ENVELOPE, "Message": None}), "without a Message string"),
        (_broken("publishing-send", lambda r: r.update(eventType="Teleport")), "unknown SES event type"),
        (_broken("publishing-bounce", lambda r: r["bounce"].pop("feedbackId")), "bounce.feedbackId"),
        (_broken("publishing-bounce", lambda r: r["bounce"].update(bouncedRecipients=[{}])), "emailAddress"),
        (_broken("publishing-delivery", lambda r: r["delivery"].update(recipients=[])), "delivery.recipients"),
        (_broken("publishing-send", lambda r: r["mail"].pop("messageId")), "mail.messageId"),
        (_broken("publishing-send", lambda r: r.pop("mail")), "no 'mail' object"),
        (_broken("publishing-complaint", lambda r: r["complaint"].update(timestamp="yesterday")), "ISO 8601"),
        (
            _broken("publishing-complaint", lambda r: r["complaint"].update(timestamp="2017-08-05T00:41:02")),
            "time zone",
        ),
    ],
)
def test_what_is_not_an_ses_event_is_unparseable_with_a_reason(body: str | bytes, reason: str) -> None:
    with pytest.raises(Unparseable, match=reason):
        parse(body)
