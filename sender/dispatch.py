"""The sending loop: records in, bulk calls out, every record finished exactly once.

One thread reads stdin (reader.py), journals each group of lines and hands it over; the
main thread owns all state: it groups ready records by action into calls of at most
`batch_size` destinations, keeps at most `concurrency` calls in flight on a thread pool,
schedules retries of what failed (retry.py) and writes every outcome. While the records
in hand (ready, in flight, waiting to retry) reach `max_pending`, the reader does not
read: the pipe fills and the collector feels the back-pressure.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mailroom.signing import Action
from mailroom.wire import Record, Rejected
from sender.journal import Journal
from sender.outputs import Outputs, delivery_row, reject_row, utc_now
from sender.provider import (
    BulkSend,
    CallFailed,
    Destination,
    DestinationResult,
    Provider,
    UnsendableAddress,
    default_template_data,
    template_data,
)
from sender.ratelimit import RateLimiter
from sender.reader import decoded_groups
from sender.retry import EXIT_OPERATOR_FAULT, Outcome, RetryPolicy

log = logging.getLogger("sender")
SES_MAX_DESTINATIONS = 50


@dataclass(slots=True)
class Item:
    line_id: str
    index: int
    record: Record
    read_at: float
    attempts: int = 0
    last_error: str = ""
    address: str = ""


@dataclass(frozen=True)
class SendConfig:
    templates: dict[Action, str]
    source: str
    config_set: str
    app_url: str
    deadline_s: float
    concurrency: int
    max_send_rate: float
    debug: bool = False

    @property
    def batch_size(self) -> int:
        """At most 50 (SES), and never more than one second's worth of the rate limit."""
        return max(1, min(SES_MAX_DESTINATIONS, int(self.max_send_rate)))


