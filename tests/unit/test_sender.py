"""The sender's loop against SES emulated by moto (in-process), with real SES error answers
injected through botocore's before-send hook where moto cannot produce them."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs
from xml.sax.saxutils import escape as xml_escape

import pytest
from botocore.awsrequest import AWSResponse
from conftest import SES_SOURCE, FakeProvider
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, Action
from mailroom.backoff import Backoff
from mailroom.signing import sign, token_ref
from mailroom.wire import Record, encode_line
from sender.dispatch import SendConfig, Sender
from sender.journal import Journal
from sender.outputs import Outputs
from sender.provider import BulkSend, DestinationResult
from sender.ratelimit import RateLimiter
from sender.retry import EXIT_OPERATOR_FAULT, Outcome, RetryPolicy
from sender.ses import SesProvider

KEY = bytes(range(32))
SOURCE = SES_SOURCE
FAST = RetryPolicy(Backoff(0.001, 0.01), quota_delay=0.05)
TRICKY_LOGINS = ['say "hi"', "back\\slash", "{{login}} {{{secret}}}", "Zoë 山田 🚀", 'a,"b",c', "<b>x</b>"]


def record(i: int, action: Action = ACTIVATION, login: str | None = None) -> Record:
    secret = hashlib.sha256(f"secret {i}".encode()).digest()
    code = f"{i % 100000:05d}"
    return Record(
        action,
        f"user{i}@example.com",
        login if login is not None else f"user{i}",
        sign(KEY, action, secret, code),
        code,
    )


def config(**overrides: object) -> SendConfig:
    values: dict[str, object] = {
        "templates": {"activation": "activationv1", "password_recovery": "passwordrecoveryv1"},
        "source": SOURCE,
        "config_set": "",
        "app_url": "https://app.example.com",
        "deadline_s": 600.0,
        "concurrency": 4,
        "max_send_rate": 10_000.0,
    }
    values.update(overrides)
    return SendConfig(**values)  # type: ignore[arg-type]


def run_sender(
    out: Path,
    provider: object,
    data: bytes | None,
    *,
    policy: RetryPolicy = FAST,
    expect: int = 0,
    **overrides: object,
) -> Sender:
    """Run a Sender over `data` as its stdin until it exits with `expect`; return it for its counters."""
    clock = overrides.pop("clock", time.time)
    max_pending = overrides.pop("max_pending", None)
    limiter = overrides.pop("limiter", None)
    sender = Sender(
        config(**overrides),
        provider,
        Outputs(out),
        Journal(out / "journal", clock=clock),  # type: ignore[arg-type]
        policy=policy,
        clock=clock,
        max_pending=max_pending,
        limiter=limiter,
    )  # type: ignore[arg-type]
    if data is None:
        assert sender.run(None) == expect
        return sender
    r, w = os.pipe()

    def write() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        assert sender.run(r) == expect
    finally:
        writer.join(10)
        os.close(r)
    return sender


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object):
        yield self.body


def addresses(request: object) -> list[str]:
    form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())  # type: ignore[attr-defined]
    keys = sorted(
        (k for k in form if k.endswith("Destination.ToAddresses.member.1")), key=lambda k: int(k.split(".")[2])
    )
    return [form[k][0] for k in keys]


def error_xml(code: str, message: str, request_id: str = "req-1") -> bytes:
    return (
        f'<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{xml_escape(message)}</Message></Error><RequestId>{request_id}</RequestId>"
        f"</ErrorResponse>"
    ).encode()


def statuses_xml(statuses: list[str]) -> bytes:
    members = "".join(
        f"<member><Status>{s}</Status>"
        + (f"<MessageId>m-{i}</MessageId>" if s == "Success" else f"<Error>{s} happened</Error>")
        + "</member>"
        for i, s in enumerate(statuses)
    )
    return (
        f'<SendBulkTemplatedEmailResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
        f"<SendBulkTemplatedEmailResult><Status>{members}</Status></SendBulkTemplatedEmailResult>"
        f"<ResponseMetadata><RequestId>req-2</RequestId></ResponseMetadata></SendBulkTemplatedEmailResponse>"
    ).encode()


@pytest.fixture
def ses(moto_ses):
    """A boto3 SES client on moto, with the source verified and both templates created."""
    return moto_ses


def sent(client: object) -> list:
    return ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages


class Calls:
    """A before-send hook: records every call's addresses; answers the first ones with `answers`."""

    def __init__(self, client: object, answers: list[tuple[int, bytes]]) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()
        client.meta.events.register_first("before-send.ses.SendBulkTemplatedEmail", self)  # type: ignore[attr-defined]

    def __call__(self, request: object, **_: object):
        with self.lock:
            self.calls.append(addresses(request))
            if self.answers:
                status, body = self.answers.pop(0)
                return AWSResponse(request.url, status, {}, Raw(body))  # type: ignore[attr-defined]
        return None


