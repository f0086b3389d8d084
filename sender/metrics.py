"""The sender's metrics and health, served on MAILROOM_SENDER_METRICS_ADDR.

The sending loop keeps plain counts (`Sender.counts`, updated by its main thread only);
they are turned into Prometheus metrics when scraped, together with gauges read from the
sender's state (records in hand, the journal, the rate in use, an operator fault). Only
provider calls are observed as they happen (`Sender.observe_call`, from the call threads):
their latency and size go into histograms.

Health: /healthz fails when the main loop has not turned for a long time; /readyz passes
once the preflight has passed and while sending is not stopped (an operator fault, or a
stop signal). An operator fault shows at once as `mailroom_sender_stopped{fault="..."} 1`
and a failing /readyz, for as long as the sender settles its calls in flight before it
exits with status 75.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.heartbeat import HEARTBEAT_STALE_S, Verdict
from mailroom.metrics_http import (
    MetricsServer,
    format_address,
    new_registry,
    serve,
)
from mailroom.settings import ConfigError, SenderSettings
from sender.dispatch import Sender
from sender.reader import REJECT_KINDS

log = logging.getLogger("sender.metrics")

OUTCOMES = (
    "delivered",
    "retried",
    "recipient_refused",
    "operator_fault",
    "deadline_passed",
    "duplicate_skipped",
)
# what was wrong with a rejected input line or record (sender/reader.py REJECT_KINDS, and "other")
INPUT_REJECT_REASONS = (*dict.fromkeys(kind for _, kind in REJECT_KINDS), "other")
# what a provider call came to: "answered" (per-destination statuses, each counted in the
# outcomes), or the outcome class of a whole failed call (sender/retry.py), or "error" (a bug)
CALL_RESULTS = ("answered", "retry", "quota", "isolate", "operator_fault", "recipient_refused", "error")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
DESTINATION_BUCKETS = (1, 2, 5, 10, 14, 20, 30, 40, 50)


class SenderMonitor:
    """What the endpoints need besides the sender itself: whether its preflight passed."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.preflight_passed = False

    def live(self) -> Verdict:
        turned = self.sender.loop_turned_at
        if turned is None:
            return True, "starting (preflight)" if not self.preflight_passed else "starting"
        age = time.monotonic() - turned
        if age > HEARTBEAT_STALE_S:
            return False, f"the main loop has not turned for {age:.0f} s (bound {HEARTBEAT_STALE_S:.0f} s)"
        return True, f"the main loop turned {age:.1f} s ago"

    def ready(self) -> Verdict:
        fault = self.sender.fault
        if fault is not None:
            return False, f"sending stopped on an operator fault: {fault.code}; fix: {fault.fix or 'see the log'}"
        if not self.preflight_passed:
            return False, "preflight has not passed"
        if self.sender.stopping:
            return False, "stopping"
        return True, "preflight passed, sending"


