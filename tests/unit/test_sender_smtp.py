"""The sender's loop with the SMTP provider against a real SMTP server on loopback (aiosmtpd),
with faults injected by the server's handlers."""

# The fixtures `smtp_server` and `certificate` come from tests/smtp_server.py (imported below).
# ruff: noqa: F811

from __future__ import annotations

import html
import json
import os
import re
import threading
from collections import Counter
from pathlib import Path

import pytest
from smtp_server import PASSWORD, USERNAME, certificate, make_certificate, smtp_server  # noqa: F401
from test_sender import FAST, TRICKY_LOGINS, config, jsonl, record
from test_sender_actions_locales import locale_folder, of_action

from mailroom import templates
from mailroom.actions import ACTIVATION, MAGIC_LINK, PASSWORD_RECOVERY
from mailroom.settings import SmtpSettings
from mailroom.templates import EmailTemplate, default_template_data, template_data
from mailroom.wire import Record, encode_line
from sender.dispatch import Sender
from sender.journal import Journal
from sender.outputs import Outputs
from sender.provider import BulkSend, Destination, UnsendableAddress
from sender.retry import EXIT_OPERATOR_FAULT, Outcome
from sender.smtp import SmtpProvider

SOURCE = "Mailroom <noreply@example.com>"
APP_URL = "https://app.example.com"


def provider(server, **overrides: object) -> SmtpProvider:  # type: ignore[no-untyped-def]
    custom = overrides.pop("templates", None)
    values: dict[str, object] = {"host": server.host, "port": server.port, "tls": "none", "timeout_s": 10.0}
    if server.password is not None:
        values.update(username=USERNAME, password=PASSWORD)
    values.update(overrides)
    return SmtpProvider(SmtpSettings(**values), SOURCE, custom or templates.load_all())  # type: ignore[arg-type]


def run(out: Path, smtp: SmtpProvider, data: bytes | None, expect: int = 0, **overrides: object) -> Sender:
    """A Sender over `data` as its stdin (None: only the journal), run to its exit status `expect`."""
    sender = Sender(
        config(source=SOURCE, app_url=APP_URL, **overrides),
        smtp,
        Outputs(out),
        Journal(out / "journal"),
        policy=FAST,
    )
    if data is None:
        status = sender.run(None)
    else:
        r, w = os.pipe()
        writer = threading.Thread(target=lambda: os.write(w, data) and os.close(w), daemon=True)
        writer.start()
        try:
            status = sender.run(r)
        finally:
            writer.join(10)
            os.close(r)
    smtp.close()
    assert status == expect
    return sender


def unfinished(out: Path) -> int:
    """Records the journal still holds for the next start."""
    journal = Journal(out / "journal")
    try:
        return sum(len(records) for _, _, records in journal.recover())
    finally:
        journal.close()


def both_actions(n: int, logins: list[str] | None = None) -> list[Record]:
    logins = logins or TRICKY_LOGINS
    return [record(i, ACTIVATION if i % 3 else PASSWORD_RECOVERY, logins[i % len(logins)]) for i in range(n)]


def lines(records: list[Record], per_line: int = 50) -> bytes:
    return b"".join(encode_line(records[i : i + per_line]) for i in range(0, len(records), per_line))


def text_part(message) -> str:  # type: ignore[no-untyped-def]
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def html_part(message) -> str:  # type: ignore[no-untyped-def]
    return message.get_body(("html",)).get_content().replace("\r\n", "\n")


# -- messages --------------------------------------------------------------------------------------


