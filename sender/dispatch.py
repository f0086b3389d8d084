"""The sending loop: records in, bulk calls out, every record finished exactly once.

One thread reads stdin (reader.py), journals each group of lines and hands it over; the
main thread owns all state: it groups ready records by action and locale (one template:
sender/catalog.py) into calls of at most
`batch_size` destinations, keeps at most `concurrency` calls in flight on a thread pool,
schedules retries of what failed and writes every outcome. What a provider's answer means
is decided in one table (retry.py); here each outcome is acted on:

- DELIVERED: deliveries.jsonl; RETRY/QUOTA: tried again after a backoff, until the deadline;
- REFUSED: rejects.jsonl, for that recipient only;
- ISOLATE: the call is split in halves until the refused address stands alone (a call of n
  costs at most 2n-1 calls; one culprit about 2*log2(n)). Only when the same parameters are
  known to work (a delivery of that action, or a probe to the SES mailbox simulator) is a
  lone failing address refused; otherwise it is an operator fault;
- OPERATOR: nothing is written off: sending stops, the records stay in the journal, and the
  sender exits with EXIT_OPERATOR_FAULT once the calls in flight are settled. A record of an
  action with no templates folder, where the provider renders (SMTP, debug), is one too.

A write to the journal or an output file that fails (a full disk) is an operator fault too:
reading and sending stop, the answers of the calls in flight are kept in memory and written
once more before the exit; what still cannot be written stays unfinished in the journal and
is sent again at the next start (duplicates, at most the calls in flight).

While the records in hand (ready, in flight, waiting to retry) reach `max_pending`, the
reader does not read: the pipe fills and the collector feels the back-pressure.
Scheduling uses the monotonic clock; only the time a record was read (kept in the journal,
and valid across restarts) is wall-clock time.
"""

from __future__ import annotations

import dataclasses
import errno
import heapq
import itertools
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailroom.redirect import Redirect, subject_prefix
from mailroom.signing import token_ref
from mailroom.templates import default_template_data, template_data
from mailroom.wire import Record, Rejected
from sender.catalog import Catalog, Choice, TemplatesFault
from sender.journal import Journal, RotationFailed
from sender.outputs import Outputs, delivery_row, reject_row, utc_now
from sender.provider import (
    PROBE_CODE,
    PROBE_LOGIN,
    PROBE_SECRET,
    BulkSend,
    CallFailed,
    Destination,
    DestinationResult,
    Provider,
    UnsendableAddress,
)
from sender.ratelimit import RateLimiter
from sender.reader import ChunkedLines, decoded_groups, reject_kind
from sender.retry import EXIT_OPERATOR_FAULT, Outcome, RetryPolicy, names, source_address

log = logging.getLogger("sender")
MAX_DESTINATIONS = 50  # SES's limit per SendBulkTemplatedEmail; a provider may take fewer (max_destinations)
DISK_FIX = (
    "free space on that filesystem (or give MAILROOM_SES_OUTPUT_PATH a larger volume), then restart the sender;"
    " unfinished records stay in the journal"
)
RETRY_LOG_EVERY_S = 30.0  # a retry's cause is logged at its first retry, then at most once in this many seconds


class RetryLog:
    """Which retries get a WARNING line: a cause's first, then at most one per `every` seconds per
    cause (the line says how many were not logged since), on the dispatcher's monotonic clock."""

    def __init__(self, every: float = RETRY_LOG_EVERY_S) -> None:
        self.every = every
        self._causes: dict[str, tuple[float, int]] = {}  # cause -> (logged at, retries not logged since)

    def due(self, cause: str, n: int, now: float) -> int | None:
        """None: stay quiet. Otherwise log now; the number of retries not logged before these n."""
        logged = self._causes.get(cause)
        if logged is not None and now - logged[0] < self.every:
            self._causes[cause] = (logged[0], logged[1] + n)
            return None
        self._causes[cause] = (now, 0)
        return logged[1] if logged is not None else 0


