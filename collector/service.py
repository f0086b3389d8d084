"""The collector's life: connect, stand by or become active, drain, wait, repeat.

Any `psycopg.OperationalError` (the database went away, the backend was terminated, a
health check failed) closes the connection and starts over with capped exponential
backoff and jitter, logging each attempt; except a failure that retrying cannot fix (the
database or the role does not exist, authentication failed: `mailroom.db.permanent_failure`),
which exits 2 like invalid configuration. Starting over always means: take the standby
lock, register the queue, LISTEN, note the writers that may have skipped a NOTIFY, then
drain whatever accumulated, then wait. A wake-up reads in awake mode (collector/awake.py).
"""

from __future__ import annotations

import dataclasses
import logging

import psycopg

from collector.awake import Awake
from collector.batching import BatchPolicy, Wake, wait_for_batch
from collector.connection import open_connection, register_and_listen, try_lock
from collector.output import LineWriter, StoppedUnread
from collector.queue import OutputClosed, Queue
from collector.signals import StopFlag
from collector.stats import CollectorStats
from mailroom.backoff import Backoff
from mailroom.db import describe, first_line, permanent_failure
from mailroom.logs import plural
from mailroom.settings import CONFIG_EXIT_STATUS, CollectorSettings

log = logging.getLogger("collector")

RECONNECT_BACKOFF = Backoff(base=0.5, cap=30.0)
STANDBY_POLL_S = 1.0
PENDING_POLL_S = 0.05  # how often to look whether writers that may have skipped NOTIFY ended

EXIT_OK = 0
EXIT_FAILURE = 1