def test_120_records_of_both_actions_each_reach_their_recipient_once_with_the_right_parts(smtp_server, tmp_path):
    server = smtp_server()
    records = both_actions(120)
    sender = run(tmp_path, provider(server), lines(records), concurrency=4)

    assert Counter(server.recipients()) == Counter(r.email for r in records)
    by_recipient = {m.rcpt_tos[0]: m for m in server.messages}
    assert all(len(m.rcpt_tos) == 1 for m in server.messages)  # one transaction per recipient, no shared To
    for r in records:
        received = by_recipient[r.email]
        message = received.message
        assert received.mail_from == "noreply@example.com"
        assert message["To"] == r.email and message["From"] == SOURCE
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert re.fullmatch(r"<[^@<>]+@example\.com>", message["Message-ID"])
        assert message["Date"]
        text, body = text_part(message), html_part(message)
        path = "activate" if r.action is ACTIVATION else "recover"
        link = f"{APP_URL}/{path}?token={r.secret}"
        assert link in text and html.escape(link) in body
        assert f"Hello {r.login}," in text
        assert f"Hello {html.escape(r.login, quote=True)}," in body  # escaped login, never raw markup
        if r.action is ACTIVATION:
            assert message["Subject"] == "Activate your account"
        else:
            assert message["Subject"] == "Reset your password"
            assert f"enter this code when asked: {r.code}" in text and f">{r.code}</p>" in body
    deliveries = jsonl(tmp_path / "deliveries.jsonl")
    assert Counter(d["recipient"] for d in deliveries) == Counter(r.email for r in records)
    queued = {m.queue_id for m in server.messages}
    assert all(d["status"] == "Success" for d in deliveries)
    assert {re.search(r"queued as (\S+)", d["message_id"]).group(1) for d in deliveries} == queued
    assert all(d["message_id"].startswith("250 2.0.0 Ok: queued as ") for d in deliveries)
    assert jsonl(tmp_path / "rejects.jsonl") == []
    assert sender.counts.delivered == 120


def test_a_login_holding_markup_is_escaped_in_the_html_part_as_in_the_ses_templates(smtp_server, tmp_path):
    server = smtp_server()
    evil = '<script>alert("x")</script> & co'
    run(tmp_path, provider(server), encode_line([record(1, login=evil)]))
    body = html_part(server.messages[0].message)
    assert "<script>" not in body
    assert "Hello &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co," in body


def test_a_utf8_subject_is_encoded_per_rfc_2047_and_reads_back_the_same(smtp_server, tmp_path):
    server = smtp_server()
    base = templates.load("activation")
    custom = {
        "activation": EmailTemplate("activation", "Activez votre compte, {{login}} ✓", base.text, base.html),
        "password_recovery": templates.load("password_recovery"),
    }
    run(tmp_path, provider(server, templates=custom), encode_line([record(1, login="Zoë 山田")]))
    raw = server.messages[0].raw
    subject_line = re.search(rb"^Subject: (.*(?:\r\n[ \t].*)*)", raw, re.MULTILINE).group(1)
    assert subject_line.isascii() and b"=?utf-8?" in subject_line.lower()
    assert server.messages[0].message["Subject"] == "Activez votre compte, Zoë 山田 ✓"


def test_a_message_is_the_same_text_as_debug_mode_renders_from_the_same_data(tmp_path):
    smtp = SmtpProvider(SmtpSettings(host="127.0.0.1", tls="none"), SOURCE, templates.load_all())
    r = record(7, PASSWORD_RECOVERY, 'say "hi"')
    data = {**json.loads(default_template_data(APP_URL)), **json.loads(template_data(r))}
    template = templates.load("password_recovery")
    message = smtp.message(PASSWORD_RECOVERY, template, r.email, data)
    rendered = template.render(data)
    assert text_part(message) == rendered["text"] and html_part(message) == rendered["html"]
    assert message["Subject"] == rendered["subject"]


# -- faults ----------------------------------------------------------------------------------------


def test_a_4xx_on_the_first_attempt_is_retried_and_then_delivered_once(smtp_server, tmp_path):
    server = smtp_server()
    records = both_actions(10)
    server.rcpt_once[records[3].email] = "451 4.7.1 Greylisted, try again later"
    sender = run(tmp_path, provider(server), lines(records))

    assert Counter(server.recipients()) == Counter(r.email for r in records)
    assert records[3].email not in server.rcpt_once  # the 451 was given
    assert sender.counts.retries == 1
    row = next(d for d in jsonl(tmp_path / "deliveries.jsonl") if d["recipient"] == records[3].email)
    assert row["status"] == "Success" and row["attempts"] == 2
    assert jsonl(tmp_path / "rejects.jsonl") == []