def test_120_records_across_two_lines_arrive_in_calls_of_at_most_50_with_intact_template_data(ses, tmp_path):
    records = [
        record(i, ACTIVATION if i % 3 else PASSWORD_RECOVERY, TRICKY_LOGINS[i % len(TRICKY_LOGINS)]) for i in range(120)
    ]
    data = encode_line(records[:70]) + encode_line(records[70:])
    sender = run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), data, concurrency=1)

    messages = sent(ses)
    assert all(len(m.destinations) <= 50 for m in messages)
    got = {}
    for m in messages:
        assert json.loads(m.template_data)["app_url"] == "https://app.example.com"
        for d in m.destinations:
            got[d["Destination"]["ToAddresses"][0]] = (m.template, json.loads(d["ReplacementTemplateData"]))
    assert len(got) == 120
    for r in records:
        template, data_ = got[r.email]
        assert template == ("activationv1" if r.action is ACTIVATION else "passwordrecoveryv1")
        assert data_["login"] == r.login and data_["secret"] == r.secret
        assert data_.get("code") == (r.code if r.action is PASSWORD_RECOVERY else None)
    deliveries = jsonl(tmp_path / "deliveries.jsonl")
    assert len(deliveries) == 120 and all(d["status"] == "Success" and d["message_id"] for d in deliveries)
    assert sender.counts.delivered == 120


def test_unquoted_lines_of_the_earlier_implementation_are_accepted(ses, tmp_path):
    vectors = json.loads((Path(__file__).parents[1] / "data" / "interop_vectors.json").read_text())
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), vectors["line"].encode() + b"\n")
    assert sorted(d["recipient"] for d in jsonl(tmp_path / "deliveries.jsonl")) == sorted(
        row["email"] for row in vectors["rows"]
    )
    assert jsonl(tmp_path / "rejects.jsonl") == []


def test_malformed_records_are_rejected_with_reasons_while_their_neighbours_are_sent(ses, tmp_path, caplog):
    good = [record(i) for i in range(3)]
    bad_secret = record(10)
    line1 = (
        encode_line([good[0]]).rstrip(b"\n")
        + b",1,not-an-email,bob,"
        + record(11).secret.encode()
        + b",00000"
        + b",2,carol@example.com,carol,"
        + record(12, PASSWORD_RECOVERY).secret.encode()
        + b",12a45"
        + b",7,dave@example.com,dave,"
        + record(13).secret.encode()
        + b",00000"
        + b",1,erin@example.com,erin,"
        + bad_secret.secret[:40].encode()
        + b",00000,"
        + encode_line([good[1]])
    )
    line2 = b"1,x@example.com,only,three\n"
    data = line1 + line2 + b"\xff\xfe garbage\n" + encode_line([good[2]])
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), data)

    assert sorted(d["recipient"] for d in jsonl(tmp_path / "deliveries.jsonl")) == sorted(r.email for r in good)
    rejects = jsonl(tmp_path / "rejects.jsonl")
    reasons = " | ".join(r["reason"] for r in rejects)
    for expected in (
        "email is not an address",
        "code is not 5 digits",
        "unknown action '7'",
        "secret is not base64url of 64 bytes",
        "4 fields is not a multiple of 5",
        "1 fields is not a multiple of 5",
    ):
        assert expected in reasons
    text = (tmp_path / "rejects.jsonl").read_text()
    for r in (record(11), record(12, PASSWORD_RECOVERY), record(13)):
        assert r.secret not in text
    assert len([m for m in caplog.messages if m.startswith("rejected input")]) == len(rejects)