class Collector:
    def __init__(
        self,
        settings: CollectorSettings,
        output: LineWriter,
        stop: StopFlag,
        *,
        drain_only: bool = False,
        synchronous_commit: bool = False,
        stats: CollectorStats | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats or CollectorStats()
        self.output = output
        self.stop = stop
        self.drain_only = drain_only
        self.synchronous_commit = synchronous_commit
        self.policy = BatchPolicy.from_settings(settings)
        self.where = describe(settings.database_url)
        self.attempt = 0

    def run(self) -> int:
        """Run until stopped; return the exit status."""
        while not self.stop:
            conn: psycopg.Connection | None = None
            try:
                conn = open_connection(self.settings, self.synchronous_commit)
                self.stats.connected = True
                log.info(
                    "connected to %s%s", self.where, f" after {self.attempt} failed attempts" if self.attempt else ""
                )
                status = self._serve(conn)
                if status is not None:
                    return status
            except StoppedUnread as exc:
                log.info("%s: rolled back its chunk (the tokens stay queued) and stopping", exc)
                self.output.detach()
                return EXIT_OK
            except OutputClosed as exc:
                log.error(
                    "%s: the reader of stdout is gone; rolled back the chunk of %s, "
                    "they stay queued for the next collector",
                    exc,
                    plural(exc.claimed, "token"),
                )
                self.output.detach()
                return EXIT_FAILURE
            except psycopg.OperationalError as exc:
                if self.stop:
                    break
                if (reason := permanent_failure(exc)) is not None:
                    log.error(
                        "cannot connect to %s: %s (%s); retrying cannot fix this: check MAILROOM_DATABASE_URL "
                        "(and the server's roles, databases and pg_hba.conf)",
                        self.where,
                        reason,
                        first_line(exc),
                    )
                    return CONFIG_EXIT_STATUS
                log.warning("database connection failed (%s): %s", self.where, first_line(exc))
            except psycopg.Error as exc:
                log.error(
                    "database error on %s: %s (is the schema migrated? run `mailroom migrate`)",
                    self.where,
                    first_line(exc),
                )
                return EXIT_FAILURE
            finally:
                if conn is not None:
                    conn.close()
                self.stats.disconnected()
            if self.stop:
                break
            delay = RECONNECT_BACKOFF.delay(self.attempt)
            self.attempt += 1
            self.stats.reconnects += 1
            self.stats.heartbeat.beat()
            log.info("reconnecting to %s: attempt %d in %.2f s", self.where, self.attempt, delay)
            self.stop.sleep(delay)
        log.info("stopped by %s", self.stop.signal_name or "request")
        return EXIT_OK

    def _serve(self, conn: psycopg.Connection) -> int | None:
        """Be the active collector on `conn` until stopped (a status) or the connection
        fails (an exception). None means: start over."""
        name = self.settings.queue_name
        standing_by = False
        while not try_lock(conn, name):
            self.stats.role = "standby"
            self.stats.heartbeat.beat()
            if self.drain_only:
                log.error("another collector is active on queue %r; --drain does not wait", name)
                return EXIT_FAILURE
            if not standing_by:
                log.info("another collector is active on queue %r: standing by", name)
                standing_by = True
            self.stop.sleep(STANDBY_POLL_S)
            if self.stop:
                return self._stopped()
        self.stats.role = "active"
        register_and_listen(conn, self.settings)
        self.stats.listening = True
        log.info("active on queue %r, listening on channel %r", name, self.settings.channel_name)
        queue = Queue(
            conn,
            name,
            self.settings.batch_limit,
            self.settings.secret_key,
            self.settings.recovery_cooldown_s,
            self.stats,
        )
        awake = Awake(conn, name, self.policy)
        awake.note_writers()  # a predecessor that died awake may have left some
        self._drain(queue, "start")
        self.attempt = 0  # healthy: the next failure starts the backoff afresh
        if self.drain_only:
            return EXIT_OK
        # Tests (and operators) wait for this line: everything queued before it was read.
        log.info("ready: start drain done, waiting for notifications")

        def wait(timeout: float, stop_after: int) -> int:
            self.stats.heartbeat.beat()
            return sum(1 for _ in conn.notifies(timeout=timeout, stop_after=stop_after))

        while not self.stop:
            policy = self.policy
            if awake.pending:
                policy = dataclasses.replace(policy, healthcheck_s=min(PENDING_POLL_S, policy.healthcheck_s))
            wake, notifications = wait_for_batch(wait, policy, self.stop)
            if wake is Wake.STOP:
                break
            if wake is Wake.HEALTHCHECK and awake.pending:
                if awake.writers_done():
                    self._drain(queue, "writers that may have skipped NOTIFY ended")
                continue
            if wake is Wake.HEALTHCHECK:
                log.debug("health check: no notification for %.0f s, reading the queue", self.policy.healthcheck_s)
                reason = "health check"
            elif notifications >= self.policy.limit:
                reason = f"{plural(notifications, 'notification')}, the batch limit"
            else:
                reason = f"{plural(notifications, 'notification')}, the batch timeout"
            self._awake_cycle(conn, queue, awake, reason)
        return self._stopped()

    def _awake_cycle(self, conn: psycopg.Connection, queue: Queue, awake: Awake, reason: str) -> None:
        """Read, and keep reading on our own schedule while tokens keep coming (inserts skip
        their NOTIFY meanwhile); then go back to sleep safely (see collector/awake.py)."""
        took = awake.take()
        self.stats.awake = took
        try:
            self._drain(queue, reason)
            while took and awake.wait_for_batch(self.stop):
                self._drain(queue, "awake")
        finally:
            if took:
                awake.release()
            self.stats.awake = False
        awake.note_writers()
        # Notifications received so far are covered by the read below: drop them, so that
        # they do not start another round for nothing.
        for _ in conn.notifies(timeout=0):
            pass
        self._drain(queue, "going to sleep")
        log.debug("asleep: waiting for notifications; writers that may have skipped NOTIFY: %d", len(awake.pending))

    def _drain(self, queue: Queue, reason: str) -> None:
        result = queue.drain(self.output, self.stop)
        if result.claimed:
            log.info(
                "read %s (%s): emitted %d in %s, skipped %d not sendable, %d within the cooldown of an email already sent",
                plural(result.claimed, "queued token"),
                reason,
                result.emitted,
                plural(result.lines, "line"),
                result.claimed - result.emitted - result.cooled,
                result.cooled,
                extra={
                    "claimed": result.claimed,
                    "emitted": result.emitted,
                    "lines": result.lines,
                    "skipped": result.claimed - result.emitted - result.cooled,
                    "cooled": result.cooled,
                    "trigger": reason,
                },
            )
        else:
            log.debug("queue empty (%s)", reason)

    def _stopped(self) -> int:
        log.info("stopped by %s", self.stop.signal_name or "request")
        return EXIT_OK