def test_a_5xx_to_rcpt_for_one_recipient_among_50_rejects_only_that_one(smtp_server, tmp_path):
    server = smtp_server()
    records = [record(i) for i in range(50)]
    bad = records[17].email
    server.refuse_rcpt[bad] = f"550 5.1.1 <{bad}>: Recipient address rejected: User unknown"
    sender = run(tmp_path, provider(server), lines(records))

    assert Counter(server.recipients()) == Counter(r.email for r in records if r.email != bad)
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert len(rejects) == 1
    assert rejects[0]["status"] == "SMTP RCPT 550" and "User unknown" in rejects[0]["error"]
    assert records[17].secret not in json.dumps(rejects)  # the secret stays redacted
    assert sender.counts.delivered == 49 and sender.counts.rejected == 1


def test_a_wrong_password_stops_the_sender_writes_nothing_off_and_the_right_one_delivers_all_once(
    smtp_server, tmp_path
):
    server = smtp_server(password=PASSWORD)
    records = both_actions(60)
    sender = run(tmp_path, provider(server, password="wrong"), lines(records), expect=EXIT_OPERATOR_FAULT)

    assert server.messages == []
    assert jsonl(tmp_path / "rejects.jsonl") == [] and jsonl(tmp_path / "deliveries.jsonl") == []
    assert "MAILROOM_SMTP_PASSWORD" in sender.fault.fix
    assert unfinished(tmp_path) == 60

    run(tmp_path, provider(server), None)  # restarted with the right password: the journal replays
    assert Counter(server.recipients()) == Counter(r.email for r in records)
    assert Counter(d["recipient"] for d in jsonl(tmp_path / "deliveries.jsonl")) == Counter(r.email for r in records)
    assert jsonl(tmp_path / "rejects.jsonl") == []


def test_a_5xx_to_mail_from_is_an_operator_fault_and_writes_nothing_off(smtp_server, tmp_path):
    server = smtp_server()
    server.mail_reply = "553 5.7.1 <noreply@example.com>: Sender address rejected: not owned by user"
    sender = run(tmp_path, provider(server), lines(both_actions(20)), expect=EXIT_OPERATOR_FAULT)
    assert jsonl(tmp_path / "rejects.jsonl") == [] and jsonl(tmp_path / "deliveries.jsonl") == []
    assert "MAILROOM_SOURCE" in sender.fault.fix


def test_relaying_denied_at_rcpt_is_an_operator_fault_not_a_refused_recipient(smtp_server, tmp_path):
    server = smtp_server()
    records = [record(i) for i in range(5)]
    for r in records:
        server.refuse_rcpt[r.email] = f"554 5.7.1 <{r.email}>: Relay access denied"
    run(tmp_path, provider(server), lines(records), expect=EXIT_OPERATOR_FAULT)
    assert jsonl(tmp_path / "rejects.jsonl") == []
    assert unfinished(tmp_path) == 5


def test_a_connection_dropped_mid_session_is_reopened_and_the_message_delivered_once(smtp_server, tmp_path):
    server = smtp_server()
    records = [record(i) for i in range(30)]
    server.drop_at_data_once.add(records[12].email)
    sender = run(tmp_path, provider(server), lines(records), concurrency=1)

    assert server.dropped == [records[12].email]
    assert Counter(server.recipients()) == Counter(r.email for r in records)
    assert sender.counts.retries >= 1
    assert jsonl(tmp_path / "rejects.jsonl") == []
    assert server.sessions == 2  # the first one, and the one opened after the drop


def test_one_connection_per_worker_is_kept_open_with_rset_between_messages_and_closed_at_exit(smtp_server, tmp_path):
    server = smtp_server()
    run(tmp_path, provider(server), lines(both_actions(120)), concurrency=3)
    assert len(server.messages) == 120
    assert 1 <= server.sessions <= 3
    assert server.rsets >= 120 - server.sessions  # every message after a connection's first
    server.wait_for(lambda: server.closed == server.sessions, "every connection closed")


def test_a_server_that_refuses_connections_is_retried_until_the_deadline_and_only_then_rejected(tmp_path):
    closed = SmtpProvider(SmtpSettings(host="127.0.0.1", port=1, tls="none", timeout_s=2), SOURCE, templates.load_all())
    results = closed.send_bulk(bulk([record(1), record(2)]))
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
    assert results[0].status == "SMTP CONNECT no-reply" and "ConnectionRefused" in (results[0].error or "")


def bulk(records: list[Record]) -> BulkSend:
    return BulkSend(
        records[0].action,
        "unused-by-smtp",
        SOURCE,
        "",
        default_template_data(APP_URL),
        [Destination(r.email, template_data(r)) for r in records],
    )