def test_api_throttling_is_retried_and_the_raw_error_response_is_saved(ses, tmp_path):
    calls = Calls(
        ses,
        [
            (400, error_xml("Throttling", "Maximum sending rate exceeded.", "req-thr-1")),
            (503, error_xml("ServiceUnavailable", "Service unavailable", "req-503")),
        ],
    )
    records = [record(i) for i in range(5)]
    sender = run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line(records))
    assert len(calls.calls) == 3 and all(c == [r.email for r in records] for c in calls.calls)
    assert [d["status"] for d in jsonl(tmp_path / "deliveries.jsonl")] == ["Success"] * 5
    saved = sorted((tmp_path / "errors").iterdir())
    assert sorted(p.name.split("-", 1)[1] for p in saved) == ["req-503.xml", "req-thr-1.xml"]
    assert any(b"Maximum sending rate exceeded." in p.read_bytes() for p in saved)
    assert sender.counts.retries == 10


def test_per_destination_transient_failures_are_retried_and_only_the_failed_destinations_are_resent(ses, tmp_path):
    records = [record(i) for i in range(6)]
    first = ["Success", "TransientFailure", "Success", "AccountThrottled", "Success", "Failed"]
    calls = Calls(ses, [(200, statuses_xml(first)), (200, statuses_xml(["Success", "TransientFailure", "Success"]))])
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line(records))
    emails = [r.email for r in records]
    assert calls.calls == [emails, [emails[1], emails[3], emails[5]], [emails[3]]]
    rows = jsonl(tmp_path / "deliveries.jsonl")
    assert sorted(r["recipient"] for r in rows) == sorted(emails)
    assert {r["recipient"]: r["attempts"] for r in rows}[emails[3]] == 3
    assert {r["recipient"]: r["message_id"] for r in rows}[emails[0]] == "m-0"


def test_permanent_failures_go_to_rejects_with_the_ses_status_and_message(ses, tmp_path):
    records = [record(i) for i in range(3)]
    calls = Calls(ses, [(200, statuses_xml(["Success", "MessageRejected", "Success"]))])
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line(records))
    assert len(calls.calls) == 1
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert len(rejects) == 1 and rejects[0]["status"] == "MessageRejected"
    assert rejects[0]["error"] == "MessageRejected happened" and rejects[0]["record"]["email"] == records[1].email
    assert records[1].secret not in (tmp_path / "rejects.jsonl").read_text()


def unfinished(out: Path) -> int:
    journal = Journal(out / "journal")
    try:
        return sum(len(r) for _, _, r in journal.recover())
    finally:
        journal.close()


def test_a_missing_template_stops_the_sender_writes_off_nothing_and_a_restart_after_the_fix_delivers_once(
    ses, tmp_path, caplog
):
    ses.delete_template(TemplateName="passwordrecoveryv1")
    records = [record(1), record(2, PASSWORD_RECOVERY), record(3, PASSWORD_RECOVERY)]
    sender = run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line(records), expect=EXIT_OPERATOR_FAULT)
    assert sender.fault is not None and sender.fault.code == "TemplateDoesNotExist"
    assert "mailroom templates push" in sender.fault.fix
    assert jsonl(tmp_path / "rejects.jsonl") == []
    assert [d["recipient"] for d in jsonl(tmp_path / "deliveries.jsonl")] == [records[0].email]
    assert unfinished(tmp_path) == 2
    faults = [m for m in caplog.messages if m.startswith("operator fault")]
    assert len(faults) == 1 and "TemplateDoesNotExist" in faults[0] and "mailroom templates push" in faults[0]

    ses.create_template(
        Template={"TemplateName": "passwordrecoveryv1", "SubjectPart": "s", "TextPart": "t", "HtmlPart": "h"}
    )
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), None)
    assert sorted(d["recipient"] for d in jsonl(tmp_path / "deliveries.jsonl")) == sorted(r.email for r in records)
    assert sorted(a for m in sent(ses) for d in m.destinations for a in d["Destination"]["ToAddresses"]) == sorted(
        r.email for r in records
    )
    assert jsonl(tmp_path / "rejects.jsonl") == [] and unfinished(tmp_path) == 0


