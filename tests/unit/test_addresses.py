"""The address rule in Python (mailroom/addresses.py) and the sender's gate (sender/addresses.py),
judged by the shared table (tests/address_table.py); the database's half is
tests/integration/test_address_rule.py."""

from __future__ import annotations

import email
import email.errors
import email.policy
import re
import smtplib
from email.message import EmailMessage
from pathlib import Path

import hypothesis.strategies as st
import idna
import pytest
from address_table import ACCEPTED, ADDRESSES, REFUSED, Case
from hypothesis import given, settings
from smtp_server import smtp_server  # noqa: F401  (the fixture)
from test_sender import jsonl, record
from test_sender_smtp import provider, run

from mailroom import address_chars, addresses, templates
from mailroom.actions import ACTIVATION
from mailroom.settings import SmtpSettings
from mailroom.wire import Record, encode_line
from sender.addresses import ascii_address
from sender.provider import UnsendableAddress
from sender.smtp import SmtpProvider

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0006_email_rule.sql"
DOMAIN_CHAR = re.compile("[" + address_chars.DOMAIN_CHARS + "]")


@pytest.mark.parametrize("case", ADDRESSES, ids=[c.id for c in ADDRESSES])
def test_the_rule_gives_every_address_of_the_table_its_verdict_and_reason(case: Case) -> None:
    reason = addresses.problem(case.address)
    if case.refused is None:
        assert reason is None, case.why
    else:
        assert reason is not None and case.refused in reason, case.why


@pytest.mark.parametrize("case", ADDRESSES, ids=[c.id for c in ADDRESSES])
def test_the_sender_refuses_exactly_what_the_rule_refuses_with_the_rules_reason(case: Case) -> None:
    if case.refused is None:
        sent = ascii_address(case.address, utf8_local_part=True)
        local, _, domain = case.address.partition("@")
        assert sent == f"{local}@{domain if domain.isascii() else idna.encode(domain, uts46=True).decode()}"
        assert len(sent.encode("utf-8")) <= 254
    else:
        with pytest.raises(UnsendableAddress, match=re.escape(case.refused)):
            ascii_address(case.address, utf8_local_part=True)


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.id for c in ACCEPTED])
def test_a_provider_without_smtputf8_refuses_only_the_non_ascii_local_parts_the_rule_accepts(case: Case) -> None:
    local = case.address.partition("@")[0]
    if local.isascii():
        assert ascii_address(case.address).isascii()  # what SES is given
    else:
        with pytest.raises(UnsendableAddress, match="not 7-bit ASCII"):
            ascii_address(case.address)


def _smtp() -> SmtpProvider:
    # No connection is made: the provider only builds messages here.
    settings = SmtpSettings(host="127.0.0.1", port=1, tls="none", timeout_s=1.0)
    return SmtpProvider(settings, "Mailroom <noreply@example.com>", templates.load_all())


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.id for c in ACCEPTED])
def test_every_address_the_rule_accepts_makes_the_message_the_smtp_provider_sends(case: Case) -> None:
    smtp = _smtp()
    assert smtp.templates is not None
    to = smtp.address(case.address)
    data = {"login": "ada", "link": "https://app.example.com/activate?t=x", "code": "12345"}
    message = smtp.message(ACTIVATION, smtp.templates["activation"], to, data)
    # serialised as _transaction does, then read back as the receiving side would
    body = message.as_bytes(policy=email.policy.SMTP if to.isascii() else email.policy.SMTPUTF8)
    text = body.decode("utf-8")
    raw = email.message_from_string(text, policy=email.policy.compat32)["To"]
    assert "".join(raw.split()) == to  # the header as sent, unfolded (no rule address holds a space)
    parsed = email.message_from_string(text, policy=email.policy.default)
    (address,) = parsed["To"].addresses
    assert address.domain == to.partition("@")[2]
    # RFC 6532 allows UTF-8 in a local part; the parser notes it as RFC 5322 would not
    expected = (email.errors.NonASCIILocalPartDefect,) if not to.partition("@")[0].isascii() else ()
    assert all(isinstance(d, expected) for d in parsed["To"].defects), parsed["To"].defects


