"""`mailroom events` run as a subprocess against the real PostgreSQL and moto_server's SQS:
messages recorded and deleted after the commit, a redelivery and an unparseable message, a
connection lost in the middle of a batch (of one receive and of several), SIGTERM, the probes,
an unreachable endpoint, configuration errors."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from collector_helpers import CollectorProcess
from conftest import FAKE_AWS_ENV, _free_port, script

from mailroom.ses_events import TAG_ACTION, TAG_TOKEN_REF
from mailroom.signing import secret_ref

DATA = Path(__file__).resolve().parents[1] / "data" / "ses_events"
SNS_ENVELOPE = json.loads((DATA / "sns-envelope.json").read_text())


@pytest.fixture
def sqs(moto_server: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=moto_server,
        region_name=FAKE_AWS_ENV["AWS_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def queue_url(sqs: Any) -> str:
    """An events queue with a dead-letter queue (redrive after 5 receives) and a short
    visibility timeout, so that what was not deleted comes back quickly."""
    dlq = sqs.create_queue(QueueName="mailroom-events-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return str(
        sqs.create_queue(
            QueueName="mailroom-events",
            Attributes={
                "VisibilityTimeout": "2",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            },
        )["QueueUrl"]
    )


@pytest.fixture
def env(base_env: dict[str, str], database_url: str, moto_server: str, queue_url: str) -> dict[str, str]:
    return {
        **base_env,
        **FAKE_AWS_ENV,
        "AWS_ENDPOINT_URL_SQS": moto_server,
        "MAILROOM_DATABASE_URL": database_url,
        "MAILROOM_EVENTS_QUEUE_URL": queue_url,
    }


@pytest.fixture
def events_process(env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    started: list[CollectorProcess] = []

    def start(*args: str, **overrides: str) -> CollectorProcess:
        log_path = tmp_path / f"events{len(started)}.log"
        proc = CollectorProcess(script("mailroom"), {**env, **overrides}, log_path, "events", *args, read_stdout=False)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def _tokens(db: psycopg.Connection, count: int) -> list[tuple[str, str]]:
    db.execute(
        "INSERT INTO accounts (email, login, status) "
        "SELECT 'user' || i || '@example.com', 'user' || i, 'active' FROM generate_series(1, %s) i",
        (count,),
    )
    db.execute("INSERT INTO tokens (account, action) SELECT id, 'password_recovery' FROM accounts")
    rows = db.execute("SELECT a.email, t.secret FROM tokens t JOIN accounts a ON a.id = t.account ORDER BY a.id")
    return [(email, secret_ref(bytes(secret))) for email, secret in rows.fetchall()]


def _record(kind: str, address: str, message_id: str, token_ref: str | None = None, **bounce: str) -> dict[str, Any]:
    """The documented event-publishing record of `kind`, about `address`."""
    record: dict[str, Any] = json.loads((DATA / f"publishing-{kind}.json").read_text())
    record["mail"]["messageId"], record["mail"]["destination"] = message_id, [address]
    if token_ref:
        record["mail"]["tags"] |= {TAG_TOKEN_REF: [token_ref], TAG_ACTION: ["password_recovery"]}
    if kind == "bounce":
        record["bounce"]["bouncedRecipients"][0]["emailAddress"] = address
        record["bounce"]["feedbackId"] = "fb-" + message_id
        record["bounce"] |= bounce
    if kind == "delivery":
        record["delivery"]["recipients"] = [address]
    return record


def _sns(record: dict[str, Any]) -> str:
    return json.dumps({**SNS_ENVELOPE, "Message": json.dumps(record)})


def _send(sqs: Any, queue_url: str, body: str) -> str:
    return str(sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"])


def _messages_left(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_events_are_recorded_their_messages_deleted_and_an_unparseable_one_left_for_the_redrive_policy(
    db: psycopg.Connection, sqs: Any, queue_url: str, events_process: Any
) -> None:
    (bounced, bounced_ref), (delivered, delivered_ref) = _tokens(db, 2)
    bounce = _sns(_record("bounce", bounced, "m-bounce", bounced_ref))
    _send(sqs, queue_url, bounce)
    _send(sqs, queue_url, bounce)  # SNS delivered it twice
    _send(sqs, queue_url, json.dumps(_record("delivery", delivered, "m-delivery", delivered_ref)))  # raw delivery
    opened = _record("send", delivered, "m-open")
    opened["eventType"] = "Open"
    _send(sqs, queue_url, _sns(opened))
    garbage = _send(sqs, queue_url, "this is not an SES event")
    # Parseable, but PostgreSQL text cannot hold U+0000: refused by the database, in the same
    # batch as the others, and only that event is rolled back (its savepoint).
    refused = _send(sqs, queue_url, _sns(_record("bounce", "nul\u0000@example.com", "m-nul")))
    proc = events_process("--drain")
    assert proc.wait(timeout=60) == 0, proc.log()
    log = proc.log()
    assert f"message {garbage} (received 1 times) is not an SES event mailroom can record" in log
    assert "left on the queue for its redrive policy" in log
    assert db.execute("SELECT address, reason, diagnostic FROM suppressions").fetchall() == [
        (bounced, "bounce", "smtp; 550 5.1.1 user unknown")
    ]
    statuses = dict(db.execute("SELECT token_ref, status FROM token_deliveries").fetchall())
    assert statuses == {bounced_ref: "bounced", delivered_ref: "delivered"}
    assert f"message {refused} (received 1 times) is not an SES event mailroom can record: the database refused" in log
    assert db.execute("SELECT count(*) FROM delivery_events").fetchone() == (2,)
    assert _messages_left(sqs, queue_url) == 2  # the garbage and the refused one, for the dead-letter queue


def test_a_batch_redone_with_savepoints_counts_and_logs_its_unparseable_message_once(
    db: psycopg.Connection, sqs: Any, events_process: Any
) -> None:
    # A queue that keeps what is left on it invisible for a minute: nothing is received twice
    # during the test, so every count below is of one receive.
    queue = sqs.create_queue(QueueName="mailroom-events-slow", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    [(email, ref)] = _tokens(db, 1)
    garbage = _send(sqs, queue, "this is not an SES event")
    _send(sqs, queue, _sns(_record("delivery", email, "m-ok", ref)))
    # refused by the database (U+0000): the batch is rolled back and redone with savepoints
    refused = _send(sqs, queue, _sns(_record("bounce", "nul\u0000@example.com", "m-nul")))
    port = _free_port()
    proc = events_process(MAILROOM_EVENTS_QUEUE_URL=queue, MAILROOM_EVENTS_METRICS_ADDR=f"127.0.0.1:{port}")
    proc.wait_for_log(f"message {refused} (received 1 times) is not an SES event mailroom can record")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, proc.log()
    assert proc.log().count(f"message {garbage} (received 1 times)") == 1, proc.log()
    assert 'mailroom_events_messages_total{outcome="unparseable"} 2.0' in metrics  # the garbage and the refused
    assert 'mailroom_events_messages_total{outcome="recorded"} 1.0' in metrics
    assert db.execute("SELECT status FROM token_deliveries").fetchall() == [("delivered",)]


def test_a_connection_lost_in_the_middle_of_a_batch_loses_nothing_and_counts_nothing_twice(
    db: psycopg.Connection, sqs: Any, queue_url: str, events_process: Any
) -> None:
    tokens = _tokens(db, 8)
    # The 5th insert into delivery_events kills its own backend: a database restart, as the
    # program sees it, in the middle of a batch (a sequence is not rolled back with it).
    db.execute(
        "CREATE SEQUENCE chaos;"
        "CREATE FUNCTION chaos() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "  IF nextval('chaos') = 5 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; "
        "END $$;"
        "CREATE TRIGGER chaos BEFORE INSERT ON delivery_events FOR EACH ROW EXECUTE FUNCTION chaos()"
    )
    for i, (email, ref) in enumerate(tokens):
        _send(sqs, queue_url, _sns(_record("delivery", email, f"m{i}", ref)))
    # Two transient bounces of one address, each delivered twice: counted twice, they would
    # reach the limit of 3 and suppress it.
    for n in (1, 2):
        body = _sns(_record("bounce", "full@example.com", f"t{n}", bounceType="Transient", bounceSubType="MailboxFull"))
        _send(sqs, queue_url, body)
        _send(sqs, queue_url, body)
    proc = events_process()
    proc.wait_for_log("database connection failed", timeout=30)
    deadline = time.monotonic() + 60
    while db.execute("SELECT count(*) FROM delivery_events").fetchone() != (10,) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.wait_for_log("ready:", count=2, timeout=30)
    while _messages_left(sqs, queue_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.log()
    assert db.execute("SELECT count(*) FROM delivery_events").fetchone() == (10,)
    assert db.execute("SELECT count(*) FROM token_deliveries WHERE status = 'delivered'").fetchone() == (8,)
    assert db.execute("SELECT count(*) FROM suppressions").fetchone() == (0,)
    assert _messages_left(sqs, queue_url) == 0
    assert "reconnecting: attempt 1" in proc.log()


def test_the_messages_of_several_receives_are_recorded_in_one_transaction(
    db: psycopg.Connection, sqs: Any, queue_url: str, events_process: Any
) -> None:
    tokens = _tokens(db, 35)  # more than SQS hands out in one receive (10)
    for i, (email, ref) in enumerate(tokens):
        _send(sqs, queue_url, _sns(_record("delivery", email, f"m{i}", ref)))
    proc = events_process("--drain")
    assert proc.wait(timeout=60) == 0, proc.log()
    # Rows written by one transaction share its id (xmin): one commit for the 35 events.
    assert db.execute("SELECT count(*), count(DISTINCT xmin::text) FROM delivery_events").fetchone() == (35, 1)
    assert db.execute("SELECT count(*) FROM token_deliveries WHERE status = 'delivered'").fetchone() == (35,)
    assert _messages_left(sqs, queue_url) == 0


def test_a_database_restart_in_a_batch_of_several_receives_loses_nothing_and_counts_nothing_twice(
    db: psycopg.Connection, sqs: Any, queue_url: str, events_process: Any
) -> None:
    tokens = _tokens(db, 35)
    # The 25th row of the batch's statement kills its own backend: the program loses the
    # database between receiving some 40 messages (several receives) and committing them.
    db.execute(
        "CREATE SEQUENCE chaos;"
        "CREATE FUNCTION chaos() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "  IF nextval('chaos') = 25 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; "
        "END $$;"
        "CREATE TRIGGER chaos BEFORE INSERT ON delivery_events FOR EACH ROW EXECUTE FUNCTION chaos()"
    )
    for i, (email, ref) in enumerate(tokens):
        _send(sqs, queue_url, _sns(_record("delivery", email, f"m{i}", ref)))
    for n in (1, 2):  # each delivered twice: counted twice, they would reach the limit of 3
        body = _sns(_record("bounce", "full@example.com", f"t{n}", bounceType="Transient", bounceSubType="MailboxFull"))
        _send(sqs, queue_url, body)
        _send(sqs, queue_url, body)
    port = _free_port()
    proc = events_process(MAILROOM_EVENTS_METRICS_ADDR=f"127.0.0.1:{port}")
    proc.wait_for_log("database connection failed", timeout=30)
    proc.wait_for_log("ready:", count=2, timeout=30)
    deadline = time.monotonic() + 60
    while _messages_left(sqs, queue_url) and time.monotonic() < deadline:  # each message deleted once recorded
        time.sleep(0.1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.log()
    assert _messages_left(sqs, queue_url) == 0
    assert db.execute("SELECT count(*) FROM delivery_events").fetchone() == (37,)
    assert db.execute("SELECT count(*) FROM token_deliveries WHERE status = 'delivered'").fetchone() == (35,)
    assert db.execute("SELECT count(*) FROM suppressions").fetchone() == (0,)
    assert 'mailroom_events_messages_total{outcome="recorded"} 37.0' in metrics  # the rolled-back batch not counted
    assert 'mailroom_events_recorded_total{type="Delivery"} 35.0' in metrics


def test_an_unreachable_sqs_endpoint_is_said_once_with_the_endpoint_and_the_variable_to_check(
    env: dict[str, str], events_process: Any
) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    proc = events_process(AWS_ENDPOINT_URL_SQS=endpoint, MAILROOM_EVENTS_QUEUE_URL=f"{endpoint}/123456789012/q")
    log = proc.wait_for_log("reconnecting: attempt 3", timeout=30)
    told = [line for line in log.splitlines() if "cannot reach SQS" in line]
    assert len(told) == 1, log
    assert f"cannot reach SQS at {endpoint}: " in told[0] and "check AWS_ENDPOINT_URL_SQS" in told[0]
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, proc.log()


def test_sigterm_stops_it_with_status_0_and_the_probes_answer_while_it_runs(
    sqs: Any, queue_url: str, events_process: Any
) -> None:
    port = _free_port()
    proc = events_process(MAILROOM_EVENTS_METRICS_ADDR=f"127.0.0.1:{port}")
    proc.wait_for_log("ready:")
    _send(sqs, queue_url, "not an event")
    proc.wait_for_log("not an SES event mailroom can record")
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            assert answer.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    assert 'mailroom_events_messages_total{outcome="unparseable"} 1.0' in metrics
    assert "mailroom_events_connected 1.0" in metrics
    assert 'mailroom_events_bounce_rate{window="24h"} 0.0' in metrics  # nothing sent yet
    assert 'mailroom_events_complaint_rate{window="7d"} 0.0' in metrics
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert "stopped by SIGTERM" in proc.log()


def _run(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("mailroom"), "events", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_without_a_queue_url_it_exits_2_naming_the_variable(env: dict[str, str], tmp_path: Path) -> None:
    done = _run({**env, "MAILROOM_EVENTS_QUEUE_URL": ""}, tmp_path, "--drain")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        (
            "mailroom: invalid configuration: MAILROOM_EVENTS_QUEUE_URL: is required by `mailroom events`: the URL "
            "of the SQS queue SES events arrive on (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)"
        )
    ]


def test_a_queue_that_does_not_exist_exits_2(env: dict[str, str], tmp_path: Path, moto_server: str) -> None:
    done = _run({**env, "MAILROOM_EVENTS_QUEUE_URL": f"{moto_server}/123456789012/nope"}, tmp_path, "--drain")
    assert done.returncode == 2, done.stderr
    assert "retrying cannot fix this: check MAILROOM_EVENTS_QUEUE_URL and the IAM policy" in done.stderr


def _check_line(env: dict[str, str], tmp_path: Path) -> str:
    done = subprocess.run(
        [script("mailroom"), "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    [line] = [line for line in done.stdout.splitlines() if " events queue: " in line]
    return line


def test_mailroom_check_says_whether_the_events_queue_is_reachable_and_has_a_dead_letter_queue(
    env: dict[str, str], tmp_path: Path, sqs: Any, moto_server: str
) -> None:
    env = {**env, "MAILROOM_SECRET_KEY": "5f" * 32}
    assert _check_line(env, tmp_path) == "✓ events queue: reachable, 0 message(s) waiting, with a dead-letter queue"
    bare = sqs.create_queue(QueueName="no-dlq")["QueueUrl"]
    line = _check_line({**env, "MAILROOM_EVENTS_QUEUE_URL": bare}, tmp_path)
    assert line.startswith("✗ events queue: reachable, 0 message(s) waiting, but no redrive policy")
    gone = _check_line({**env, "MAILROOM_EVENTS_QUEUE_URL": f"{moto_server}/123456789012/nope"}, tmp_path)
    assert gone.startswith("✗ events queue: SQS answered ")
