"""What the sender tells SES and the operator beyond sending: the bisection probe carries no
user's live token, and per-destination operator statuses (HTTP 200 answers, never saved)
get a fix that does not send the operator to a saved response."""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs

import pytest
from botocore.awsrequest import AWSResponse
from test_sender import Raw, error_xml, jsonl, record, run_sender, statuses_xml

from mailroom.actions import PASSWORD_RECOVERY
from mailroom.signing import token_ref
from mailroom.wire import encode_line
from sender.dispatch import PROBE_CODE, PROBE_SECRET
from sender.outputs import Outputs
from sender.retry import EXIT_OPERATOR_FAULT, SES_STATUS_OUTCOMES, Outcome, ses_status_fix
from sender.ses import SesProvider

CONFIG_SET = "transactional"


class Bodies:
    """A before-send hook: keeps every call's form; answers InvalidParameterValue for a call holding
    `bad` (as SES does for one address it cannot take), or each call with the next of `answers`."""

    def __init__(self, client: object, bad: str = "", answers: list[tuple[int, bytes]] | None = None) -> None:
        self.bad = bad
        self.answers = list(answers or [])
        self.forms: list[dict[str, list[str]]] = []
        self.lock = threading.Lock()
        client.meta.events.register_first("before-send.ses.SendBulkTemplatedEmail", self)  # type: ignore[attr-defined]

    def __call__(self, request: object, **_: object):
        body = request.body  # type: ignore[attr-defined]
        form = parse_qs(body if isinstance(body, str) else body.decode())
        with self.lock:
            self.forms.append(form)
            if self.answers:
                status, answer = self.answers.pop(0)
                return AWSResponse(request.url, status, {}, Raw(answer))  # type: ignore[attr-defined]
        if self.bad and any(self.bad in v for values in form.values() for v in values):
            return AWSResponse(request.url, 400, {}, Raw(error_xml("InvalidParameterValue", "Illegal address")))  # type: ignore[attr-defined]
        return None


def destinations(form: dict[str, list[str]]) -> list[tuple[str, dict]]:
    n = 1
    found = []
    while f"Destinations.member.{n}.Destination.ToAddresses.member.1" in form:
        found.append(
            (
                form[f"Destinations.member.{n}.Destination.ToAddresses.member.1"][0],
                json.loads(form[f"Destinations.member.{n}.ReplacementTemplateData"][0]),
            )
        )
        n += 1
    return found


def test_the_bisection_probe_sends_a_dummy_secret_and_code_not_a_users(moto_ses, tmp_path):
    records = [record(i, PASSWORD_RECOVERY) for i in range(1, 5)]
    hook = Bodies(moto_ses, bad=records[2].email)
    run_sender(tmp_path, SesProvider(moto_ses, Outputs(tmp_path)), encode_line(records))
    probes = [destinations(f) for f in hook.forms if destinations(f)[0][0] == SesProvider.probe_address]
    assert len(probes) == 1
    [(_, data)] = probes[0]
    assert data["secret"] == PROBE_SECRET and data["code"] == PROBE_CODE
    assert data["login"] == "mailroom-probe"
    form = json.dumps(next(f for f in hook.forms if destinations(f)[0][0] == SesProvider.probe_address))
    for r in records:
        assert r.secret not in form and r.code not in form
    assert len(PROBE_SECRET) == len(records[0].secret)  # the same shape: the call is the same size
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert [r["recipient"] for r in rejects] == [records[2].email]  # the probe still does its job


def _tags(form: dict[str, list[str]], n: int) -> dict[str, str]:
    tags, m = {}, 1
    while f"Destinations.member.{n}.ReplacementTags.member.{m}.Name" in form:
        name = form[f"Destinations.member.{n}.ReplacementTags.member.{m}.Name"][0]
        tags[name] = form[f"Destinations.member.{n}.ReplacementTags.member.{m}.Value"][0]
        m += 1
    return tags


def test_the_bisection_probe_is_tagged_with_its_action_only_and_users_with_their_token_ref(moto_ses, tmp_path):
    # The probe's simulator events (Send, Delivery) must give no token a status nor count as
    # sent in the bounce rate: its message carries no mailroom_token_ref.
    records = [record(i, PASSWORD_RECOVERY) for i in range(1, 5)]
    hook = Bodies(moto_ses, bad=records[2].email)
    run_sender(tmp_path, SesProvider(moto_ses, Outputs(tmp_path)), encode_line(records))
    [probe] = [f for f in hook.forms if destinations(f)[0][0] == SesProvider.probe_address]
    assert _tags(probe, 1) == {"mailroom_action": "password_recovery"}
    refs = {r.email: token_ref(r.secret) for r in records}
    users = [(to, _tags(f, n)) for f in hook.forms for n, (to, _) in enumerate(destinations(f), 1) if to in refs]
    assert users and all(
        tags == {"mailroom_action": "password_recovery", "mailroom_token_ref": refs[to]} for to, tags in users
    )


PER_DESTINATION_OPERATOR = sorted(s for s, o in SES_STATUS_OUTCOMES.items() if o is Outcome.OPERATOR)
FIX_NAMES = {
    "MailFromDomainNotVerified": "sender address noreply@example.com or its domain is not verified",
    "ConfigurationSetDoesNotExist": f"configuration set {CONFIG_SET!r} does not exist",
    "TemplateDoesNotExist": "mailroom templates push",
    "AccountSuspended": "AWS support",
    "AccountSendingPaused": "sending is disabled for this SES account",
    "ConfigurationSetSendingPaused": f"sending is disabled for configuration set {CONFIG_SET!r}",
    "InvalidSendingPoolName": "dedicated IP pool",
    "SomethingNew": "'SomethingNew', which the sender does not know",
}


def test_every_per_destination_operator_status_has_a_fix_of_its_own():
    assert set(PER_DESTINATION_OPERATOR) | {"SomethingNew"} == set(FIX_NAMES)


@pytest.mark.parametrize("status", [*PER_DESTINATION_OPERATOR, "SomethingNew"])
def test_a_per_destination_operator_status_gets_a_fix_that_does_not_point_to_a_saved_response(
    moto_ses, tmp_path, status
):
    Bodies(moto_ses, answers=[(200, statuses_xml(["Success", status]))])
    provider = SesProvider(moto_ses, Outputs(tmp_path), source="noreply@example.com", config_set=CONFIG_SET)
    records = [record(1), record(2)]
    sender = run_sender(tmp_path, provider, encode_line(records), expect=EXIT_OPERATOR_FAULT, config_set=CONFIG_SET)
    assert sender.fault is not None and sender.fault.code == status
    assert FIX_NAMES[status] in sender.fault.fix
    assert "errors/" not in sender.fault.fix and "saved response" not in sender.fault.fix
    assert not (tmp_path / "errors").exists()  # indeed: an HTTP 200 answer is not saved
    assert ses_status_fix(status, config_set=CONFIG_SET, source="noreply@example.com") == sender.fault.fix.replace(
        provider.region, "?"
    )