def test_every_accepted_address_reaches_a_real_smtp_server_once_as_sent_and_every_refused_one_is_rejected(
    smtp_server,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    server = smtp_server(smtputf8=True)
    sample = [*ACCEPTED, *REFUSED]
    records = [
        Record(ACTIVATION, c.address, f"u{i}", record(i).secret, record(i).code)
        for i, c in enumerate(sample)
        # the wire carries no control character and no field over 254 characters (nor does the column)
        if not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in c.address) and len(c.address) <= 254
    ]
    run(tmp_path, provider(server), encode_line(records))
    accepted = [r for r in records if addresses.problem(r.email) is None]
    expected = [ascii_address(r.email, utf8_local_part=True) for r in accepted]
    # aiosmtpd keeps RCPT TO as Python's email parser re-renders it, which drops the quotes of a
    # quoted local part holding no special character ("john..doe" -> john..doe); the command
    # on the wire has them (smtplib.quoteaddr keeps them), as the To header does
    assert sorted(server.recipients()) == sorted(e.replace('"john..doe"', "john..doe") for e in expected)
    assert any('To: "john..doe"@example.com' in m.raw.decode("utf-8") for m in server.messages)
    assert smtplib.quoteaddr('"john..doe"@example.com') == '<"john..doe"@example.com>'
    # the refused ones: by the rule, or first by the wire's own check (whitespace)
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert sorted(r.get("recipient") or r["record"][1] for r in rejects) == sorted(
        r.email for r in records if r not in accepted
    )
    assert all("breaks the address rule" in r["reason"] or "not an address" in r["reason"] for r in rejects)


def test_the_header_parser_raises_on_the_address_of_issue_17_which_the_rule_refuses() -> None:
    # Why the rule refuses what it does: this address once got into send_bulk.
    with pytest.raises(AttributeError):
        EmailMessage()["To"] = "typo@[example.com"
    assert addresses.problem("typo@[example.com") is not None


def test_every_domain_character_of_the_rule_is_one_idna_encodes() -> None:
    # The frozen class (tools/address_chars.py) must stay inside what this Python's idna takes.
    count = 0
    for cp in range(0x80, 0x110000):
        ch = chr(cp)
        if DOMAIN_CHAR.match(ch):
            count += 1
            idna.encode("a" + ch + ".example", uts46=True)
    assert count > 100_000


# Labels of characters the rule admits, ASCII letters (either case), digits and hyphens.
_LABEL_CHAR = st.one_of(
    st.sampled_from("abcXYZ019-"),
    st.integers(0x80, 0x10FFFF).map(chr).filter(lambda c: DOMAIN_CHAR.match(c) is not None),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(_LABEL_CHAR, min_size=1, max_size=30), min_size=1, max_size=4))
def test_an_idn_domain_the_rule_accepts_is_one_idna_encodes_within_the_limits(labels: list[str]) -> None:
    address = "user@" + ".".join([*labels, "example"])
    if addresses.problem(address) is None:
        sent = ascii_address(address, utf8_local_part=True)
        domain = sent.partition("@")[2]
        assert len(sent) <= 254 and len(domain) <= 253
        assert all(len(label) <= 63 for label in domain.split("."))


def test_the_migration_holds_the_generated_character_classes_word_for_word() -> None:
    sql = MIGRATION.read_text(encoding="utf-8")
    for name in ("DOMAIN_CHARS", "DOMAIN_MARKS", "LOCAL_REFUSED"):
        assert getattr(address_chars, name) in sql, name


def test_the_envelope_sender_is_not_held_to_the_recipient_rule() -> None:
    # MAILROOM_SOURCE defaults to noreply@localhost, which a local relay takes.
    assert ascii_address("noreply@localhost", recipient=False) == "noreply@localhost"
    with pytest.raises(UnsendableAddress, match="single label"):
        ascii_address("noreply@localhost")


def test_the_table_has_both_verdicts_and_the_issues_addresses() -> None:
    issue = {"bad@@example.com", "a b@example.com", "no-at-sign", "trailing@", "dot@example..com", "typo@[example.com"}
    assert issue <= {c.address for c in REFUSED}
    assert len({c.address for c in ADDRESSES}) == len(ADDRESSES)