# -- TLS -------------------------------------------------------------------------------------------


def test_starttls_with_a_self_signed_certificate_the_sender_trusts_delivers(smtp_server, certificate, tmp_path):
    server = smtp_server(tls_context=certificate.server_context(), password=PASSWORD)
    smtp = provider(server, tls="starttls", ca_file=certificate.cert)
    checks = smtp.preflight()
    assert all(c.ok for c in checks), [c.line() for c in checks]
    run(tmp_path, smtp, lines(both_actions(10)))
    assert len(server.messages) == 10


def test_implicit_tls_with_a_trusted_certificate_delivers(smtp_server, certificate, tmp_path):
    server = smtp_server(tls_context=certificate.server_context(), implicit_tls=True)
    run(tmp_path, provider(server, tls="tls", ca_file=certificate.cert), lines(both_actions(5)))
    assert len(server.messages) == 5


def test_starttls_with_an_untrusted_certificate_is_refused_and_writes_nothing_off(smtp_server, certificate, tmp_path):
    server = smtp_server(tls_context=certificate.server_context())
    other_ca = make_certificate(tmp_path / "other", "another CA")
    smtp = provider(server, tls="starttls", ca_file=other_ca.cert)

    failed = [c for c in smtp.preflight() if not c.ok]
    assert len(failed) == 1 and "self-signed certificate" in failed[0].detail
    assert "MAILROOM_SMTP_CA_FILE" in failed[0].fix

    sender = run(tmp_path, smtp, lines(both_actions(10)), expect=EXIT_OPERATOR_FAULT)
    assert server.messages == []
    assert jsonl(tmp_path / "rejects.jsonl") == [] and jsonl(tmp_path / "deliveries.jsonl") == []
    assert "MAILROOM_SMTP_CA_FILE" in sender.fault.fix


def test_starttls_required_but_not_offered_is_an_operator_fault(smtp_server, tmp_path):
    server = smtp_server()  # plain text only
    failed = [c for c in provider(server, tls="starttls").preflight() if not c.ok]
    assert len(failed) == 1 and "does not offer STARTTLS" in failed[0].detail


# -- preflight -------------------------------------------------------------------------------------


def test_preflight_connects_says_ehlo_and_logs_in(smtp_server):
    server = smtp_server(password=PASSWORD)
    checks = provider(server).preflight()
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert server.logins == [(USERNAME, True)]
    server.wait_for(lambda: server.closed == server.sessions == 1, "preflight's session to end")


def test_preflight_with_a_wrong_password_fails_with_the_fix_and_never_shows_the_password(smtp_server):
    server = smtp_server(password=PASSWORD)
    failed = [c for c in provider(server, password="wrong-pass-123").preflight() if not c.ok]
    assert len(failed) == 1
    assert "535" in failed[0].detail and "MAILROOM_SMTP_PASSWORD" in failed[0].fix
    assert "wrong-pass-123" not in failed[0].line()


def test_preflight_against_a_closed_port_fails_naming_the_host(tmp_path):
    smtp = SmtpProvider(SmtpSettings(host="127.0.0.1", port=1, tls="none", timeout_s=2), SOURCE, templates.load_all())
    failed = [c for c in smtp.preflight() if not c.ok]
    assert len(failed) == 1 and "127.0.0.1:1" in failed[0].detail


# -- addresses -------------------------------------------------------------------------------------


def test_an_idn_domain_goes_out_in_punycode(smtp_server, tmp_path):
    server = smtp_server()
    r = Record(ACTIVATION, "anna@bücher.example", "anna", record(1).secret, record(1).code)
    run(tmp_path, provider(server), encode_line([r]))
    assert server.recipients() == ["anna@xn--bcher-kva.example"]
    assert server.messages[0].message["To"] == "anna@xn--bcher-kva.example"


def test_a_non_ascii_local_part_goes_out_with_smtputf8_when_the_server_offers_it(smtp_server, tmp_path):
    server = smtp_server(smtputf8=True)
    r = Record(ACTIVATION, "zoë@bücher.example", "zoë", record(1).secret, record(1).code)
    run(tmp_path, provider(server), encode_line([r]))
    assert server.recipients() == ["zoë@xn--bcher-kva.example"]
    assert "SMTPUTF8" in server.messages[0].mail_options
    assert server.messages[0].message["To"] == "zoë@xn--bcher-kva.example"


