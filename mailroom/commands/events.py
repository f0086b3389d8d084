"""`mailroom events`: record the SES events of an SQS queue in PostgreSQL, beside the pipeline.

A long-running loop: long-poll the queue, read each message (mailroom.ses_events), record its
event in one transaction (mailroom.recorder), and delete the message only after that commit.
Whatever fails between the commit and the delete makes SQS deliver the message again, which
records nothing twice (events are recorded once per event id). A message that is not an SES
event is logged with its id and left alone: SQS hands it out again after its visibility
timeout, and the queue's redrive policy moves it to the dead-letter queue after
maxReceiveCount receives. It never holds up the messages behind it.

Messages are handled in batches of up to 100 (a long-polling ReceiveMessage, then nine more
at once that do not wait when it came back full; SQS gives at most 10 per call): one
transaction and one statement per batch (redone with a savepoint per event when the database
refuses one event), then DeleteMessageBatch calls of 10, at once. SQS calls are made on threads
so that they overlap each other and the database: the next batch is received, and the last
one's messages deleted, while a batch is recorded. The database and SQS are reconnected with
the collector's backoff (mailroom.backoff); a failure that retrying cannot fix (no such
database or role, authentication, no such queue, access denied) exits 2. SIGTERM/SIGINT
finish the batch in hand (and the one received ahead) and exit 0.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import botocore.exceptions
import psycopg
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily

from mailroom import __version__, rates, settings, smtp_refusals
from mailroom.aws import checked_session
from mailroom.backoff import Backoff
from mailroom.checks import Check
from mailroom.db import connect, describe, first_line, permanent_failure
from mailroom.heartbeat import Heartbeat, Verdict
from mailroom.metrics_http import format_address, new_registry, serve
from mailroom.recorder import Recorded, TransientRule, record, record_many
from mailroom.ses_events import NotRecorded, SesEvent, Unparseable, parse

log = logging.getLogger("mailroom.events")

EVENTS_VARIABLES = settings.EVENTS_VARIABLES
RECONNECT_BACKOFF = Backoff(base=0.5, cap=30.0)  # the collector's
POLL_WAIT_S = 5  # SQS long poll; also the longest a stop signal waits for the call in hand
DRAIN_WAIT_S = 1
MAX_MESSAGES = 10  # SQS's most per ReceiveMessage and per DeleteMessageBatch
BATCH_MESSAGES = 100  # the most messages recorded in one transaction (one commit)
SQS_CALLS_AT_ONCE = 2 * BATCH_MESSAGES // MAX_MESSAGES  # a batch's receives and the previous batch's deletes
APPLICATION_NAME = "mailroom-events"

# SQS answers that retrying cannot fix: the configuration or the IAM policy must change.
FATAL_SQS_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAddress",
        "InvalidSecurity",
    }
)

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1


class SqsUnavailable(Exception):
    """SQS did not answer, or answered with something worth retrying."""


class SqsUnreachable(SqsUnavailable):
    """No connection to the SQS endpoint at all (refused, timed out, TLS): likely the wrong
    endpoint, said once with it (EventsConsumer.run)."""


class SqsFatal(Exception):
    """SQS answered that the queue or the credentials are wrong: retrying cannot help."""


class _Refused(Exception):
    """The database refused an event's values in a batch without savepoints: redo it with them."""


