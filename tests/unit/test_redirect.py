"""MAILROOM_REDIRECT_TO (the staging interceptor) in-process: the settings, the allow-list, the
sender's admission against SES emulated by moto, the subject prefix as SES and the local
renderer see it, and a refused redirect address as the operator's fault."""

from __future__ import annotations

import io
import json

import pytest
from conftest import FakeProvider
from test_sender import Calls, config, error_xml, jsonl, record, run_sender, sent, unfinished

from mailroom import settings, templates
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.redirect import SUBJECT_TAG, Redirect, subject_prefix, with_subject_tag, with_subject_tags
from mailroom.templates import default_template_data, template_data
from mailroom.wire import Record, encode_line
from sender.debug import DebugProvider
from sender.dispatch import Sender
from sender.journal import Journal
from sender.metrics import build_registry
from sender.outputs import Outputs
from sender.provider import BulkSend, Destination, DestinationResult
from sender.retry import EXIT_OPERATOR_FAULT, Outcome
from sender.ses import SesProvider

STAGING = "staging-inbox@example.org"


def sender_settings(**env: str) -> settings.SenderSettings:
    return settings.SenderSettings.from_environ(env)


# -- settings -------------------------------------------------------------------------------------


def test_redirect_is_off_by_default_and_takes_one_bare_address():
    assert sender_settings().redirect_to == "" and sender_settings().redirect_except == ()
    s = sender_settings(MAILROOM_REDIRECT_TO=f" {STAGING} ", MAILROOM_REDIRECT_EXCEPT="qa@Example.com, @team.example,")
    assert s.redirect_to == STAGING
    assert s.redirect_except == ("qa@Example.com", "@team.example")


@pytest.mark.parametrize(
    "value",
    [
        "staging",
        "Staging <staging@example.org>",
        "a@example.org,b@example.org",
        "a b@example.org",
        "@example.org",
        "a\x00b@example.org",
    ],
)
def test_a_redirect_address_that_is_not_one_bare_address_is_a_config_error_naming_the_variable(value):
    with pytest.raises(settings.ConfigError) as caught:
        sender_settings(MAILROOM_REDIRECT_TO=value)
    assert caught.value.name == "MAILROOM_REDIRECT_TO" and "one email address" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a@b", "a single label"),
        ("a@-bad-.com", "hyphen"),
        ("dot@example..com", "empty label"),
    ],
)
def test_a_redirect_address_the_address_rule_refuses_is_a_config_error_with_the_rules_reason(value, why):
    with pytest.raises(settings.ConfigError) as caught:
        sender_settings(MAILROOM_REDIRECT_TO=value)
    assert caught.value.name == "MAILROOM_REDIRECT_TO" and "not sendable" in str(caught.value)
    assert why in str(caught.value)


@pytest.mark.parametrize("value", ["example.com", "qa@example.com; @x.org", "@", "qa@@x.org", "@x.org\x7f"])
def test_an_allow_list_entry_that_is_neither_an_address_nor_at_domain_is_a_config_error(value):
    with pytest.raises(settings.ConfigError) as caught:
        sender_settings(MAILROOM_REDIRECT_TO=STAGING, MAILROOM_REDIRECT_EXCEPT=value)
    assert caught.value.name == "MAILROOM_REDIRECT_EXCEPT" and "@domain" in str(caught.value)


def test_an_allow_list_without_a_redirect_address_is_a_config_error():
    with pytest.raises(settings.ConfigError) as caught:
        sender_settings(MAILROOM_REDIRECT_EXCEPT="@example.com")
    assert caught.value.name == "MAILROOM_REDIRECT_EXCEPT" and "MAILROOM_REDIRECT_TO is empty" in str(caught.value)