def test_a_non_ascii_local_part_is_refused_with_the_reason_when_the_server_lacks_smtputf8(smtp_server, tmp_path):
    server = smtp_server(smtputf8=False)
    smtp = provider(server)
    assert smtp.address("zoë@example.com") == "zoë@example.com"  # not known yet: decided at send time
    r = Record(ACTIVATION, "zoë@example.com", "zoë", record(1).secret, record(1).code)
    run(tmp_path, smtp, encode_line([r, record(2)]))
    assert server.recipients() == [record(2).email]
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert len(rejects) == 1 and "SMTPUTF8" in rejects[0].get("error", "") + rejects[0]["reason"]

    smtp.preflight()  # now the server's extensions are known: refused at admission, before any call
    with pytest.raises(UnsendableAddress, match="SMTPUTF8"):
        smtp.address("zoë@example.com")
    assert smtp.address("zoe@bücher.example") == "zoe@xn--bcher-kva.example"


# -- a relay refusing *us* at RCPT TO (Postfix with smtpd_delay_reject=yes, Exim, Microsoft 365) ---

REFUSED_US_AT_RCPT = [
    "553 5.7.1 <noreply@example.com>: Sender address rejected: not owned by user mailroom",
    "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
    "550 5.1.8 <noreply@example.com>: Sender address rejected: Domain not found",
    "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
]


@pytest.mark.parametrize("reply", REFUSED_US_AT_RCPT)
def test_a_relay_refusing_our_sender_at_rcpt_stops_the_sender_and_writes_nothing_off(smtp_server, tmp_path, reply):
    server = smtp_server()
    server.rcpt_reply = reply
    records = both_actions(30)
    sender = run(tmp_path, provider(server), lines(records), expect=EXIT_OPERATOR_FAULT)

    assert server.messages == []
    assert jsonl(tmp_path / "rejects.jsonl") == [] and jsonl(tmp_path / "deliveries.jsonl") == []
    assert unfinished(tmp_path) == 30
    assert sender.fault is not None and sender.fault.code.startswith("SMTP RCPT 55")
    assert "MAILROOM_SOURCE" in sender.fault.fix and reply[4:] in sender.fault.fix

    server.rcpt_reply = None  # the relay fixed: the journal replays, each record once
    run(tmp_path, provider(server), None)
    assert Counter(server.recipients()) == Counter(r.email for r in records)
    assert Counter(d["recipient"] for d in jsonl(tmp_path / "deliveries.jsonl")) == Counter(r.email for r in records)
    assert jsonl(tmp_path / "rejects.jsonl") == []


def test_our_daily_quota_at_rcpt_is_waited_out_not_written_off(smtp_server, tmp_path):
    server = smtp_server()
    records = both_actions(12)
    for r in records:
        server.rcpt_once[r.email] = "550 5.4.5 Daily user sending quota exceeded. - gsmtp"
    sender = run(tmp_path, provider(server), lines(records))

    assert not server.rcpt_once  # every recipient got the quota reply once
    assert Counter(server.recipients()) == Counter(r.email for r in records)
    assert jsonl(tmp_path / "rejects.jsonl") == []
    assert sender.counts.retries == 12


# -- one record that cannot be made into a message -----------------------------------------------


def typo_record(i: int) -> Record:
    """`typo@[example.com`: valid on the wire; Python's header parser raises on it."""
    r = record(i)
    return Record(r.action, "typo@[example.com", "typo", r.secret, r.code)


class WithoutTheAddressRule(SmtpProvider):
    """A provider whose admission lets every address through: the address rule refuses
    `typo@[example.com` first (tests/unit/test_addresses.py), so this stands for an address
    that a gap in the rule would let in. Building its message must then cost it alone."""

    def address(self, email: str) -> str:
        return email


