"""The collector's metrics and health, served on MAILROOM_COLLECTOR_METRICS_ADDR.

The drain loop only bumps plain counters on a `CollectorStats` (a few attribute
increments per committed transaction, nothing per token); this module turns them into
Prometheus metrics when scraped. The queue's backlog and the age of its oldest entry are
read on scrape, on a connection of the metrics' own (never the collector's: it is in the
middle of its transactions), at most once every BACKLOG_CACHE_S.

Health: /healthz fails when the loop has not turned for a long time (mailroom.heartbeat);
waiting for the sender to take lines (back-pressure) is the loop turning. /readyz passes
when the collector is connected and listening on its queue, or standing by.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector as PromCollector

from collector.stats import CollectorStats
from mailroom.db import connect, queries
from mailroom.heartbeat import Verdict
from mailroom.metrics_http import MetricsServer, format_address, new_registry, serve
from mailroom.settings import CollectorSettings, ConfigError

log = logging.getLogger("collector.metrics")

BACKLOG_CACHE_S = 5.0
APPLICATION_NAME = "mailroom-collector-metrics"  # not "mailroom-collector": it is no collector session


class BacklogReader:
    """The queue's backlog and oldest entry's age, from its own lazily (re)opened connection."""

    def __init__(
        self, database_url: str, queue_name: str, cache_s: float = BACKLOG_CACHE_S, schema: str = "mailroom"
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.queue_name = queue_name
        self.cache_s = cache_s
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._value: tuple[int, float | None] | None = None
        self._warned = False

    def __call__(self) -> tuple[int, float | None] | None:
        """(backlog, oldest age in seconds or None) read at most every cache_s; None if unreadable."""
        with self._lock:
            now = time.monotonic()
            if now - self._at < self.cache_s:
                return self._value
            self._at = now
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(
                        self.database_url, application_name=APPLICATION_NAME, connect_timeout=3, schema=self.schema
                    )
                row = self._conn.execute(queries("monitoring.sql")["queue_backlog"], {"queue": self.queue_name})
                backlog, age = row.fetchone() or (0, None)
                self._value = (int(backlog), None if age is None else max(0.0, float(age)))
                self._warned = False
            except psycopg.Error as exc:
                if not self._warned:
                    log.warning("metrics: cannot read the queue's backlog: %s", str(exc).strip().splitlines()[0])
                    self._warned = True
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self._value = None
            return self._value


class _Exporter(PromCollector):
    def __init__(
        self,
        stats: CollectorStats,
        backlog: Callable[[], tuple[int, float | None] | None],
        queue_name: str,
        channel_name: str,
    ) -> None:
        self.stats = stats
        self.backlog = backlog
        self.queue_name = queue_name
        self.channel_name = channel_name

    def collect(self) -> Iterator[Any]:
        s = self.stats
        yield InfoMetricFamily(
            "mailroom_collector",
            "The queue this collector serves",
            value={"queue": self.queue_name, "channel": self.channel_name},
        )
        read = self.backlog()
        if read is not None:
            backlog, age = read
            yield GaugeMetricFamily(
                "mailroom_collector_queue_backlog",
                "Tokens queued and not yet emitted (read at most every 5 s)",
                backlog,
            )
            yield GaugeMetricFamily(
                "mailroom_collector_queue_oldest_age_seconds",
                "Age of the oldest queued token; 0 when the queue is empty (read at most every 5 s)",
                age or 0.0,
            )
        yield CounterMetricFamily(
            "mailroom_collector_tokens_emitted", "Tokens written to stdout and committed", s.tokens_emitted
        )
        yield CounterMetricFamily(
            "mailroom_collector_lines_written", "Batch lines written to stdout and committed", s.lines_written
        )
        yield CounterMetricFamily(
            "mailroom_collector_output_bytes", "Bytes of batch lines written to stdout and committed", s.bytes_written
        )
        skipped = CounterMetricFamily(
            "mailroom_collector_tokens_skipped",
            "Queued tokens consumed without output because they could not be sent, by reason",
            labels=["reason"],
        )
        for reason in SKIP_REASONS:
            skipped.add_metric([reason], s.skipped.get(reason, 0))
        yield skipped
        yield GaugeMetricFamily("mailroom_collector_connected", "1 while connected to the database", int(s.connected))
        yield GaugeMetricFamily(
            "mailroom_collector_active",
            "1 while this is the active collector of its queue (0: standby)",
            int(s.role == "active"),
        )
        yield GaugeMetricFamily(
            "mailroom_collector_awake", "1 while awake (reading on its own schedule; inserts skip NOTIFY)", int(s.awake)
        )
        yield CounterMetricFamily(
            "mailroom_collector_reconnects", "Reconnection attempts to the database", s.reconnects
        )
        yield CounterMetricFamily(
            "mailroom_collector_backpressure_wait_seconds",
            "Time spent waiting for the sender to take written lines out of the pipe",
            s.backpressure_s(),
        )


# Why a queued token is not sendable (the `skip` column of claim_chunk in sql/collector.sql;
# `suppressed`: its address is on the suppression list; `unknown_action`: an action the
# registry does not hold even after a reload, see collector/queue.py).
SKIP_REASONS = (
    "expired",
    "consumed",
    "account_status",
    "no_address",
    "token_gone",
    "suppressed",
    "unknown_action",
)


def build_registry(
    stats: CollectorStats,
    backlog: Callable[[], tuple[int, float | None] | None],
    queue_name: str,
    channel_name: str,
) -> CollectorRegistry:
    registry = new_registry()
    registry.register(_Exporter(stats, backlog, queue_name, channel_name))
    return registry


def live(stats: CollectorStats) -> Verdict:
    """Alive while the loop turns; waiting on the sender (back-pressure) is turning too."""
    since = stats.waits[1]
    if since is not None:
        return True, f"waiting {time.monotonic() - since:.1f} s for the sender to take lines (back-pressure)"
    return stats.heartbeat.verdict()


def start(settings: CollectorSettings, stats: CollectorStats) -> MetricsServer | None:
    """Serve the metrics and health endpoints when MAILROOM_COLLECTOR_METRICS_ADDR is set;
    ConfigError when the address cannot be listened on."""
    if settings.metrics_addr is None:
        return None
    registry = build_registry(
        stats,
        BacklogReader(settings.database_url, settings.queue_name, schema=settings.schema),
        settings.queue_name,
        settings.channel_name,
    )
    try:
        server = serve(settings.metrics_addr, registry, lambda: live(stats), stats.ready)
    except OSError as exc:
        raise ConfigError(
            "MAILROOM_COLLECTOR_METRICS_ADDR",
            f"cannot listen on {format_address(settings.metrics_addr)}: {exc.strerror or exc}",
        ) from None
    log.info("serving /metrics, /healthz and /readyz on http://%s", format_address(server.address))
    return server