@dataclass(slots=True)
class Item:
    line_id: str
    index: int
    record: Record
    read_at: float  # wall clock, as journaled
    due: float = 0.0  # monotonic time past which it is no longer sent
    to: str = ""  # the address as it goes to the provider
    redirected: bool = False  # `to` is MAILROOM_REDIRECT_TO's address, not the recipient's
    attempts: int = 0
    last_error: str = ""
    choice: Choice | None = None  # its template (action, locale), set when admitted


@dataclass(frozen=True)
class SendConfig:
    templates: dict[str, str]  # SES template names by action name (1 and 2's settings; others `<name>v1`)
    source: str
    config_set: str
    app_url: str
    deadline_s: float
    concurrency: int
    max_send_rate: float | None  # None: not paced (debug mode: there is no provider to protect)
    debug: bool = False
    redirect: Redirect | None = None  # MAILROOM_REDIRECT_TO: every email to one address (staging)
    templates_dir: Path | None = None  # MAILROOM_TEMPLATES_DIR (None: the shipped templates)
    local_templates: bool = False  # the provider renders here (SMTP, debug): a missing folder is a fault

    def catalog(self) -> Catalog:
        return Catalog(
            self.templates, self.templates_dir, local=self.local_templates, redirect=self.redirect is not None
        )

    @property
    def batch_size(self) -> int:
        """At most 50 (SES), and never more than one second's worth of the rate limit."""
        if self.max_send_rate is None:
            return MAX_DESTINATIONS
        return max(1, min(MAX_DESTINATIONS, int(self.max_send_rate)))


@dataclass
class Counts:
    read: int = 0
    delivered: int = 0
    rejected: int = 0
    duplicates: int = 0
    retries: int = 0
    calls: int = 0
    splits: int = 0
    recovered: int = 0
    # (outcome class, action) -> records, for the metrics: delivered, retried, recipient_refused,
    # operator_fault, deadline_passed, duplicate_skipped (updated by the main thread only)
    outcomes: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    # reject_kind(reason) -> input lines or records rejected at parse, once their rows are on
    # disk (updated by the reader thread only; not in `rejected`, which the main thread owns)
    input_rejected: Counter[str] = dataclasses.field(default_factory=Counter)


@dataclass(frozen=True)
class Fault:
    """The operator fault that stopped the sender."""

    code: str
    message: str
    fix: str