@pytest.mark.parametrize("concurrency", [1, 3])
def test_an_address_no_message_can_be_built_for_costs_that_record_only(smtp_server, tmp_path, concurrency):
    server = smtp_server()
    good = [record(i) for i in range(10)]
    records = [*good[:4], typo_record(99), *good[4:]]
    lenient = provider(server)
    lenient.__class__ = WithoutTheAddressRule
    sender = run(tmp_path, lenient, lines(records), concurrency=concurrency)

    assert Counter(server.recipients()) == Counter(r.email for r in good)  # each good one once
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert [r["recipient"] for r in rejects] == ["typo@[example.com"]
    assert rejects[0]["status"] == "UnbuildableMessage" and "no message can be built" in rejects[0]["error"]
    assert sender.counts.delivered == 10 and sender.fault is None
    assert unfinished(tmp_path) == 0  # nothing left to wedge the next start

    run(tmp_path, provider(server), None)  # a restart sends nothing again
    assert len(server.messages) == 10


class UnrenderableTemplate:
    """A template that fails whatever the data: the operator's fault, not the records'."""

    def render(self, data: object) -> dict[str, str]:
        raise KeyError("subject")


def test_a_template_no_message_can_be_built_from_is_an_operator_fault_not_a_write_off(smtp_server, tmp_path):
    server = smtp_server()
    broken = {"activation": UnrenderableTemplate(), "password_recovery": UnrenderableTemplate()}
    sender = run(tmp_path, provider(server, templates=broken), lines(both_actions(10)), expect=EXIT_OPERATOR_FAULT)

    assert server.messages == []
    assert jsonl(tmp_path / "rejects.jsonl") == []
    assert unfinished(tmp_path) == 10
    assert sender.fault is not None and sender.fault.code == "Internal" and "KeyError" in sender.fault.message


# -- results per message: a kill re-sends at most the message in flight on each connection ------------


@pytest.mark.parametrize("concurrency", [1, 3])
def test_each_message_is_recorded_before_the_next_one_on_its_connection_is_sent(smtp_server, tmp_path, concurrency):
    server = smtp_server()
    server.observe = lambda _: len(jsonl(tmp_path / "deliveries.jsonl"))
    run(tmp_path, provider(server), lines(both_actions(60)), concurrency=concurrency)

    assert len(server.observed) == 60
    # when the k-th message arrives, every earlier one is recorded but those in flight on the
    # other connections (one each at most)
    assert all(seen >= k - (concurrency - 1) for k, seen in enumerate(server.observed)), server.observed
    if concurrency == 1:
        assert server.observed == list(range(60))


# -- retries are logged -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_retry_is_logged_at_its_first_occurrence_then_once_every_30_s_per_cause(tmp_path, caplog):
    from conftest import FakeProvider

    from sender.dispatch import Item
    from sender.provider import DestinationResult

    clock = Clock()
    sender = Sender(
        config(source=SOURCE, app_url=APP_URL, deadline_s=3600.0),
        FakeProvider(),
        Outputs(tmp_path),
        Journal(tmp_path / "journal"),
        policy=FAST,
        monotonic=clock,
    )
    auth = DestinationResult("SMTP AUTH no-reply", None, "TimeoutError: timed out", Outcome.RETRY)
    greylisted = DestinationResult("SMTP RCPT 451", None, "4.7.1 Greylisted", Outcome.RETRY)

    def retry(result: DestinationResult, n: int = 1) -> list[str]:
        caplog.clear()
        items = [Item("line", i, record(i), clock.now, due=clock.now + 3600) for i in range(n)]
        with caplog.at_level("WARNING", logger="sender"):
            sender._apply(items, [result] * n)
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    first = retry(auth, 3)
    assert len(first) == 1
    assert "SMTP AUTH no-reply: TimeoutError: timed out" in first[0]
    assert "3 destination(s) retried, the next try in " in first[0] and "attempt 2" in first[0]
    clock.now += 10
    assert retry(auth) == []
    clock.now += 19.9
    assert retry(auth, 2) == []
    assert len(retry(greylisted)) == 1  # another cause has its own 30 s
    clock.now += 0.1  # 30 s after the first line
    again = retry(auth)
    assert len(again) == 1 and "3 more retries of this cause since its last line" in again[0]
    clock.now += 30
    assert "more retr" not in retry(auth)[0]