@dataclass
class Counts:
    read: int = 0
    delivered: int = 0
    rejected: int = 0
    duplicates: int = 0
    retries: int = 0
    calls: int = 0


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
    ) -> None:
        self.config = config
        self.provider = provider
        self.outputs = outputs
        self.journal = journal
        self.policy = policy or RetryPolicy()
        self.limiter = limiter or RateLimiter(config.max_send_rate)
        self.clock = clock
        self.batch_size = config.batch_size
        self.max_pending = max_pending or max(200, config.concurrency * self.batch_size * 2)
        self.default_data = default_template_data(config.app_url)
        self.counts = Counts()
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._ready: dict[Action, deque[Item]] = {a: deque() for a in Action}
        self._retries: list[tuple[float, int, Item]] = []
        self._seq = itertools.count()
        self._inflight: set[Future] = set()
        self._in_hand_secrets: dict[str, int] = {}
        self._pending = 0
        self._room = threading.Condition()
        self._stopping = threading.Event()
        self._eof = False
        self.failed = False
        self.operator_fault = ""

    # -- control ------------------------------------------------------------------------
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
            for group in decoded_groups(fd, self._before_read):
                now = self.clock()
                rejects = [r for line in group for r in line.rejects]
                if rejects:
                    self._reject_input(rejects)
                lines = [(self.journal.new_line_id(), now, line.records) for line in group if line.records]
                if not lines:
                    continue
                self.journal.append_lines(lines)
                with self._room:
                    self._pending += sum(len(r) for _, _, r in lines)
                self._events.put(("lines", lines))
        except Exception:  # e.g. the journal's disk is full: stop taking input, exit non-zero
            log.exception("reading stdin failed; no further input is taken")
            self.failed = True
        finally:
            self._events.put(("eof",))

    def _reject_input(self, rejects: list[Rejected]) -> None:
        rows = []
        for r in rejects:
            log.warning("rejected input: %s: %s", r.reason, ",".join(r.fields)[:300])
            rows.append(reject_row(r.reason, list(r.fields)))
        self.outputs.rejects(rows)
        self.counts.rejected += len(rows)

    # -- main thread ----------------------------------------------------------------------
    def run(self, fd: int | None) -> int:
        """Send until end of input (or stop()); `fd` None sends only what the journal holds."""
        recovered = self.journal.recover()
        if recovered:
            n = sum(len(r) for _, _, r in recovered)
            log.info("journal: %d unfinished record(s) from an earlier run", n)
            now = self.clock()
            late: list[Item] = []
            for line_id, at, records in recovered:
                for index, record in records:
                    item = Item(line_id, index, record, at)
                    with self._room:
                        self._pending += 1
                    if now > at + self.config.deadline_s:
                        late.append(item)
                    else:
                        self._admit(item)
            if late:
                self._finish_rejected(late, "deadline passed while the sender was down", status="DeadlinePassed")
        if fd is not None:
            threading.Thread(target=self._read, args=(fd,), name="stdin", daemon=True).start()
        else:
            self._eof = True
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="ses")
        try:
            self._loop(pool)
        finally:
            pool.shutdown(wait=True)
        log.info(
            "done: %d read, %d delivered, %d rejected, %d duplicate(s) skipped, %d retried, %d call(s)",
            self.counts.read,
            self.counts.delivered,
            self.counts.rejected,
            self.counts.duplicates,
            self.counts.retries,
            self.counts.calls,
        )
        if self.operator_fault:
            return EXIT_OPERATOR_FAULT
        return 1 if self.failed else 0

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        while True:
            stopping = self._stopping.is_set()
            if stopping and not self._inflight:
                left = self.journal.unfinished_count()
                if left:
                    log.info("stopping: %d unfinished record(s) stay in the journal for the next start", left)
                return
            if self._eof and not self._inflight and not self._retries and not any(self._ready.values()):
                return
            can_send = not stopping and len(self._inflight) < self.config.concurrency and any(self._ready.values())
            timeout = 0.0 if can_send else 0.5
            if not can_send and self._retries and not stopping:
                timeout = min(timeout, max(0.0, self._retries[0][0] - self.clock()))
            try:
                event = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
                self._handle(event)
                while True:
                    self._handle(self._events.get_nowait())
            except queue.Empty:
                pass
            now = self.clock()
            while self._retries and self._retries[0][0] <= now:
                _, _, item = heapq.heappop(self._retries)
                self._ready[item.record.action].append(item)
            while (
                not self._stopping.is_set()
                and len(self._inflight) < self.config.concurrency
                and any(self._ready.values())
            ):
                self._submit(pool, now)

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
        elif kind == "eof":
            self._eof = True

    def _admit(self, item: Item) -> None:
        secret = item.record.secret
        if secret in self._in_hand_secrets or self.journal.recently_delivered(secret):
            self.counts.duplicates += 1
            self.outputs.deliveries(
                [delivery_row(item.record, status="Duplicate", error="already delivered or in hand: not sent again")]
            )
            self.journal.finished([], [(item.line_id, item.index)])
            self._release(1)
            return
        try:
            item.address = self.provider.address(item.record.email)
        except UnsendableAddress as exc:
            self._finish_rejected([item], f"unsendable address: {exc}", status="UnsendableAddress")
            return
        self._in_hand_secrets[secret] = 1
        self._ready[item.record.action].append(item)

    def _release(self, n: int) -> None:
        with self._room:
            self._pending -= n
            self._room.notify_all()

    def _submit(self, pool: ThreadPoolExecutor, now: float) -> None:
        # the action whose oldest ready record was read first goes first
        action = min((a for a in Action if self._ready[a]), key=lambda a: self._ready[a][0].read_at)
        ready = self._ready[action]
        batch: list[Item] = []
        late: list[Item] = []
        while ready and len(batch) < self.batch_size:
            item = ready.popleft()
            (late if now > item.read_at + self.config.deadline_s else batch).append(item)
        if late:
            self._finish_rejected(late, "deadline passed before it could be sent", status="DeadlinePassed")
        if not batch:
            return
        send = BulkSend(
            action,
            self.config.templates[action],
            self.config.source,
            self.config.config_set,
            self.default_data,
            [Destination(i.address or i.record.email, template_data(i.record)) for i in batch],
        )
        future = pool.submit(self._call, send)
        self._inflight.add(future)
        self.counts.calls += 1
        future.add_done_callback(lambda f, b=batch: self._events.put(("done", f, b)))

    def _call(self, send: BulkSend) -> list[DestinationResult]:
        self.limiter.acquire(len(send.destinations))
        return self.provider.send_bulk(send)

    def _settle(self, future: Future, batch: list[Item]) -> None:
        now = self.clock()
        try:
            results = future.result()
            outcomes = [(r.outcome, r) for r in results]
        except CallFailed as exc:
            failure = DestinationResult(exc.code, None, exc.message, exc.outcome, exc.fix)
            outcomes = [(exc.outcome, failure)] * len(batch)
            log.warning("call of %d destination(s) failed: %s (%s)", len(batch), exc.code, exc.outcome.value)
        except Exception as exc:  # a bug or an unexpected library error: retry within the deadline
            log.exception("call failed unexpectedly")
            failure = DestinationResult("Failed", None, f"{type(exc).__name__}: {exc}", Outcome.RETRY)
            outcomes = [(Outcome.RETRY, failure)] * len(batch)
        delivered: list[Item] = []
        rows: list[dict[str, Any]] = []
        stamp = utc_now()
        delays: dict[tuple[Outcome, int], float] = {}
        for item, (outcome, result) in zip(batch, outcomes):
            item.attempts += 1
            if outcome is Outcome.DELIVERED:
                delivered.append(item)
                row = delivery_row(item.record, stamp, status=result.status, attempts=item.attempts)
                if self.config.debug:
                    row["debug"] = True
                else:
                    row["message_id"] = result.message_id
                rows.append(row)
            elif outcome is Outcome.REFUSED:
                self._finish_rejected(
                    [item], f"refused: {result.status}", status=result.status, error=result.error or ""
                )
            elif outcome is Outcome.OPERATOR:
                if not self.operator_fault:
                    self.operator_fault = result.fix or f"{result.status}: {result.error or ''}"
                    log.error("operator fault: %s: %s; fix: %s", result.status, result.error, result.fix)
                    self.stop()
            else:
                item.last_error = f"{result.status}: {result.error or ''}".rstrip(": ")
                # the failed destinations of one call retry together, so they stay one call
                key = (outcome, item.attempts)
                if key not in delays:
                    delays[key] = self.policy.delay(outcome, item.attempts - 1)
                delay = delays[key]
                if now + delay > item.read_at + self.config.deadline_s:
                    self._finish_rejected(
                        [item], "deadline passed while retrying", status=result.status, error=result.error or ""
                    )
                else:
                    self.counts.retries += 1
                    heapq.heappush(self._retries, (now + delay, next(self._seq), item))
        if delivered:
            self.outputs.deliveries(rows)
            self.journal.finished([(i.line_id, i.index, i.record.secret) for i in delivered], [])
            for i in delivered:
                self._in_hand_secrets.pop(i.record.secret, None)
            self.counts.delivered += len(delivered)
            self._release(len(delivered))

    def _finish_rejected(self, items: list[Item], reason: str, status: str, error: str = "") -> None:
        deliveries, rejects = [], []
        for item in items:
            detail = error or item.last_error
            log.warning(
                "rejected %s email to %s: %s (%s%s)",
                item.record.action.db_name,
                item.record.email,
                reason,
                status,
                f": {detail}" if detail else "",
            )
            deliveries.append(
                delivery_row(
                    item.record,
                    status=status,
                    error=f"{reason}: {detail}" if detail else reason,
                    attempts=item.attempts,
                )
            )
            rejects.append(
                reject_row(reason, item.record.redacted(), status=status, error=detail, attempts=item.attempts)
            )
            self._in_hand_secrets.pop(item.record.secret, None)
        self.outputs.deliveries(deliveries)
        self.outputs.rejects(rejects)
        self.journal.finished([], [(i.line_id, i.index) for i in items])
        self.counts.rejected += len(items)
        self._release(len(items))