@pytest.mark.parametrize(
    ("code", "message", "http", "fix"),
    [
        ("ConfigurationSetDoesNotExist", "Configuration set <default> does not exist.", 400, "MAILROOM_SES_CONFIG_SET"),
        ("MailFromDomainNotVerifiedException", "MAIL FROM domain not verified", 400, "MAIL FROM"),
        ("AccountSendingPausedException", "Account sending paused", 400, "paused"),
        ("ConfigurationSetSendingPausedException", "Configuration set sending paused", 400, "paused"),
        ("AccessDenied", "User is not authorized to perform ses:SendBulkTemplatedEmail", 403, "IAM"),
        ("InvalidClientTokenId", "The security token included in the request is invalid.", 403, "access key"),
        ("SignatureDoesNotMatch", "The request signature we calculated does not match", 403, "secret key"),
        ("ExpiredToken", "The security token included in the request is expired", 403, "expired"),
        ("UnrecognizedClientException", "The security token included in the request is invalid", 400, "access key"),
        (
            "MessageRejected",
            (
                "Email address is not verified. The following identities failed the check in region "
                f"US-EAST-1: {SES_SOURCE}"
            ),
            400,
            "verify noreply@example.com",
        ),
        ("BrandNewSesErrorCode", "something new", 400, "errors/"),
    ],
)
def test_operator_faults_stop_the_sender_and_write_off_nothing(ses, tmp_path, code, message, http, fix):
    calls = Calls(ses, [(http, error_xml(code, message))])
    records = [record(i) for i in range(4)]
    sender = run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line(records), expect=EXIT_OPERATOR_FAULT)
    assert len(calls.calls) == 1  # stopped at once: no retry, no split
    assert sender.fault is not None and sender.fault.code == code and fix in sender.fault.fix
    assert jsonl(tmp_path / "rejects.jsonl") == [] and jsonl(tmp_path / "deliveries.jsonl") == []
    assert unfinished(tmp_path) == 4
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), None)  # fixed: the journal replays, once
    assert sorted(d["recipient"] for d in jsonl(tmp_path / "deliveries.jsonl")) == sorted(r.email for r in records)


@pytest.mark.parametrize("status", ["TemplateDoesNotExist", "AccountSuspended", "SomethingNew"])
def test_a_destination_status_that_is_the_operators_fault_writes_off_nothing(ses, tmp_path, status):
    Calls(ses, [(200, statuses_xml(["Success", status, status]))])
    records = [record(i) for i in range(3)]
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line(records), expect=EXIT_OPERATOR_FAULT)
    assert jsonl(tmp_path / "rejects.jsonl") == []
    assert [d["recipient"] for d in jsonl(tmp_path / "deliveries.jsonl")] == [records[0].email]
    assert unfinished(tmp_path) == 2


class RefusesAddresses:
    """A before-send hook answering a whole call with SES's InvalidParameterValue while it
    holds one of `bad`; other calls go on to moto. Records every call's addresses."""

    def __init__(self, client: object, bad: set[str], message: str = "Missing final '@domain'") -> None:
        self.bad = bad
        self.message = message
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()
        client.meta.events.register_first("before-send.ses.SendBulkTemplatedEmail", self)  # type: ignore[attr-defined]

    def __call__(self, request: object, **_: object):
        got = addresses(request)
        with self.lock:
            self.calls.append(got)
        if self.bad & set(got):
            return AWSResponse(request.url, 400, {}, Raw(error_xml("InvalidParameterValue", self.message)))  # type: ignore[attr-defined]
        return None


def test_one_refused_address_in_100_costs_only_itself(ses, tmp_path):
    records = [record(i) for i in range(100)]
    bad = records[37].email
    hook = RefusesAddresses(ses, {bad})
    sender = run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line(records), max_send_rate=50.0)
    deliveries = jsonl(tmp_path / "deliveries.jsonl")
    delivered = [d["recipient"] for d in deliveries if d["status"] == "Success"]
    assert sorted(delivered) == sorted(r.email for r in records if r.email != bad)
    assert len(set(delivered)) == 99
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert [(r["recipient"], r["status"]) for r in rejects] == [(bad, "InvalidParameterValue")]
    assert rejects[0]["error"] == "Missing final '@domain'" and rejects[0]["token_ref"] == token_ref(records[37].secret)
    assert rejects[0]["action"] == "activation" and records[37].secret not in json.dumps(rejects)
    # 2 calls of 50, a probe, then halving 50 down to 1 (2 calls a level, 6 levels): bounded
    assert len(hook.calls) <= 2 + 1 + 2 * 6
    assert sender.counts.splits >= 1