class Stop:
    """Set by SIGTERM/SIGINT; the loop looks at it between messages and batches."""

    def __init__(self) -> None:
        self.name: str | None = None
        self._event = threading.Event()

    def __bool__(self) -> bool:
        return self.name is not None

    def set(self, name: str = "request") -> None:
        self.name = self.name or name
        self._event.set()

    def sleep(self, seconds: float) -> None:
        self._event.wait(seconds)

    def install(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.set(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


class EventsStats:
    """The program's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = new_registry()
        r = self.registry
        self.messages = Counter(
            "mailroom_events_messages",
            "SQS messages handled, by outcome: recorded (new), duplicate (already recorded: a redelivery), "
            "not_recorded (Open, Click, an SNS confirmation: deleted), unparseable (left on the queue)",
            ["outcome"],
            registry=r,
        )
        self.events = Counter(
            "mailroom_events_recorded",
            "SES events recorded for the first time, by SES event type",
            ["type"],
            registry=r,
        )
        self.suppressions = Counter(
            "mailroom_events_suppressions", "Addresses suppressed by an event, by reason", ["reason"], registry=r
        )
        self.reconnects = Counter("mailroom_events_reconnects", "Reconnections to the database or SQS", registry=r)
        self.connected = Gauge("mailroom_events_connected", "1 while connected to the database and SQS", registry=r)
        self.heartbeat = Heartbeat()
        self.ready = False

    def readiness(self) -> Verdict:
        if self.ready:
            return True, "connected to the database and receiving from the queue"
        return False, "not connected to the database or the queue (see the log)"


class RatesCollector:
    """The bounce and complaint rates as gauges, read on scrape on a connection of their own
    (never the consumer's, which is in the middle of its transactions), at most every 30 s."""

    CACHE_S = 30.0

    def __init__(
        self, database_url: str, clock: Callable[[], float] = time.monotonic, schema: str = "mailroom"
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.clock = clock
        self._cached: tuple[float, list[rates.Rates]] | None = None
        self._lock = threading.Lock()

    def _rates(self) -> list[rates.Rates]:
        with self._lock:
            if self._cached is None or self.clock() - self._cached[0] > self.CACHE_S:
                with connect(
                    self.database_url, application_name="mailroom-events-metrics", connect_timeout=3, schema=self.schema
                ) as conn:
                    self._cached = (self.clock(), rates.read(conn))
            return self._cached[1]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            found = self._rates()
        except psycopg.Error as exc:
            log.warning("metrics: cannot read the rates: %s", first_line(exc))
            return
        families = {
            name: GaugeMetricFamily(f"mailroom_events_{name}", text, labels=["window"])
            for name, text in (
                ("bounce_rate", "Permanent bounces over messages sent (SES reviews at 0.05, may pause at 0.10)"),
                ("complaint_rate", "Complaints over messages sent (SES reviews at 0.001, may pause at 0.005)"),
                ("sent", "Messages sent (Send events, or deliveries plus bounces when more)"),
            )
        }
        for r in found:
            families["bounce_rate"].add_metric([r.window], r.bounce_rate or 0.0)
            families["complaint_rate"].add_metric([r.window], r.complaint_rate or 0.0)
            families["sent"].add_metric([r.window], r.base)
        yield from families.values()


class EventsConsumer:
    def __init__(
        self, config: settings.EventsSettings, sqs: Any, stop: Stop, stats: EventsStats, *, drain: bool = False
    ) -> None:
        self.config = config
        self.sqs = sqs
        self.stop = stop
        self.stats = stats
        self.drain = drain
        self.rule = TransientRule(config.transient_limit, config.transient_window_s)
        self.where = describe(config.database_url)
        self.attempt = 0
        self.unreachable_told = False  # the unreachable endpoint is said once, until SQS answers
        # SQS calls made at the same time: the receives after a full one, and a batch's
        # deletes while the next batch is received. Each waits on the network most of its
        # time, so they overlap even under the GIL.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=SQS_CALLS_AT_ONCE, thread_name_prefix="sqs")
        # The next batch, received ahead on a thread of its own (its receives after the first
        # go through `pool`), while the current one is recorded; a failure is raised in the loop.
        self.receiver = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqs-ahead")
        self.ahead: Future[list[dict[str, Any]]] | None = None
        self.deleting: list[tuple[list[dict[str, Any]], Future[dict[str, Any]]]] = []  # _delete_later's calls

    def run(self) -> int:
        """Run until stopped (or, with drain, until the queue has nothing visible); the exit status."""
        try:
            return self._run()
        finally:
            self.receiver.shutdown()
            self.pool.shutdown()

    def _run(self) -> int:
        while not self.stop:
            conn: psycopg.Connection | None = None
            try:
                conn = connect(self.config.database_url, application_name=APPLICATION_NAME, schema=self.config.schema)
                self._check_queue()
                self.unreachable_told = False
                self.stats.ready = True
                self.stats.connected.set(1)
                log.info(
                    "ready: connected to %s%s, receiving from %s",
                    self.where,
                    f" after {self.attempt} failed attempts" if self.attempt else "",
                    self.config.queue_url,
                )
                status = self._consume(conn)
                if status is not None:
                    return status
            except psycopg.OperationalError as exc:
                if self.stop:
                    break
                if (reason := permanent_failure(exc)) is not None:
                    log.error(
                        "cannot connect to %s: %s (%s); retrying cannot fix this: check MAILROOM_DATABASE_URL",
                        self.where,
                        reason,
                        first_line(exc),
                    )
                    return settings.CONFIG_EXIT_STATUS
                log.warning("database connection failed (%s): %s", self.where, first_line(exc))
            except SqsFatal as exc:
                log.error("%s; retrying cannot fix this: check MAILROOM_EVENTS_QUEUE_URL and the IAM policy", exc)
                return settings.CONFIG_EXIT_STATUS
            except SqsUnreachable as exc:
                if self.unreachable_told:
                    log.debug("SQS still unreachable: %s", exc)
                else:
                    self.unreachable_told = True
                    log.warning(
                        "cannot reach SQS at %s: %s; check AWS_ENDPOINT_URL_SQS (an emulator's or VPC endpoint's "
                        "address; unset, the endpoint of AWS_REGION) and the network. Retrying with backoff; "
                        "said once until SQS answers",
                        self.sqs.meta.endpoint_url,
                        exc,
                    )
            except SqsUnavailable as exc:
                log.warning("SQS failed: %s", exc)
            except psycopg.Error as exc:
                log.error(
                    "database error on %s: %s (is the schema migrated? run `mailroom migrate`)",
                    self.where,
                    first_line(exc),
                )
                return EXIT_FAILURE
            finally:
                self.stats.ready = False
                self.stats.connected.set(0)
                if conn is not None:
                    conn.close()
            if self.stop:
                break
            delay = RECONNECT_BACKOFF.delay(self.attempt)
            self.attempt += 1
            self.stats.reconnects.inc()
            self.stats.heartbeat.beat()
            log.info("reconnecting: attempt %d in %.2f s", self.attempt, delay)
            self.stop.sleep(delay)
        log.info("stopped by %s", self.stop.name or "request")
        return EXIT_OK

    def _consume(self, conn: psycopg.Connection) -> int | None:
        while True:
            self.stats.heartbeat.beat()
            if self.ahead is not None:  # received while the previous batch was recorded
                ahead, self.ahead = self.ahead, None
                messages = ahead.result()
            elif self.stop:
                break
            else:
                messages = self._receive_batch()
            if not messages:
                if self.drain:
                    self._finish_deletes()
                    log.info("drained: the queue has no visible message")
                    return EXIT_OK
                continue
            # Receive the next batch while this one is recorded: SQS's answers and the
            # database's overlap. Once stopped, nothing more is received; what was received
            # ahead is still recorded (the batch in hand) before the loop ends.
            if not self.stop:
                self.ahead = self.receiver.submit(self._receive_batch)
            # One transaction per batch: one statement and one commit (one WAL flush) serve
            # up to BATCH_MESSAGES events. When the database refuses one event's values, the
            # batch is rolled back and done again with a savepoint per event, so that only
            # that event is left out; either way an event is recorded whole or not at all.
            # The messages are deleted only after the commit, and the metrics count (and the
            # log tells) only what it committed: each pass collects them in `counted`, run
            # once, for the pass that stands.
            try:
                handled, counted = self._batch(conn, messages, careful=False)
            except _Refused:
                handled, counted = self._batch(conn, messages, careful=True)
            for count in counted:
                count()
            self._finish_deletes()
            self.deleting = self._delete_later(handled)
            self.attempt = 0
        self._finish_deletes()
        return None

    def _batch(
        self, conn: psycopg.Connection, messages: list[dict[str, Any]], *, careful: bool
    ) -> tuple[list[dict[str, Any]], list[Callable[[], None]]]:
        """Record the events of `messages` in one transaction: the messages done with (delete
        them once it is committed) and what to count then. Not `careful`: all in one statement
        (mailroom.recorder.record_many), and a value the database refuses raises _Refused
        (redo the batch); `careful`: a savepoint per event, and a refused one is left on the
        queue like an unparseable message."""
        handled: list[dict[str, Any]] = []
        counted: list[Callable[[], None]] = []
        events: list[tuple[dict[str, Any], SesEvent]] = []
        for message in messages:
            if (event := self._parse(message, handled, counted)) is not None:
                events.append((message, event))
        with conn.transaction():
            if careful:
                done: list[Recorded | None] = []
                for message, event in events:
                    try:
                        done.append(record(conn, event, self.rule))
                    except (psycopg.DataError, psycopg.IntegrityError) as exc:  # this event's values
                        why = f"the database refused its values: {first_line(exc)}"
                        counted.append(functools.partial(self._unparseable, message, why))
                        done.append(None)
            else:
                try:
                    done = list(record_many(conn, [event for _, event in events], self.rule))
                except (psycopg.DataError, psycopg.IntegrityError) as exc:  # an event's values, not the database
                    raise _Refused from exc
        for (message, event), recorded in zip(events, done, strict=True):
            if recorded is not None:
                self._count(message, event, recorded, counted)
                handled.append(message)
        return handled, counted

    def _parse(
        self, message: dict[str, Any], handled: list[dict[str, Any]], counted: list[Callable[[], None]]
    ) -> SesEvent | None:
        """The message's event, or None: then it is either done with (Open, Click, an SNS
        confirmation: appended to `handled`, to be deleted) or unparseable (left on the queue)."""
        try:
            return parse(message.get("Body", ""))
        except NotRecorded as exc:
            counted.append(self.stats.messages.labels("not_recorded").inc)
            log.debug("message %s: %s, not recorded: deleted", message.get("MessageId", "?"), exc)
            handled.append(message)
            return None
        except Unparseable as exc:
            counted.append(functools.partial(self._unparseable, message, str(exc)))
            return None

    def _count(
        self, message: dict[str, Any], event: SesEvent, done: Recorded, counted: list[Callable[[], None]]
    ) -> None:
        """What to count and log of a recorded event, once its batch is committed."""
        message_id = message.get("MessageId", "?")
        counted.append(self.stats.messages.labels("recorded" if done.new else "duplicate").inc)
        if done.new:
            counted.append(self.stats.events.labels(event.event_type).inc)
        reason = "complaint" if event.event_type == "Complaint" else "bounce"
        for address in done.suppressed:
            counted.append(self.stats.suppressions.labels(reason).inc)
            counted.append(
                functools.partial(
                    log.info,
                    "suppressed %s: %s %s (%s)",
                    address,
                    event.event_type,
                    event.bounce_type or "",
                    event.event_id,
                )
            )
        for address in done.not_addresses:
            counted.append(
                functools.partial(
                    log.warning,
                    "message %s: %s event for %r, which is not an address: skipped",
                    message_id,
                    event.event_type,
                    address,
                )
            )
        log.debug(
            "message %s: %s %s, %d new, %d already recorded",
            message_id,
            event.event_type,
            event.event_id,
            done.new,
            done.duplicates,
        )

    def _unparseable(self, message: dict[str, Any], why: str) -> None:
        """Count and log a message left on the queue: called once its batch is committed (a
        batch redone with savepoints would otherwise count it twice)."""
        self.stats.messages.labels("unparseable").inc()
        received = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        log.warning(
            "message %s (received %s times) is not an SES event mailroom can record: %s; "
            "left on the queue for its redrive policy",
            message.get("MessageId", "?"),
            received,
            why,
        )

    def _check_queue(self) -> None:
        attributes = self._sqs("GetQueueAttributes", AttributeNames=["RedrivePolicy"]).get("Attributes", {})
        if "RedrivePolicy" not in attributes:
            log.warning(
                "the queue has no redrive policy: a message mailroom cannot read is received again and again; "
                "give it a dead-letter queue (see the how-to on bounces)"
            )

    def _receive_batch(self) -> list[dict[str, Any]]:
        """Up to BATCH_MESSAGES messages for one transaction: a long poll and, when it comes
        back full (the queue has more at once), the rest in receives that do not wait, all
        at once (SQS gives at most MAX_MESSAGES per call)."""
        messages = self._receive(DRAIN_WAIT_S if self.drain else POLL_WAIT_S)
        if len(messages) == MAX_MESSAGES and not self.stop:
            for more in self._at_once([functools.partial(self._receive, 0)] * (BATCH_MESSAGES // MAX_MESSAGES - 1)):
                messages += more
        return messages

    def _receive(self, wait_s: int) -> list[dict[str, Any]]:
        answer = self._sqs(
            "ReceiveMessage",
            MaxNumberOfMessages=MAX_MESSAGES,
            WaitTimeSeconds=wait_s,
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def _delete_later(
        self, messages: list[dict[str, Any]]
    ) -> list[tuple[list[dict[str, Any]], Future[dict[str, Any]]]]:
        """Start deleting the messages of a committed batch: MAX_MESSAGES per call (SQS's
        most), the calls at once, while the next batch is received (_finish_deletes waits)."""
        chunks = [messages[i : i + MAX_MESSAGES] for i in range(0, len(messages), MAX_MESSAGES)]
        return [(chunk, self.pool.submit(self._delete_chunk, chunk)) for chunk in chunks]

    def _finish_deletes(self) -> None:
        """Wait for the deletes started by _delete_later. What was not deleted is recorded
        already, and its redelivery changes nothing: a failure is logged, and only one that
        retrying cannot fix (the IAM policy lacks sqs:DeleteMessage) is raised."""
        deleting, self.deleting = self.deleting, []
        concurrent.futures.wait([future for _, future in deleting])
        for chunk, future in deleting:
            try:
                answer = future.result()
            except SqsUnavailable as exc:
                log.warning("could not delete %d recorded message(s): %s", len(chunk), exc)
                continue
            for failure in answer.get("Failed", []):
                log.warning(
                    "could not delete message %s: %s",
                    chunk[int(failure.get("Id", 0))].get("MessageId", "?"),
                    failure.get("Message", failure),
                )

    def _delete_chunk(self, chunk: list[dict[str, Any]]) -> dict[str, Any]:
        return self._sqs(
            "DeleteMessageBatch",
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )

    def _at_once(self, calls: list[Callable[[], T]]) -> list[T]:
        """The answers of SQS calls made at the same time, in their order; when some fail, the
        first failure, raised once all are done (none is left running)."""
        if len(calls) <= 1:
            return [call() for call in calls]
        futures = [self.pool.submit(call) for call in calls]
        concurrent.futures.wait(futures)
        return [future.result() for future in futures]

    def _sqs(self, operation: str, **params: Any) -> dict[str, Any]:
        method = {
            "GetQueueAttributes": self.sqs.get_queue_attributes,
            "ReceiveMessage": self.sqs.receive_message,
            "DeleteMessageBatch": self.sqs.delete_message_batch,
        }[operation]
        try:
            answer: dict[str, Any] = method(QueueUrl=self.config.queue_url, **params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, text = error.get("Code", "?"), error.get("Message", "")
            message = f"SQS {operation} on {self.config.queue_url}: {code}: {text}"
            if code in FATAL_SQS_CODES:
                raise SqsFatal(message) from None
            raise SqsUnavailable(message) from None
        except botocore.exceptions.ConnectionError as exc:
            raise SqsUnreachable(f"SQS {operation} on {self.config.queue_url}: {exc}") from None
        except BotoCoreError as exc:
            raise SqsUnavailable(f"SQS {operation} on {self.config.queue_url}: {exc}") from None
        return answer


def queue_checks(environ: Mapping[str, str]) -> list[Check]:
    """`mailroom check`'s line for the events queue, when MAILROOM_EVENTS_QUEUE_URL is set: is it
    reachable with these credentials (sqs:GetQueueAttributes), and does it have a dead-letter queue?"""
    name = "events queue"
    try:
        url = settings.read(environ, "MAILROOM_EVENTS_QUEUE_URL")["MAILROOM_EVENTS_QUEUE_URL"]
        if not url:
            return []
        sqs = make_sqs_client()
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "RedrivePolicy"]
        ).get("Attributes", {})
    except settings.ConfigError as exc:
        return [Check(name, False, str(exc), f"set {exc.name}")]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return [
            Check(
                name,
                False,
                f"SQS answered {error.get('Code', '?')}: {error.get('Message', '')}",
                "check MAILROOM_EVENTS_QUEUE_URL and that the IAM policy allows sqs:GetQueueAttributes, "
                "sqs:ReceiveMessage and sqs:DeleteMessage on it",
            )
        ]
    except BotoCoreError as exc:
        return [
            Check(
                name,
                False,
                f"SQS could not be reached: {exc}",
                "check AWS_ENDPOINT_URL_SQS, AWS_REGION and the network",
            )
        ]
    waiting = attributes.get("ApproximateNumberOfMessages", "?")
    if "RedrivePolicy" not in attributes:
        return [
            Check(
                name,
                False,
                f"reachable, {waiting} message(s) waiting, but no redrive policy",
                "give the queue a dead-letter queue: a message mailroom cannot read would come back forever",
            )
        ]
    return [Check(name, True, f"reachable, {waiting} message(s) waiting, with a dead-letter queue")]


def make_sqs_client() -> Any:
    """An SQS client from boto3's standard chain (AWS_ENDPOINT_URL_SQS points it at an emulator)."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=5,
        read_timeout=POLL_WAIT_S + 15,
        max_pool_connections=SQS_CALLS_AT_ONCE + 1,  # and the receive ahead (EventsConsumer.receiver)
    )
    return checked_session(hint="").client("sqs", config=config)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--drain",
        action="store_true",
        help="record what the queue holds now, then exit 0 (when a receive finds no visible message)",
    )
    parser.add_argument(
        "--from-rejects",
        type=Path,
        metavar="PATH",
        help="instead of SQS: record the SMTP 5xx refusals of the sender's rejects.jsonl as bounces "
        "(permanent for a mailbox status such as 5.1.1, suppressing the address; transient for a full "
        "mailbox, 5.2.2), then exit; reading a file again records nothing twice",
    )


def from_rejects(config: settings.EventsSettings, path: Path) -> int:
    """`--from-rejects PATH`: exit 0, or 1 when some lines are not JSON (the rest is recorded)."""
    try:
        found = smtp_refusals.read_rejects(path)
    except OSError as exc:
        print(f"mailroom events: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    rule = TransientRule(config.transient_limit, config.transient_window_s)
    new = again = 0
    suppressed: list[str] = []
    with connect(config.database_url, application_name=APPLICATION_NAME, schema=config.schema) as conn:
        for event in found.events:
            done = record(conn, event, rule)
            new += done.new
            again += done.duplicates
            suppressed += done.suppressed
    for number in found.unreadable:
        print(f"mailroom events: {path}:{number}: not a JSON object: skipped", file=sys.stderr)
    print(
        f"{path}: {len(found.events)} SMTP mailbox refusal(s): {new} recorded now, {again} already recorded; "
        f"{len(suppressed)} address(es) suppressed; {found.skipped} other row(s) skipped"
    )
    return EXIT_FAILURE if found.unreadable else EXIT_OK


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.from_rejects is not None:
        return from_rejects(settings.EventsSettings.from_environ(environ, need_queue=False), args.from_rejects)
    config = settings.EventsSettings.from_environ(environ)
    sqs = make_sqs_client()
    stats = EventsStats()
    if config.metrics_addr is not None:
        stats.registry.register(RatesCollector(config.database_url, schema=config.schema))
        try:
            server = serve(config.metrics_addr, stats.registry, stats.heartbeat.verdict, stats.readiness)
        except OSError as exc:
            raise settings.ConfigError(
                "MAILROOM_EVENTS_METRICS_ADDR", f"cannot listen on {format_address(config.metrics_addr)}: {exc}"
            ) from None
        log.info("metrics on http://%s/metrics", format_address(server.address))
    log.info(
        "mailroom events %s: queue %s; transient bounces suppress at %d within %g s",
        __version__,
        config.queue_url,
        config.transient_limit,
        config.transient_window_s,
    )
    stop = Stop()
    stop.install()
    return EventsConsumer(config, sqs, stop, stats, drain=args.drain).run()