class Sender:
    def __init__(
        self,
        config: SendConfig,
        provider: Provider,
        outputs: Outputs,
        journal: Journal,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
        max_pending: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.provider = provider
        self.outputs = outputs
        self.journal = journal
        self.policy = policy or RetryPolicy()
        self.limiter = limiter or (RateLimiter(config.max_send_rate) if config.max_send_rate is not None else None)
        self.clock = clock
        self.monotonic = monotonic
        self.batch_size = self._call_size()
        self.max_pending = max_pending or max(200, config.concurrency * config.batch_size * 2)
        self.default_data = default_template_data(config.app_url)
        self.counts = Counts()
        self.fault: Fault | None = None
        self.loop_turned_at: float | None = None  # time.monotonic() of the main loop's last turn (/healthz)
        # (destinations, seconds waiting for the rate limiter, seconds in the call, result): the metrics
        self.observe_call: Callable[[int, float, float, str], None] | None = None
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.catalog = config.catalog()
        self._ready: dict[Choice, deque[Item]] = {}  # by template (action and locale)
        self._forced: deque[tuple[Choice, list[Item]]] = deque()  # halves of split calls, sent first
        self._known_good: set[Choice] = set()  # a call of this template delivered: its parameters work
        self._retries: list[tuple[float, int, Item]] = []
        self._seq = itertools.count()
        self._inflight: set[Future[Any]] = set()
        self._in_hand_secrets: dict[str, int] = {}
        self._pending = 0
        self._room = threading.Condition()
        self._stopping = threading.Event()
        self._eof = False
        self._pool: ThreadPoolExecutor | None = None
        self.failed = False
        self._retry_log = RetryLog()
        self.write_error: OSError | None = None  # the first failed write of the journal or outputs
        # writes of answers already received, held back after a write failed, in order, tried once
        # more before the exit: (write, records it marks finished in the journal, of them delivered)
        self._unwritten: deque[tuple[Callable[[], None], int, int]] = deque()

    # -- control ------------------------------------------------------------------------
    def set_send_rate(self, rate: float) -> None:
        """Pace at `rate` emails/s (the account's quota, learnt at preflight, before anything is sent)."""
        self.config = dataclasses.replace(self.config, max_send_rate=rate)
        self.limiter = RateLimiter(rate)
        self.batch_size = self._call_size()

    def _call_size(self) -> int:
        """Destinations per call: the config's, and no more than the provider takes in one call (SMTP:
        one, so each message's result is journaled as soon as the server answered it)."""
        return max(1, min(self.config.batch_size, getattr(self.provider, "max_destinations", MAX_DESTINATIONS)))

    @property
    def in_hand(self) -> int:
        """Records read and not finished (the bound the reader waits on)."""
        return self._pending

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop reading and sending; finish the calls in flight (signal-handler safe)."""
        self._stopping.set()
        self._events.put(("stop",))

    # -- reader thread --------------------------------------------------------------------
    def _before_read(self) -> bool:
        with self._room:
            while self._pending >= self.max_pending and not self._stopping.is_set():
                self._room.wait(0.5)
        return not self._stopping.is_set()

    def _read(self, fd: int) -> None:
        try:
            src = ChunkedLines(fd, self._before_read)
            for group in decoded_groups(src):
                now = self.clock()
                rejects = [r for line in group for r in line.rejects]
                lines = [(self.journal.new_line_id(), now, line.records) for line in group if line.records]
                try:
                    if rejects:
                        self._reject_input(rejects)  # with fsync
                    if lines:
                        self.journal.append_lines(lines)  # with fsync
                except OSError as exc:  # a full disk: these lines stay in the pipe, unacknowledged
                    self._events.put(("write_failed", exc))
                    return
                src.ack()  # only now do these lines leave the pipe
                if not lines:
                    continue
                with self._room:
                    self._pending += sum(len(r) for _, _, r in lines)
                self._events.put(("lines", lines))
        except Exception:  # e.g. the journal's disk is full: stop taking input, exit non-zero
            log.exception("reading stdin failed; no further input is taken")
            self.failed = True
        finally:
            self._events.put(("eof",))

    def _reject_input(self, rejects: list[Rejected]) -> None:
        """rejects.jsonl, fsync'ed: once acknowledged, the line exists nowhere else."""
        rows = []
        for r in rejects:
            log.warning("rejected input: %s: %s", r.reason, ",".join(r.fields)[:300])
            rows.append(reject_row(r.reason, list(r.fields)))
        self.outputs.rejects(rows, sync=True)
        self.counts.input_rejected.update(reject_kind(r.reason) for r in rejects)

    # -- main thread ----------------------------------------------------------------------
    def run(self, fd: int | None) -> int:
        """Send until end of input (or stop()); `fd` None sends only what the journal holds.

        Returns 0, 1 when reading failed, or EXIT_OPERATOR_FAULT when an operator fault stopped it.
        """
        try:
            recovered = self.journal.recover()
        except OSError as exc:  # compacting at start needs room for the journal's live state
            self._write_failed(exc)
            return EXIT_OPERATOR_FAULT
        if recovered:
            n = sum(len(r) for _, _, r in recovered)
            self.counts.recovered = n
            log.info("journal: %d unfinished record(s) from an earlier run", n)
            for line_id, at, records in recovered:
                for index, record in records:
                    with self._room:
                        self._pending += 1
                    self._admit(Item(line_id, index, record, at), recovered=True)
        if fd is not None:
            threading.Thread(target=self._read, args=(fd,), name="stdin", daemon=True).start()
        else:
            self._eof = True
        self._pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="send")
        try:
            self._loop(self._pool)
        finally:
            self._pool.shutdown(wait=True)
        if self._unwritten:
            self._write_held_back()
        rejected = self.counts.rejected + sum(self.counts.input_rejected.values())
        log.info(
            "done: %d read, %d delivered, %d rejected, %d duplicate(s) skipped, %d retried, %d call(s)%s",
            self.counts.read,
            self.counts.delivered,
            rejected,
            self.counts.duplicates,
            self.counts.retries,
            self.counts.calls,
            f", {self.counts.splits} split(s)" if self.counts.splits else "",
            extra={
                "read": self.counts.read,
                "delivered": self.counts.delivered,
                "rejected": rejected,
                "duplicates": self.counts.duplicates,
                "retries": self.counts.retries,
                "calls": self.counts.calls,
            },
        )
        if self.fault is not None:
            return EXIT_OPERATOR_FAULT
        return 1 if self.failed else 0

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        while True:
            self.loop_turned_at = time.monotonic()
            stopping = self._stopping.is_set()
            if stopping and not self._inflight:
                left = self.journal.unfinished_count()
                if left:
                    log.info("stopping: %d unfinished record(s) stay in the journal for the next start", left)
                return
            if self._eof and not self._inflight and not self._retries and not self._has_ready():
                return
            can_send = not stopping and len(self._inflight) < self.config.concurrency and self._has_ready()
            timeout = 0.0 if can_send else 0.5
            if not can_send and self._retries and not stopping:
                timeout = min(timeout, max(0.0, self._retries[0][0] - self.monotonic()))
            try:
                event = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
                self._handle(event)
                while True:
                    self._handle(self._events.get_nowait())
            except queue.Empty:
                pass
            now = self.monotonic()
            while self._retries and self._retries[0][0] <= now:
                _, _, item = heapq.heappop(self._retries)
                self._ready[item.choice].append(item)  # type: ignore[index]  # admitted: chosen
            while not self._stopping.is_set() and len(self._inflight) < self.config.concurrency and self._has_ready():
                self._submit(pool, now)

    def _has_ready(self) -> bool:
        return bool(self._forced) or any(self._ready.values())

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "lines":
            for line_id, at, records in event[1]:
                for index, record in enumerate(records):
                    self.counts.read += 1
                    self._admit(Item(line_id, index, record, at))
        elif kind == "done":
            self._inflight.discard(event[1])
            self._settle(event[1], event[2])
        elif kind == "probe":
            self._inflight.discard(event[1])
            self._settle_probe(event[1], event[2], event[3])
        elif kind == "eof":
            self._eof = True
        elif kind == "write_failed":
            self._write_failed(event[1])

    def _admit(self, item: Item, recovered: bool = False) -> None:
        record = item.record
        item.due = self.monotonic() + (item.read_at + self.config.deadline_s - self.clock())
        if item.due < self.monotonic():
            why = "while the sender was down" if recovered else "before it could be sent"
            self._finish_rejected([item], f"deadline passed {why}", status="DeadlinePassed", outcome="deadline_passed")
            return
        try:
            item.to = self.provider.address(record.email)
        except UnsendableAddress as exc:
            self._finish_rejected([item], f"the address cannot be sent: {exc}", status="InvalidAddress")
            return
        # after the recipient's own address is checked: redirecting changes where, not what, is sent
        redirect = self.config.redirect
        if redirect is not None and not redirect.lets_through(record.email):
            item.to, item.redirected = redirect.to, True
        secret = record.secret
        if secret in self._in_hand_secrets or self.journal.recently_delivered(secret):
            self.counts.duplicates += 1
            self.counts.outcomes["duplicate_skipped", record.action.name] += 1
            self._write(
                deliveries=[
                    delivery_row(record, status="Duplicate", error="already delivered or in hand: not sent again")
                ],
                other=[(item.line_id, item.index)],
            )
            self._release(1)
            return
        try:
            choice = item.choice = self.catalog.choose(record.action, record.locale)
        except TemplatesFault as exc:
            self._operator_fault(
                [item],
                type(exc).__name__,
                str(exc),
                "add or fix the templates (subject.txt, body.txt, body.html; `mailroom templates check`), then "
                f"restart the sender; the {record.action.name} records stay in the journal",
                by_sender=True,
            )
            return
        self._in_hand_secrets[secret] = 1
        ready = self._ready.get(choice)
        if ready is None:
            ready = self._ready[choice] = deque()
        ready.append(item)

    def _release(self, n: int) -> None:
        with self._room:
            self._pending -= n
            self._room.notify_all()

    def _submit(self, pool: ThreadPoolExecutor, now: float) -> None:
        if self._forced:
            action, candidates = self._forced.popleft()
        else:
            # the action whose oldest ready record was read first goes first
            action = min((c for c, q in self._ready.items() if q), key=lambda c: self._ready[c][0].read_at)
            ready = self._ready[action]
            candidates = [ready.popleft() for _ in range(min(self.batch_size, len(ready)))]
        batch = [i for i in candidates if now <= i.due]
        late = [i for i in candidates if now > i.due]
        if late:
            self._finish_rejected(
                late, "deadline passed before it could be sent", status="DeadlinePassed", outcome="deadline_passed"
            )
        if not batch:
            return
        send = self._bulk(
            action,
            [
                Destination(
                    i.to,
                    template_data(i.record, subject_prefix(i.record.email) if i.redirected else ""),
                    token_ref(i.record.secret),  # the wire decoder checked the secret decodes
                )
                for i in batch
            ],
        )
        future = pool.submit(self._call, send)
        self._inflight.add(future)
        self.counts.calls += 1
        future.add_done_callback(lambda f: self._events.put(("done", f, batch)))

    def _bulk(self, choice: Choice, destinations: list[Destination]) -> BulkSend:
        return BulkSend(
            choice.action,
            choice.ses_name,
            self.config.source,
            self.config.config_set,
            self.default_data,
            destinations,
            choice.locale,
            choice.template,
        )

    def _call(self, send: BulkSend) -> list[DestinationResult]:
        started = time.monotonic()
        if self.limiter is not None:
            self.limiter.acquire(len(send.destinations))
        granted, result = time.monotonic(), "error"
        try:
            answer = self.provider.send_bulk(send)
            result = "answered"
            return answer
        except CallFailed as exc:
            result = exc.outcome.value
            raise
        finally:
            if self.observe_call is not None:  # the metrics, when they are on
                self.observe_call(len(send.destinations), granted - started, time.monotonic() - granted, result)

    def _settle(self, future: Future[list[DestinationResult]], batch: list[Item]) -> None:
        try:
            results = future.result()
        except CallFailed as exc:
            # a call to retry is logged by _apply, at most once per RETRY_LOG_EVERY_S per cause
            log.log(
                logging.DEBUG if exc.outcome in (Outcome.RETRY, Outcome.QUOTA) else logging.WARNING,
                "%s call of %d destination(s) failed: %s (%s)",
                self.provider.name,
                len(batch),
                exc.code,
                exc.outcome.value,
            )
            if exc.outcome is Outcome.ISOLATE:
                self._isolate(batch, exc)
            elif exc.outcome is Outcome.OPERATOR:
                self._operator_fault(batch, exc.code, exc.message, exc.fix)
            else:
                self._apply(batch, [DestinationResult(exc.code, None, exc.message, exc.outcome)] * len(batch))
            return
        except Exception as exc:  # a bug or an unexpected library error: stop, lose nothing
            log.exception("the %s call failed unexpectedly", self.provider.name)
            self._operator_fault(batch, "Internal", f"{type(exc).__name__}: {exc}", "see the traceback above")
            return
        self._apply(batch, results)

    def _apply(self, batch: list[Item], results: list[DestinationResult]) -> None:
        """Act on each destination's outcome."""
        now = self.monotonic()
        delivered: list[Item] = []
        rows: list[dict[str, Any]] = []
        stamp = utc_now()
        delays: dict[tuple[Outcome, int], float] = {}
        faults: list[tuple[Item, DestinationResult]] = []
        retried: dict[str, tuple[Item, DestinationResult, float, int]] = {}  # cause -> first retry, count
        for item, result in zip(batch, results, strict=True):
            outcome = result.outcome
            if outcome is Outcome.DELIVERED:
                item.attempts += 1
                delivered.append(item)
                row = delivery_row(item.record, stamp, status=result.status, attempts=item.attempts)
                if item.to != item.record.email:
                    row["sent_to"] = item.to
                if item.redirected:
                    row["redirected"] = True
                if self.config.debug:
                    row["debug"] = True
                else:
                    row["message_id"] = result.message_id
                rows.append(row)
            elif outcome is Outcome.REFUSED:
                item.attempts += 1
                self._refuse([item], result.status, result.error or "")
            elif outcome in (Outcome.OPERATOR, Outcome.ISOLATE):
                # ISOLATE is a whole call's answer (ses_error_outcome); one destination's would
                # be refused without the known-good check: stop instead, lose nothing
                faults.append((item, result))
            else:
                item.attempts += 1
                item.last_error = f"{result.status}: {result.error or ''}".rstrip(": ")
                # the failed destinations of one call retry together, so they stay one call
                key = (outcome, item.attempts)
                if key not in delays:
                    delays[key] = self.policy.delay(outcome, item.attempts - 1)
                delay = delays[key]
                if now + delay > item.due:
                    self._finish_rejected(
                        [item],
                        "deadline passed while retrying",
                        status=result.status,
                        error=result.error or "",
                        outcome="deadline_passed",
                    )
                else:
                    self.counts.retries += 1
                    self.counts.outcomes["retried", item.record.action.name] += 1
                    heapq.heappush(self._retries, (now + delay, next(self._seq), item))
                    if result.status in retried:
                        first_item, first_result, first_delay, n = retried[result.status]
                        retried[result.status] = (first_item, first_result, first_delay, n + 1)
                    else:
                        retried[result.status] = (item, result, delay, 1)
        for cause, (item, result, delay, n) in retried.items():
            self._log_retry(cause, item, result, delay, n, now)
        if delivered:
            self._known_good.add(delivered[0].choice)  # type: ignore[arg-type]  # sent: chosen
            self._write(deliveries=rows, delivered=[(i.line_id, i.index, i.record.secret) for i in delivered])
            for i in delivered:
                self._in_hand_secrets.pop(i.record.secret, None)
            self.counts.delivered += len(delivered)
            self.counts.outcomes["delivered", delivered[0].record.action.name] += len(delivered)
            self._release(len(delivered))
        if faults:
            _, first = faults[0]
            self._operator_fault([i for i, _ in faults], first.status, first.error or "", first.fix)

    def _log_retry(self, cause: str, item: Item, result: DestinationResult, delay: float, n: int, now: float) -> None:
        """What failed, where, and when the next try is: the first retry of a cause, then at most
        one line every RETRY_LOG_EVERY_S per cause."""
        quiet = self._retry_log.due(cause, n, now)
        if quiet is None:
            return
        where = getattr(self.provider, "endpoint", "")
        log.warning(
            "%s%s failed: %s%s; %d destination(s) retried, the next try in %.1f s (attempt %d, %.0f s left"
            " before the deadline)%s",
            self.provider.name,
            f" at {where}" if where else "",
            cause,
            f": {result.error}" if result.error else "",
            n,
            delay,
            item.attempts + 1,
            max(0.0, item.due - now),
            f"; {quiet} more retr{'y' if quiet == 1 else 'ies'} of this cause since its last line" if quiet else "",
            extra={"retry_cause": cause, "retry_in_s": round(delay, 3)},
        )

    # -- isolating the culprit of a call-level error ------------------------------------------
    def _isolate(self, batch: list[Item], exc: CallFailed) -> None:
        """A whole call failed with an error one destination can cause: find that destination."""
        action = batch[0].choice
        assert action is not None  # sent: chosen
        if exc.code == "MessageRejected":
            source = source_address(self.config.source)
            named = names(exc.message, [source, *(i.to for i in batch)])
            if source in named:
                self._operator_fault(batch, exc.code, exc.message, exc.fix)
                return
            refused = [i for i in batch if i.to in named]
            if not refused:
                self._operator_fault(batch, exc.code, exc.message, exc.fix or "SES refused the whole call")
                return
            for item in refused:
                item.attempts += 1
            self._refuse(refused, exc.code, exc.message)
            rest = [i for i in batch if i.to not in named]
            if rest:
                self._forced.appendleft((action, rest))
            return
        if action not in self._known_good:
            self._probe(batch, exc)
            return
        if len(batch) == 1:
            batch[0].attempts += 1
            self._refuse(batch, exc.code, exc.message)
            return
        self.counts.splits += 1
        half = len(batch) // 2
        log.info("splitting a call of %d that SES refused (%s) to find the address it refuses", len(batch), exc.code)
        self._forced.appendleft((action, batch[half:]))
        self._forced.appendleft((action, batch[:half]))

    def _probe(self, batch: list[Item], exc: CallFailed) -> None:
        """Send the same call to the provider's always-accepting test address: if SES takes it,
        the parameters are good and the error is about a destination of `batch`."""
        address = getattr(self.provider, "probe_address", "")
        if not address or self._pool is None:
            self._operator_fault(batch, exc.code, exc.message, exc.fix)
            return
        action = batch[0].choice
        assert action is not None  # sent: chosen
        probe = Record(action.action, address, PROBE_LOGIN, PROBE_SECRET, PROBE_CODE)
        # No token_ref: its dummy secret names no token (no tag, so no status, no rate).
        send = self._bulk(action, [Destination(address, template_data(probe))])
        log.info("probing %s with the same parameters (%s refused a call of %d)", address, exc.code, len(batch))
        future = self._pool.submit(self._call, send)
        self._inflight.add(future)
        self.counts.calls += 1
        future.add_done_callback(lambda f: self._events.put(("probe", f, batch, exc)))

    def _settle_probe(self, future: Future[list[DestinationResult]], batch: list[Item], exc: CallFailed) -> None:
        try:
            outcome = future.result()[0].outcome
            error = exc
        except CallFailed as probe_exc:
            outcome, error = probe_exc.outcome, probe_exc
        except Exception as probe_exc:  # noqa: BLE001 - a bug: stop, lose nothing
            self._operator_fault(batch, "Internal", f"{type(probe_exc).__name__}: {probe_exc}", "")
            return
        if outcome is Outcome.DELIVERED:
            self._known_good.add(batch[0].choice)  # type: ignore[arg-type]  # sent: chosen
            self._isolate(batch, exc)
        elif outcome in (Outcome.RETRY, Outcome.QUOTA):
            result = DestinationResult(error.code, None, error.message, outcome)
            self._apply(batch, [result] * len(batch))
        else:
            fix = (
                "SES refuses this call whatever the recipient: check MAILROOM_SES_SOURCE, the templates "
                "(`mailroom templates push`) and MAILROOM_SES_CONFIG_SET"
            )
            self._operator_fault(batch, error.code, error.message, fix)

    # -- endings ------------------------------------------------------------------------------------
    def _operator_fault(self, items: list[Item], code: str, message: str, fix: str, by_sender: bool = False) -> None:
        """Stop sending, loudly; the items stay unfinished in the journal for the next start.
        `by_sender`: the sender found it (a missing templates folder), no provider answered it."""
        for item in items:
            self._in_hand_secrets.pop(item.record.secret, None)
            self.counts.outcomes["operator_fault", item.record.action.name] += 1
        if self.fault is None:
            self.fault = Fault(code, message, fix)
            log.error(
                "operator fault, sending stopped: %s %s: %s; fix: %s; nothing is written off: the "
                "records stay in the journal and are sent when the sender starts again",
                "the sender found" if by_sender else f"{self.provider.name} answered",
                code,
                message.strip() or "(no message)",
                fix or "see the saved error response",
                extra={"fault": code, "fix": fix},
            )
        self.stop()

    def _refuse(self, items: list[Item], status: str, error: str) -> None:
        redirected = [i for i in items if i.redirected]
        if redirected:
            # refusing the redirect address says nothing about the recipients: the operator's to fix
            self._operator_fault(
                redirected,
                status,
                error,
                f"{self.provider.name} refused the redirect address {redirected[0].to}: "
                "fix MAILROOM_REDIRECT_TO (an address the provider accepts), then restart",
            )
            items = [i for i in items if not i.redirected]
            if not items:
                return
        self._finish_rejected(items, f"{self.provider.name} refused this recipient", status=status, error=error)

    def _finish_rejected(
        self, items: list[Item], reason: str, status: str, error: str = "", outcome: str = "recipient_refused"
    ) -> None:
        deliveries, rejects = [], []
        for item in items:
            record = item.record
            detail = error or item.last_error
            log.warning(
                "rejected %s email to %s: %s (%s%s)",
                record.action.name,
                record.email,
                reason,
                status,
                f": {detail}" if detail else "",
            )
            deliveries.append(
                delivery_row(
                    record,
                    status=status,
                    error=f"{reason}: {detail}" if detail else reason,
                    attempts=item.attempts,
                )
            )
            rejects.append(
                reject_row(
                    reason,
                    record.redacted(),
                    action=record.action.name,
                    recipient=record.email,
                    token_ref=token_ref(record.secret),
                    status=status,
                    error=detail,
                    attempts=item.attempts,
                )
            )
            self._in_hand_secrets.pop(record.secret, None)
            self.counts.outcomes[outcome, record.action.name] += 1
        self._write(deliveries=deliveries, rejects=rejects, other=[(i.line_id, i.index) for i in items])
        self.counts.rejected += len(items)
        self._release(len(items))

    # -- writing outcomes -----------------------------------------------------------------------------
    def _write(
        self,
        deliveries: list[dict[str, Any]] | None = None,
        rejects: list[dict[str, Any]] | None = None,
        delivered: list[tuple[str, int, str]] | None = None,
        other: list[tuple[str, int]] | None = None,
    ) -> None:
        """Write outcomes: the output rows first, then the journal's completion (a crash between
        them means a record sent again, never one lost). Once a write has failed, the rest are
        held back in memory, in order, and tried again before the exit (`_write_held_back`)."""
        steps: list[tuple[Callable[[], None], int, int]] = []
        if deliveries:
            steps.append((lambda: self.outputs.deliveries(deliveries), 0, 0))
        if rejects:
            steps.append((lambda: self.outputs.rejects(rejects), 0, 0))
        if delivered or other:
            d, o = delivered or [], other or []
            steps.append((lambda: self.journal.finished(d, o), len(d) + len(o), len(d)))
        for i, (step, _, _) in enumerate(steps):
            if self._unwritten:
                self._unwritten.extend(steps[i:])
                return
            try:
                step()
            except RotationFailed as exc:  # the completion itself is written
                self._write_failed(exc)
            except OSError as exc:
                self._unwritten.extend(steps[i:])
                self._write_failed(exc)
                return

    def _write_failed(self, exc: OSError) -> None:
        """A write of the journal or an output file failed (a full disk): an operator fault.
        Stop reading and sending; the calls in flight settle, their answers held in memory."""
        if self.write_error is None:
            self.write_error = exc
            where = exc.filename or self.outputs.directory
            code = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            log.error(
                "cannot write %s: %s; sending stopped: %s; answers already received are written before the exit "
                "if there is room, otherwise their records are sent again at the next start",
                where,
                exc.strerror or exc,
                DISK_FIX,
                extra={"fault": code, "path": str(where), "fix": DISK_FIX},
            )
            if self.fault is None:
                self.fault = Fault(code, f"cannot write {where}: {exc.strerror or exc}", DISK_FIX)
        self.stop()

    def _write_held_back(self) -> None:
        """Before the exit: write what was held back, in order, as far as the disk allows."""
        while self._unwritten:
            step, _, _ = self._unwritten[0]
            try:
                step()
            except RotationFailed:
                pass
            except OSError:
                break
            self._unwritten.popleft()
        if not self._unwritten:
            log.info("the answers held in memory after the failed write are written")
            return
        log.warning(
            "the outcomes of %d record(s) answered before the failed write could not be written either: they stay "
            "unfinished in the journal and are sent again at the next start, so %d delivered email(s) go out twice",
            sum(n for _, n, _ in self._unwritten),
            sum(n for _, _, n in self._unwritten),
        )
