"""What the collector did, in plain numbers: the counters its loop bumps.

Apart from collector.metrics (which turns them into Prometheus metrics when
MAILROOM_COLLECTOR_METRICS_ADDR is set) so that a collector with its metrics off, the
default, starts without importing prometheus_client.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from collector.output import LineWriter
from mailroom.heartbeat import Heartbeat, Verdict


@dataclass
class CollectorStats:
    """What the collector did, in plain numbers; written by its loop only."""

    tokens_emitted: int = 0
    lines_written: int = 0
    bytes_written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # not sendable, by reason
    reconnects: int = 0
    connected: bool = False
    role: str = ""  # "", "standby" or "active"
    listening: bool = False
    awake: bool = False
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    # (seconds spent waiting for the reader so far, monotonic start of the wait in progress or
    # None): replaced as a whole, so that the metrics thread reads a consistent pair
    waits: tuple[float, float | None] = (0.0, None)

    def wait_until_read(self, output: LineWriter) -> None:
        """`output.wait_until_read()`, timed: back-pressure from the sender."""
        waited, started = self.waits[0], time.monotonic()
        self.waits = (waited, started)
        try:
            output.wait_until_read()
        finally:
            self.waits = (waited + time.monotonic() - started, None)

    def backpressure_s(self) -> float:
        """Seconds waited for the reader so far, the wait in progress included."""
        waited, since = self.waits
        return waited + (time.monotonic() - since if since is not None else 0.0)

    def committed(self, emitted: int, lines: int, nbytes: int, skipped: Counter[str] | None) -> None:
        """A transaction of chunks was committed: its lines are the sender's now."""
        self.tokens_emitted += emitted
        self.lines_written += lines
        self.bytes_written += nbytes
        if skipped:
            self.skipped.update(skipped)
        self.heartbeat.beat()

    def disconnected(self) -> None:
        self.connected = self.listening = self.awake = False
        self.role = ""

    def ready(self) -> Verdict:
        if self.role == "standby":
            return True, "standing by: another collector is active on the queue"
        if self.connected and self.listening:
            return True, "connected, active and listening"
        return False, "connecting to the database" if not self.connected else "connected, not listening yet"