class _Exporter(PromCollector):
    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def collect(self) -> Iterator[Any]:
        sender = self.sender
        counts = sender.counts
        yield CounterMetricFamily(
            "mailroom_sender_records_read", "Records read from stdin (and journaled)", counts.read
        )
        rejected = CounterMetricFamily(
            "mailroom_sender_input_rejected",
            "Input lines or records rejected when read (rows of rejects.jsonl), by what was wrong with them",
            labels=["reason"],
        )
        seen_input = dict(counts.input_rejected)  # a copy: the reader thread may add a key meanwhile
        for reason in INPUT_REJECT_REASONS:
            rejected.add_metric([reason], seen_input.get(reason, 0))
        yield rejected
        yield CounterMetricFamily(
            "mailroom_sender_records_recovered",
            "Unfinished records taken over from the journal at start",
            counts.recovered,
        )
        outcomes = CounterMetricFamily(
            "mailroom_sender_outcomes",
            "What became of records, by outcome class and action (retried: each retry scheduled)",
            labels=["outcome", "action"],
        )
        seen = dict(counts.outcomes)  # a copy: the main thread may add a key meanwhile
        # actions 1 and 2 always (at 0 until they count); any other action once it has a count
        names = dict.fromkeys([ACTIVATION.name, PASSWORD_RECOVERY.name, *sorted({a for _, a in seen})])
        for outcome in OUTCOMES:
            for name in names:
                outcomes.add_metric([outcome, name], seen.get((outcome, name), 0))
        yield outcomes
        yield CounterMetricFamily(
            "mailroom_sender_call_splits", "Calls split in halves to isolate a refused address", counts.splits
        )
        yield GaugeMetricFamily(
            "mailroom_sender_records_in_hand",
            "Records read and not finished (ready, in flight, waiting to retry); the reader stops at a bound",
            sender.in_hand,
        )
        yield GaugeMetricFamily(
            "mailroom_sender_journal_unfinished_records",
            "Records in the journal not yet finished (kept across restarts)",
            sender.journal.unfinished_count(),
        )
        rate = sender.config.max_send_rate
        if rate is not None:
            yield GaugeMetricFamily(
                "mailroom_sender_max_send_rate",
                "Emails per second the sender paces itself at (the account's MaxSendRate or MAILROOM_SES_MAX_SEND_RATE)",
                rate,
            )
        stopped = GaugeMetricFamily(
            "mailroom_sender_stopped",
            "1 while sending is stopped on an operator fault (the fault's code as a label)",
            labels=["fault"],
        )
        fault = sender.fault
        stopped.add_metric([fault.code if fault else ""], 1 if fault else 0)
        yield stopped
        redirect = GaugeMetricFamily(
            "mailroom_sender_redirect",
            "1 while MAILROOM_REDIRECT_TO sends every email to one address (the label), as on staging; 0 when off",
            labels=["to"],
        )
        to = sender.config.redirect.to if sender.config.redirect is not None else ""
        redirect.add_metric([to], 1 if to else 0)
        yield redirect


class CallMetrics:
    """Provider calls as they happen: called from the call threads (prometheus_client locks)."""

    def __init__(self, registry: CollectorRegistry, provider: str) -> None:
        self.calls = Counter(
            "mailroom_sender_provider_calls",
            "Provider calls (SendBulkTemplatedEmail), by result",
            ["provider", "result"],
            registry=registry,
        )
        self.latency = Histogram(
            "mailroom_sender_provider_call_duration_seconds",
            "Time from sending a provider call to its answer (rate-limiter wait excluded)",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.destinations = Histogram(
            "mailroom_sender_call_destinations",
            "Destinations per provider call",
            ["provider"],
            buckets=DESTINATION_BUCKETS,
            registry=registry,
        )
        self.waited = Counter(
            "mailroom_sender_rate_limit_wait_seconds",
            "Time calls waited for the rate limiter before they could start",
            ["provider"],
            registry=registry,
        )
        self.provider = provider
        self._calls = {r: self.calls.labels(provider, r) for r in CALL_RESULTS}
        self._latency = self.latency.labels(provider)
        self._destinations = self.destinations.labels(provider)
        self._waited = self.waited.labels(provider)

    def __call__(self, destinations: int, waited_s: float, duration_s: float, result: str) -> None:
        child = self._calls.get(result) or self.calls.labels(self.provider, result)
        child.inc()
        self._latency.observe(duration_s)
        self._destinations.observe(destinations)
        if waited_s > 0:
            self._waited.inc(waited_s)


def build_registry(sender: Sender) -> tuple[CollectorRegistry, CallMetrics]:
    registry = new_registry()
    registry.register(_Exporter(sender))
    return registry, CallMetrics(registry, sender.provider.name)


def start(settings: SenderSettings, sender: Sender) -> SenderMonitor | None:
    """Serve the metrics and health endpoints when MAILROOM_SENDER_METRICS_ADDR is set, and
    observe the sender's calls; ConfigError when the address cannot be listened on."""
    if settings.metrics_addr is None:
        return None
    monitor = SenderMonitor(sender)
    registry, calls = build_registry(sender)
    try:
        server: MetricsServer = serve(settings.metrics_addr, registry, monitor.live, monitor.ready)
    except OSError as exc:
        raise ConfigError(
            "MAILROOM_SENDER_METRICS_ADDR",
            f"cannot listen on {format_address(settings.metrics_addr)}: {exc.strerror or exc}",
        ) from None
    sender.observe_call = calls
    log.info("serving /metrics, /healthz and /readyz on http://%s", format_address(server.address))
    return monitor
