"""SES event notifications, read into one typed event whatever their format and wrapping.

SES reports what happened to a message in two formats: configuration-set *event publishing*
(`eventType`: Send, Delivery, Bounce, Complaint, Reject, DeliveryDelay, Rendering Failure,
and Open, Click, Subscription, which mailroom does not record) and the older identity
*feedback notifications* (`notificationType`: Bounce, Complaint, Delivery). Either reaches
an SQS queue wrapped in an SNS envelope (`"Type": "Notification"`, the record a JSON string
in `Message`) or, with raw message delivery, as the record itself.

`parse` turns a message body into an `SesEvent`, raises `NotRecorded` for a well-formed
message mailroom has no use for (delete it), and `Unparseable` for anything else (leave it
to the queue's redrive policy). Standard library only: the events program and the tests use
it, and an app may too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The message tags the SES sender sets on each destination (ReplacementTags), which SES
# carries back in `mail.tags` of every event-publishing record. Nothing secret goes in a tag:
# the token_ref names a token without making its link usable (mailroom.signing.secret_ref).
TAG_ACTION = "mailroom_action"
TAG_TOKEN_REF = "mailroom_token_ref"

# The event types mailroom records, by SES's name (the documented Rendering Failure record
# spells its type with a space; the API's event type is RenderingFailure).
RECORDED = ("Send", "Delivery", "Bounce", "Complaint", "Reject", "DeliveryDelay", "RenderingFailure")
_TYPE_NAMES = {name: name for name in RECORDED} | {"Rendering Failure": "RenderingFailure"}
NOT_RECORDED_TYPES = ("Open", "Click", "Subscription")

# What each event type says about the token's email (token_deliveries.status).
DELIVERY_STATUS = {
    "Send": "sent",
    "Delivery": "delivered",
    "Bounce": "bounced",
    "Complaint": "complained",
    "Reject": "rejected",
    "DeliveryDelay": "delayed",
    "RenderingFailure": "rejected",
}

_TOKEN_REF = re.compile(r"[0-9a-f]{16}")


class Unparseable(ValueError):
    """Not an SES event mailroom can read; the message says what is wrong."""


class NotRecorded(Exception):
    """A well-formed message that mailroom does not record (Open, Click, an SNS subscription
    confirmation); the message says what it is."""


@dataclass(frozen=True)
class Recipient:
    address: str
    diagnostic: str | None = None  # the remote server's reply, SES's reason, or the delay's
    status: str | None = None  # the enhanced status code (RFC 3463), when SES gives one


@dataclass(frozen=True)
class SesEvent:
    """One SES event: what happened to one message, for each recipient it concerns."""

    event_id: str  # stable across redeliveries and across both formats (see _event_id)
    event_type: str  # one of RECORDED
    occurred_at: datetime
    message_id: str
    recipients: tuple[Recipient, ...]
    token_ref: str | None = None  # from the tags; None for mail mailroom did not tag
    action: str | None = None
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    feedback_type: str | None = None
    wrapping: str = "raw"  # raw or sns

    @property
    def delivery_status(self) -> str:
        return DELIVERY_STATUS[self.event_type]

    @property
    def is_permanent_bounce(self) -> bool:
        return self.event_type == "Bounce" and self.bounce_type == "Permanent"

    @property
    def is_transient_bounce(self) -> bool:
        return self.event_type == "Bounce" and self.bounce_type == "Transient"


def parse(body: str | bytes) -> SesEvent:
    """The event in an SQS message body; Unparseable or NotRecorded otherwise."""
    record = _json_object(body, "the message body")
    wrapping = "raw"
    if "Type" in record and "eventType" not in record and "notificationType" not in record:
        kind = record.get("Type")
        if kind != "Notification":
            raise NotRecorded(f"an SNS {kind!r} message, not a notification")
        message = record.get("Message")
        if not isinstance(message, str):
            raise Unparseable("an SNS notification without a Message string")
        record = _json_object(message, "the SNS notification's Message")
        wrapping = "sns"
    return _event(record, wrapping)


def _json_object(text: str | bytes, what: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unparseable(f"{what} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Unparseable(f"{what} is JSON but not an object")
    return value


def _event(record: Mapping[str, Any], wrapping: str) -> SesEvent:
    raw_type = record.get("eventType", record.get("notificationType"))
    if not isinstance(raw_type, str):
        raise Unparseable("neither eventType nor notificationType: not an SES event")
    if raw_type in NOT_RECORDED_TYPES:
        raise NotRecorded(f"an SES {raw_type} event")
    event_type = _TYPE_NAMES.get(raw_type)
    if event_type is None:
        raise Unparseable(f"unknown SES event type {raw_type!r}")
    mail = _object(record, "mail")
    message_id = _text(mail, "messageId", "mail")
    raw_tags = mail.get("tags")
    tags: Mapping[str, Any] = raw_tags if isinstance(raw_tags, dict) else {}
    token_ref = _tag(tags, TAG_TOKEN_REF)
    common: dict[str, Any] = {
        "event_type": event_type,
        "message_id": message_id,
        "token_ref": token_ref if token_ref is not None and _TOKEN_REF.fullmatch(token_ref) else None,
        "action": _tag(tags, TAG_ACTION),
        "wrapping": wrapping,
    }
    if event_type == "Bounce":
        bounce = _object(record, "bounce")
        return SesEvent(
            event_id="bounce:" + _text(bounce, "feedbackId", "bounce"),
            occurred_at=_time(bounce, "bounce"),
            recipients=_recipients(bounce, "bouncedRecipients", "bounce"),
            bounce_type=_text(bounce, "bounceType", "bounce"),
            bounce_subtype=_optional_text(bounce, "bounceSubType"),
            **common,
        )
    if event_type == "Complaint":
        complaint = _object(record, "complaint")
        return SesEvent(
            event_id="complaint:" + _text(complaint, "feedbackId", "complaint"),
            occurred_at=_time(complaint, "complaint"),
            recipients=_recipients(complaint, "complainedRecipients", "complaint"),
            feedback_type=_optional_text(complaint, "complaintFeedbackType"),
            **common,
        )
    if event_type == "Delivery":
        delivery = _object(record, "delivery")
        response = _optional_text(delivery, "smtpResponse")
        addresses = _addresses(delivery, "recipients", "delivery")
        return SesEvent(
            event_id="delivery:" + message_id,
            occurred_at=_time(delivery, "delivery"),
            recipients=tuple(Recipient(a, response) for a in addresses),
            **common,
        )
    if event_type == "DeliveryDelay":
        delay = _object(record, "deliveryDelay")
        when = _time(delay, "deliveryDelay")
        return SesEvent(
            event_id=f"deliverydelay:{message_id}:{_text(delay, 'timestamp', 'deliveryDelay')}",
            occurred_at=when,
            recipients=_recipients(delay, "delayedRecipients", "deliveryDelay", _optional_text(delay, "delayType")),
            **common,
        )
    # Send, Reject, RenderingFailure: about the message as a whole, so its destinations.
    reason = None
    if event_type == "Reject":
        reason = _optional_text(_object(record, "reject"), "reason")
    elif event_type == "RenderingFailure":
        reason = _optional_text(_object(record, "failure"), "errorMessage")
    return SesEvent(
        event_id=f"{event_type.lower()}:{message_id}",
        occurred_at=_time(mail, "mail"),
        recipients=tuple(Recipient(a, reason) for a in _addresses(mail, "destination", "mail")),
        **common,
    )


def _object(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = record.get(key)
    if not isinstance(value, dict):
        raise Unparseable(f"no {key!r} object")
    return value


def _text(record: Mapping[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise Unparseable(f"no {where}.{key}")
    return value


def _optional_text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) and value else None


def _time(record: Mapping[str, Any], where: str) -> datetime:
    text = _text(record, "timestamp", where)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise Unparseable(f"{where}.timestamp {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise Unparseable(f"{where}.timestamp {text!r} has no time zone")
    return when


def _addresses(record: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = record.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
        raise Unparseable(f"{where}.{key} is not a list of addresses")
    return value


def _recipients(record: Mapping[str, Any], key: str, where: str, fallback: str | None = None) -> tuple[Recipient, ...]:
    value = record.get(key)
    if not isinstance(value, list) or not value:
        raise Unparseable(f"{where}.{key} is not a list of recipients")
    recipients = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("emailAddress"), str) or not item["emailAddress"]:
            raise Unparseable(f"{where}.{key} has an entry without an emailAddress")
        recipients.append(
            Recipient(
                item["emailAddress"],
                _optional_text(item, "diagnosticCode") or fallback,
                _optional_text(item, "status"),
            )
        )
    return tuple(recipients)


def _tag(tags: Mapping[str, Any], name: str) -> str | None:
    """A tag's value: SES gives each tag as a list of values; mailroom sets one."""
    values = tags.get(name)
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return None
