"""The heartbeat behind /healthz: when a program's main loop last turned.

Apart from mailroom.metrics_http so that the collector with its metrics off (the default)
never imports prometheus_client: the loop beats whether or not anyone serves the verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# /healthz fails when the program's loop has not turned for this long. Both loops turn at least
# every second or so when healthy; the bound is generous so that a slow disk or a slow database
# answer never gets a healthy process restarted.
HEARTBEAT_STALE_S = 120.0

Verdict = tuple[bool, str]


class Heartbeat:
    """The last time (monotonic) the program's main loop turned; None until it first does."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.at: float | None = None

    def beat(self) -> None:
        self.at = self.clock()

    def verdict(self, stale_s: float = HEARTBEAT_STALE_S) -> Verdict:
        if self.at is None:
            return True, "starting"
        age = self.clock() - self.at
        if age > stale_s:
            return False, f"the main loop has not turned for {age:.0f} s (bound {stale_s:.0f} s)"
        return True, f"the main loop turned {age:.1f} s ago"