class SilentAuthServer:
    """A relay that greets, offers AUTH, then never answers AUTH (the connection stays open)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.auths = 0
        self._conns: list[object] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn) -> None:  # type: ignore[no-untyped-def]
        f = conn.makefile("rb")
        conn.sendall(b"220 silent.example ESMTP\r\n")
        for line in f:
            if line.upper().startswith(b"EHLO"):
                conn.sendall(b"250-silent.example\r\n250 AUTH PLAIN LOGIN\r\n")
            elif line.upper().startswith(b"AUTH"):
                self.auths += 1  # and no answer, ever

    def close(self) -> None:
        self.sock.close()
        for c in self._conns:
            c.close()  # type: ignore[attr-defined]


def test_a_relay_that_stops_answering_auth_is_logged_at_warning_naming_the_stage_and_the_next_try(tmp_path, caplog):
    relay = SilentAuthServer()
    try:
        smtp = SmtpProvider(
            SmtpSettings(
                host="127.0.0.1", port=relay.port, tls="none", timeout_s=0.2, username=USERNAME, password=PASSWORD
            ),
            SOURCE,
            templates.load_all(),
        )
        with caplog.at_level("WARNING", logger="sender"):
            run(tmp_path, smtp, lines(both_actions(3)), deadline_s=2.0)
    finally:
        relay.close()
    lines_ = [
        r.getMessage() for r in caplog.records if r.name == "sender" and "retried, the next try in" in r.getMessage()
    ]
    assert relay.auths >= 2  # it was tried again and again
    assert len(lines_) == 1, lines_  # one line for the cause in a run shorter than 30 s
    assert f"smtp at 127.0.0.1:{relay.port} failed: SMTP AUTH no-reply: " in lines_[0] and "timed out" in lines_[0]
    assert PASSWORD not in caplog.text
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert len(rejects) == 3 and {r["reason"] for r in rejects} == {"deadline passed while retrying"}


# -- an exception in the middle of a transaction ------------------------------------------------------


def test_an_exception_mid_transaction_costs_that_message_only_and_after_data_it_is_sent_again(
    smtp_server, tmp_path, monkeypatch
):
    """Not a reply, not a network error: at RCPT TO (nothing went out) that record is refused; after
    DATA (the server may have the message) it is retried: a duplicate is possible, a loss is not."""
    import smtplib

    server = smtp_server()
    records = [record(i) for i in range(8)]
    at_rcpt, after_data = records[2].email, records[5].email
    real_rcpt, real_data = smtplib.SMTP.rcpt, smtplib.SMTP.data
    broke: list[str] = []

    def rcpt(self, recip, options=()):  # type: ignore[no-untyped-def]
        if recip == at_rcpt:
            raise ValueError("a bug at RCPT")
        return real_rcpt(self, recip, options)

    def data(self, msg):  # type: ignore[no-untyped-def]
        answer = real_data(self, msg)
        if f"To: {after_data}".encode() in msg and after_data not in broke:
            broke.append(after_data)
            raise RuntimeError("a bug after the server took the message")
        return answer

    monkeypatch.setattr(smtplib.SMTP, "rcpt", rcpt)
    monkeypatch.setattr(smtplib.SMTP, "data", data)
    sender = run(tmp_path, provider(server), lines(records), concurrency=1)

    arrivals = Counter(server.recipients())
    assert at_rcpt not in arrivals
    assert arrivals[after_data] == 2  # sent again: the documented duplicate, never a loss
    assert all(arrivals[r.email] == 1 for r in records if r.email not in (at_rcpt, after_data))
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert [(r["recipient"], r["status"]) for r in rejects] == [(at_rcpt, "SMTP RCPT error")]
    assert "ValueError: a bug at RCPT" in rejects[0]["error"]
    assert sender.fault is None and sender.counts.delivered == 7


def test_smtp_sends_each_record_with_its_actions_template_in_the_recipients_locale(smtp_server, tmp_path):
    folder = locale_folder(tmp_path)
    server = smtp_server()
    records = [
        of_action(1, MAGIC_LINK, "pt-BR"),
        of_action(2, MAGIC_LINK, None),
        of_action(3, ACTIVATION, "pt"),
        of_action(4, ACTIVATION, "de"),
    ]
    run(tmp_path, provider(server), encode_line(records), templates_dir=folder, local_templates=True)
    subjects = {m.rcpt_tos[0]: m.message["Subject"] for m in server.messages}
    assert subjects == {
        "user1@example.com": "Entre, user1",
        "user2@example.com": "Sign in, user2",
        "user3@example.com": "Ative sua conta, user3",
        "user4@example.com": "Activate your account",
    }
