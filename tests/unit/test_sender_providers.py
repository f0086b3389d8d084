"""One behaviour suite that both providers (SES on moto, and debug) must pass."""

from __future__ import annotations

import io
import json
import os

import pytest
from botocore.stub import Stubber
from conftest import SES_SOURCE

from mailroom import templates
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, Action
from mailroom.aws import make_client
from mailroom.templates import default_template_data
from sender.debug import DebugProvider
from sender.provider import BulkSend, CallFailed, Destination
from sender.ses import SesProvider

SOURCE = SES_SOURCE


def bulk(n: int, action: Action = ACTIVATION) -> BulkSend:
    dests = [
        Destination(
            f"u{i}@example.com",
            json.dumps({"login": f'u"{i}\\{{{{', "login_html": "x", "secret": "s" * 86, "code": "12345"}),
        )
        for i in range(n)
    ]
    return BulkSend(
        action,
        "activationv1" if action is ACTIVATION else "passwordrecoveryv1",
        SOURCE,
        "",
        default_template_data("https://app.example.com"),
        dests,
    )


@pytest.fixture(params=["ses", "debug"])
def provider(request, monkeypatch):
    if request.param == "debug":
        yield DebugProvider(io.StringIO(), templates.load_all())
        return
    yield SesProvider(request.getfixturevalue("moto_ses"))


@pytest.mark.parametrize("n", [1, 50])
def test_every_destination_gets_a_result_in_order(provider, n):
    results = provider.send_bulk(bulk(n))
    assert len(results) == n and all(r.status == "Success" for r in results)


def test_both_actions_are_accepted(provider):
    assert [r.status for r in provider.send_bulk(bulk(2, PASSWORD_RECOVERY))] == ["Success"] * 2


def test_debug_output_shows_the_call_each_destination_and_the_rendered_email():
    out = io.StringIO()
    send = BulkSend(
        PASSWORD_RECOVERY,
        "passwordrecoveryv1",
        SOURCE,
        "myset",
        default_template_data("https://app.example.com"),
        [
            Destination(
                "ada@example.com",
                json.dumps({"login": "ada", "login_html": "ada", "secret": "S" * 86, "code": "54321"}),
            ),
            Destination(
                "bob@example.com",
                json.dumps({"login": "bob", "login_html": "bob", "secret": "T" * 86, "code": "11111"}),
            ),
        ],
    )
    DebugProvider(out, templates.load_all()).send_bulk(send)
    text = out.getvalue()
    for expected in (
        "template:          passwordrecoveryv1",
        "configuration set: myset",
        f"source:            {SOURCE}",
        '"app_url":"https://app.example.com"',
        "[1/2] to ada@example.com",
        "[2/2] to bob@example.com",
        "subject: Reset your password",
        "https://app.example.com/recover?token=" + "S" * 86,
        "enter this code when asked: 11111",
    ):
        assert expected in text
    assert len([line for line in text.splitlines() if line.lstrip().startswith("data:")]) == 2


def test_ses_api_errors_and_missing_answers_become_call_failures(fake_aws):
    client = make_client()
    with Stubber(client) as stub:
        stub.add_client_error("send_bulk_templated_email", "Throttling", "Daily message quota exceeded.", 400)
        stub.add_response("send_bulk_templated_email", {"Status": [{"Status": "Success", "MessageId": "1"}]})
        provider = SesProvider(client)
        with pytest.raises(CallFailed) as caught:
            provider.send_bulk(bulk(1))
        assert (caught.value.code, caught.value.http_status) == ("Throttling", 400)
        with pytest.raises(CallFailed, match="1 statuses for 2 destinations"):
            provider.send_bulk(bulk(2))


def test_without_a_region_the_ses_client_is_refused_clearly(monkeypatch, tmp_path):
    from mailroom.settings import ConfigError

    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="AWS_REGION"):
        make_client()