# -- the allow-list -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email,through",
    [
        ("qa@example.com", True),
        ("qa@EXAMPLE.com", True),  # the domain in any case
        ("QA@example.com", False),  # a local part is compared as written (RFC 5321 2.4)
        ("other@example.com", False),
        ("anyone@team.example", True),
        ("anyone@Team.Example", True),
        ("anyone@sub.team.example", False),  # a domain, not its subdomains
        ("anyone@team.example.evil.org", False),
        ("team.example@evil.org", False),
    ],
)
def test_the_allow_list_lets_through_whole_addresses_and_exact_domains_only(email, through):
    redirect = Redirect.from_settings(STAGING, ("qa@Example.com", "@team.example"))
    assert redirect.lets_through(email) is through


def test_with_no_allow_list_nothing_is_let_through():
    assert not Redirect.from_settings(STAGING, ()).lets_through(STAGING)


# -- the subject prefix ---------------------------------------------------------------------------


def test_the_subject_tag_is_added_once_and_renders_the_original_address_raw():
    t = with_subject_tag(with_subject_tag(templates.load("activation")))
    assert t.subject.startswith(SUBJECT_TAG) and t.subject.count(SUBJECT_TAG) == 1
    r = Record(ACTIVATION, "o'brien+x=y@example.com", "ob", record(1).secret, "00000")
    data = {
        **json.loads(default_template_data("https://a.example")),
        **json.loads(template_data(r, subject_prefix(r.email))),
    }
    assert t.render(data)["subject"] == "[to: o'brien+x=y@example.com] Activate your account"
    plain = {**json.loads(default_template_data("https://a.example")), **json.loads(template_data(r))}
    assert t.render(plain)["subject"] == "Activate your account"  # not redirected: the variable is empty


def test_the_debug_output_shows_the_redirect_address_and_the_prefixed_subject():
    out = io.StringIO()
    r = record(5)
    send = BulkSend(
        ACTIVATION,
        "activationv1",
        "noreply@example.com",
        "",
        default_template_data("https://a.example"),
        [Destination(STAGING, template_data(r, subject_prefix(r.email)))],
    )
    DebugProvider(out, with_subject_tags(templates.load_all())).send_bulk(send)
    assert f"to {STAGING}" in out.getvalue()
    assert f"subject: [to: {r.email}] Activate your account" in out.getvalue()


# -- the sender, against SES emulated by moto ----------------------------------------------------


def test_every_email_goes_to_the_redirect_address_with_its_original_in_the_data_except_the_allowed(moto_ses, tmp_path):
    records = [record(i, ACTIVATION if i % 2 else PASSWORD_RECOVERY) for i in range(20)]
    allowed = Record(ACTIVATION, "qa@team.example", "qa", record(99).secret, "00000")
    redirect = Redirect.from_settings(STAGING, ("@team.example",))
    sender = run_sender(
        tmp_path, SesProvider(moto_ses, Outputs(tmp_path)), encode_line([*records, allowed]), redirect=redirect
    )

    got = [
        (d["Destination"]["ToAddresses"], json.loads(d["ReplacementTemplateData"]))
        for m in sent(moto_ses)
        for d in m.destinations
    ]
    assert len(got) == 21 and sender.counts.delivered == 21
    redirected = [data for to, data in got if to == [STAGING]]
    assert sorted(data["redirect_prefix"] for data in redirected) == sorted(f"[to: {r.email}] " for r in records)
    assert sorted(data["secret"] for data in redirected) == sorted(r.secret for r in records)
    assert [(to, "redirect_prefix" in data) for to, data in got if to != [STAGING]] == [(["qa@team.example"], False)]
    assert all(json.loads(m.template_data)["redirect_prefix"] == "" for m in sent(moto_ses))
    rows = {d["recipient"]: d for d in jsonl(tmp_path / "deliveries.jsonl")}
    assert all(rows[r.email]["sent_to"] == STAGING and rows[r.email]["redirected"] is True for r in records)
    assert "sent_to" not in rows["qa@team.example"] and "redirected" not in rows["qa@team.example"]


