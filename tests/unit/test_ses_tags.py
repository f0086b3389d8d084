"""The SES sender tags each destination with its action and token_ref (sender/ses.py), which
SES returns in every event it publishes: what ties a bounce to its token."""

from __future__ import annotations

import urllib.parse
from typing import Any

from conftest import SES_SOURCE

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.signing import sign, token_ref
from mailroom.templates import default_template_data, template_data
from mailroom.wire import Record
from sender.provider import BulkSend, Destination
from sender.ses import SesProvider, message_tags

KEY = bytes.fromhex("5f" * 32)


def _record(i: int) -> Record:
    secret = bytes([i]) * 32
    code = f"{i:05d}"
    return Record(PASSWORD_RECOVERY, f"u{i}@example.com", f"u{i}", sign(KEY, PASSWORD_RECOVERY, secret, code), code)


def test_each_destination_carries_its_action_and_token_ref_and_no_secret(moto_ses: Any) -> None:
    sent: list[dict[str, list[str]]] = []

    def capture(request: Any = None, **_: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        sent.append(urllib.parse.parse_qs(body))

    moto_ses.meta.events.register("before-send.ses.SendBulkTemplatedEmail", capture)
    records = [_record(i) for i in (1, 2)]
    send = BulkSend(
        PASSWORD_RECOVERY,
        "passwordrecoveryv1",
        SES_SOURCE,
        "",
        default_template_data("https://app.example.com"),
        [Destination(r.email, template_data(r), token_ref(r.secret)) for r in records],
    )
    results = SesProvider(moto_ses).send_bulk(send)
    assert [r.status for r in results] == ["Success", "Success"]  # SES (moto) takes the tags
    [form] = sent
    for n, record in enumerate(records, start=1):
        tags = {
            form[f"Destinations.member.{n}.ReplacementTags.member.{m}.Name"][0]: form[
                f"Destinations.member.{n}.ReplacementTags.member.{m}.Value"
            ][0]
            for m in (1, 2)
        }
        assert tags == {"mailroom_action": "password_recovery", "mailroom_token_ref": token_ref(record.secret)}
        assert record.secret not in str(tags) and record.code not in str(tags)


def test_a_destination_without_a_token_ref_is_tagged_with_its_action_only() -> None:
    assert message_tags(ACTIVATION, None) == [{"Name": "mailroom_action", "Value": "activation"}]


def test_the_tags_take_the_destination_s_token_ref_as_given_without_reading_its_template_data(moto_ses: Any) -> None:
    # the sender computes token_ref once, where it builds the Destination (sender/dispatch.py);
    # the SES provider does not parse the template data again for it
    sent: list[dict[str, list[str]]] = []

    def capture(request: Any = None, **_: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        sent.append(urllib.parse.parse_qs(body))

    moto_ses.meta.events.register("before-send.ses.SendBulkTemplatedEmail", capture)
    send = BulkSend(
        ACTIVATION,
        "activationv1",
        SES_SOURCE,
        "",
        "{}",
        [Destination("a@example.com", "not even JSON", "0123456789abcdef")],
    )
    SesProvider(moto_ses).send_bulk(send)
    assert sent[0]["Destinations.member.1.ReplacementTags.member.2.Value"] == ["0123456789abcdef"]