def test_a_call_refused_whatever_the_recipient_is_an_operator_fault_not_a_write_off(ses, tmp_path):
    records = [record(i) for i in range(10)]
    hook = RefusesAddresses(ses, {r.email for r in records} | {SesProvider.probe_address}, "Illegal address")
    sender = run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line(records), expect=EXIT_OPERATOR_FAULT)
    assert hook.calls[-1] == [SesProvider.probe_address] and len(hook.calls) == 2
    assert sender.fault is not None and sender.fault.code == "InvalidParameterValue"
    assert jsonl(tmp_path / "rejects.jsonl") == [] and unfinished(tmp_path) == 10


def test_in_the_sandbox_only_the_unverified_recipients_named_by_ses_are_rejected(ses, tmp_path):
    records = [record(i) for i in range(6)]
    message = (
        "Email address is not verified. The following identities failed the check in region US-EAST-1: "
        f"{records[2].email}, {records[4].email}"
    )
    calls = Calls(ses, [(400, error_xml("MessageRejected", message))])
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line(records))
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert sorted(r["recipient"] for r in rejects) == [records[2].email, records[4].email]
    delivered = sorted(d["recipient"] for d in jsonl(tmp_path / "deliveries.jsonl") if d["status"] == "Success")
    assert delivered == sorted(r.email for i, r in enumerate(records) if i not in (2, 4))
    assert calls.calls[1] == [r.email for i, r in enumerate(records) if i not in (2, 4)]


def test_idn_domains_reach_ses_in_punycode_and_non_ascii_local_parts_never_reach_a_call(ses, tmp_path):
    idn = Record(ACTIVATION, "ada@bücher.example", "ada", record(1).secret, "00000")
    local = Record(ACTIVATION, "zoë@example.com", "zoë", record(2).secret, "00000")
    calls = Calls(ses, [])
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line([idn, local, record(3)]))
    assert sorted(a for c in calls.calls for a in c) == sorted(["ada@xn--bcher-kva.example", record(3).email])
    rows = {d["recipient"]: d for d in jsonl(tmp_path / "deliveries.jsonl")}
    assert rows["ada@bücher.example"]["sent_to"] == "ada@xn--bcher-kva.example"
    assert "sent_to" not in rows[record(3).email]
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert [r["recipient"] for r in rejects] == ["zoë@example.com"]
    assert "not 7-bit ASCII" in rejects[0]["reason"] and rejects[0]["status"] == "InvalidAddress"


def test_an_unexpected_error_in_a_call_stops_the_sender_without_writing_anything_off(tmp_path):
    class Broken(FakeProvider):
        def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
            raise RuntimeError("a bug")

    sender = run_sender(tmp_path, Broken(), encode_line([record(1)]), expect=EXIT_OPERATOR_FAULT)
    assert sender.fault is not None and sender.fault.code == "Internal"
    assert jsonl(tmp_path / "rejects.jsonl") == [] and unfinished(tmp_path) == 1


def test_daily_quota_exceeded_backs_off_for_long_instead_of_retrying_fast(ses, tmp_path):
    calls = Calls(ses, [(400, error_xml("Throttling", "Daily message quota exceeded."))] * 5)
    policy = RetryPolicy(Backoff(0.001, 0.01), quota_delay=120.0)
    run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line([record(1)]), policy=policy, deadline_s=30.0)
    assert len(calls.calls) == 1  # a fast retry would have called again within the 30 s deadline
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert rejects[0]["reason"] == "deadline passed while retrying" and rejects[0]["status"] == "Throttling"


def test_network_errors_are_retried(ses, tmp_path):
    import botocore.exceptions

    failures = [
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"),
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"),
    ]

    def hook(**_: object):
        if failures:
            raise failures.pop(0)

    ses.meta.events.register_first("before-send.ses.SendBulkTemplatedEmail", hook)
    sender = run_sender(tmp_path, SesProvider(ses, Outputs(tmp_path)), encode_line([record(1)]))
    assert sender.counts.retries == 2 and sender.counts.delivered == 1
    assert [d["status"] for d in jsonl(tmp_path / "deliveries.jsonl")] == ["Success"]