def test_redirecting_changes_neither_which_records_are_sent_nor_which_are_rejected(moto_ses, tmp_path):
    records = [record(i) for i in range(3)]
    unsendable = Record(ACTIVATION, "zoë@example.com", "zoë", record(7).secret, "00000")
    redirect = Redirect.from_settings(STAGING, ())
    line = encode_line([*records, unsendable])
    sender = run_sender(tmp_path, SesProvider(moto_ses, Outputs(tmp_path)), line + line, redirect=redirect)
    assert sender.counts.delivered == 3 and sender.counts.duplicates == 3  # the second copy: already delivered
    assert [r["recipient"] for r in jsonl(tmp_path / "rejects.jsonl")] == ["zoë@example.com"] * 2
    assert sum(len(m.destinations) for m in sent(moto_ses)) == 3


def test_ses_refusing_the_redirect_address_is_an_operator_fault_that_rejects_no_recipient(moto_ses, tmp_path):
    # SES's sandbox answer for an unverified recipient, naming the redirect address
    message = "Email address is not verified. The following identities failed the check in region US-EAST-1: " + STAGING
    Calls(moto_ses, [(400, error_xml("MessageRejected", message))])
    records = [record(i) for i in range(5)]
    sender = run_sender(
        tmp_path,
        SesProvider(moto_ses, Outputs(tmp_path)),
        encode_line(records),
        redirect=Redirect.from_settings(STAGING, ()),
        expect=EXIT_OPERATOR_FAULT,
    )
    assert sender.fault is not None and "MAILROOM_REDIRECT_TO" in sender.fault.fix
    assert jsonl(tmp_path / "rejects.jsonl") == [] and unfinished(tmp_path) == 5


def test_a_per_destination_refusal_of_the_redirect_address_is_an_operator_fault_too(tmp_path):
    class Refuses(FakeProvider):
        def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
            return [DestinationResult("550", None, "5.1.1 mailbox unknown", Outcome.REFUSED) for _ in send.destinations]

    sender = run_sender(
        tmp_path,
        Refuses(),
        encode_line([record(1), record(2)]),
        redirect=Redirect.from_settings(STAGING, ()),
        expect=EXIT_OPERATOR_FAULT,
    )
    assert sender.fault is not None and STAGING in sender.fault.fix
    assert jsonl(tmp_path / "rejects.jsonl") == [] and unfinished(tmp_path) == 2


def test_ses_preflight_fails_when_redirecting_with_a_template_whose_subject_lacks_the_prefix(moto_ses, tmp_path):
    names = {"activation": "activationv1", "password_recovery": "passwordrecoveryv1"}
    provider = SesProvider(moto_ses, Outputs(tmp_path), source="noreply@example.com", templates=names)
    assert all(c.ok for c in provider._check_templates())  # not redirecting: the old subject does
    provider.subject_tag_required = True
    failed = [c for c in provider._check_templates() if not c.ok]
    assert len(failed) == 2 and all(SUBJECT_TAG in c.detail and "MAILROOM_REDIRECT_TO" in c.fix for c in failed)
    moto_ses.update_template(
        Template={"TemplateName": "activationv1", "SubjectPart": SUBJECT_TAG + "s", "TextPart": "t", "HtmlPart": "h"}
    )
    assert [c.ok for c in provider._check_templates()] == [True, False]


def test_the_redirect_shows_as_a_metric_labelled_with_its_address_and_as_0_when_off(tmp_path):
    def registry(**overrides: object):
        out = tmp_path / str(len(overrides))
        sender = Sender(config(**overrides), FakeProvider(), Outputs(out), Journal(out / "journal"))  # type: ignore[arg-type]
        return build_registry(sender)[0]

    on = registry(redirect=Redirect.from_settings(STAGING, ()))
    assert on.get_sample_value("mailroom_sender_redirect", {"to": STAGING}) == 1
    assert registry().get_sample_value("mailroom_sender_redirect", {"to": ""}) == 0