def test_records_past_the_deadline_are_not_sent(tmp_path):
    class Recording(FakeProvider):
        def __init__(self) -> None:
            self.sends: list[BulkSend] = []

        def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
            self.sends.append(send)
            return [DestinationResult("Success", "m")] * len(send.destinations)

    def clock() -> float:  # stdin is read "now"; the sending loop lives 11 minutes later
        return time.time() + (0 if threading.current_thread().name == "stdin" else 660)

    provider = Recording()
    run_sender(tmp_path, provider, encode_line([record(1), record(2)]), clock=clock)
    assert provider.sends == []
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert [r["reason"] for r in rejects] == ["deadline passed before it could be sent"] * 2


def test_a_retry_that_would_land_past_the_deadline_is_rejected_instead(tmp_path):
    class Transient(FakeProvider):
        calls = 0

        def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
            Transient.calls += 1
            return [DestinationResult("TransientFailure", None, "try later", Outcome.RETRY)] * len(send.destinations)

    policy = RetryPolicy(Backoff(5.0, 5.0))  # a full-jitter delay of up to 5 s...
    policy.rng.seed(1)  # ...drawn as about 0.67 s, over a 0.2 s deadline
    run_sender(tmp_path, Transient(), encode_line([record(1)]), policy=policy, deadline_s=0.2)
    assert Transient.calls == 1
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert rejects[0]["status"] == "TransientFailure" and rejects[0]["error"] == "try later"


def test_every_call_is_granted_by_the_rate_limiter_within_the_rate_in_every_window(tmp_path):
    # The limiter runs on a virtual clock that only its waits advance, so the windows are
    # checked on its own grant times: nothing depends on how threads are scheduled. (The
    # real-time rate is measured in bench/, not asserted here.)
    lock = threading.Lock()
    now = [0.0]

    def clock() -> float:
        with lock:
            return now[0]

    def sleep(seconds: float) -> None:
        with lock:
            now[0] += seconds

    grants: list[tuple[float, int]] = []
    sizes: list[int] = []

    class Recorded(RateLimiter):
        def acquire(self, n: int) -> float:
            granted = super().acquire(n)
            with lock:
                grants.append((granted, n))
            return granted

    class Recording(FakeProvider):
        def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
            with lock:
                sizes.append(len(send.destinations))
            return [DestinationResult("Success", "m")] * len(send.destinations)

    rate = 40
    run_sender(
        tmp_path,
        Recording(),
        encode_line([record(i) for i in range(130)]),
        max_send_rate=float(rate),
        concurrency=4,
        limiter=Recorded(rate, clock=clock, sleep=sleep),
    )
    assert sum(sizes) == 130 and max(sizes) <= rate
    assert sorted(n for _, n in grants) == sorted(sizes)  # each call was granted, for its size
    for start, _ in grants:
        assert sum(n for t, n in grants if start <= t < start + 1.0) <= rate
    assert now[0] >= (130 - rate) / rate  # it did wait: 130 emails at 40/s take 2.25 s of virtual time


def test_the_reader_stops_reading_while_the_sender_is_full(tmp_path):
    release = threading.Event()
    called = threading.Event()

    class Blocked(FakeProvider):
        def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
            called.set()
            release.wait(30)
            return [DestinationResult("Success", "m")] * len(send.destinations)

    data = b"".join(encode_line([record(i)]) for i in range(5000))  # ~600 KB, more than a pipe holds
    result: dict[str, Sender] = {}
    runner = threading.Thread(target=lambda: result.update(s=run_sender(tmp_path, Blocked(), data, max_pending=100)))
    runner.start()
    assert called.wait(10)
    runner.join(0.5)
    assert runner.is_alive()
    journal = "".join(p.read_text() for p in (tmp_path / "journal").glob("seg-*.jsonl"))
    assert journal.count('"k":"L"') < 1000  # it stopped reading well before the 5,000 lines
    release.set()
    runner.join(60)
    assert result["s"].counts.delivered == 5000
