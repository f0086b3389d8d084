"""The collector's batching policy (collector.batching), driven by a scripted clock and
notification source: when does it read, and why."""

from __future__ import annotations

from collections.abc import Callable

from collector.batching import SLICE_S, BatchPolicy, Wake, wait_for_batch
from collector.signals import StopFlag


class Script:
    """A fake clock plus a notification source that delivers `arrivals` (times, in s)."""

    def __init__(self, arrivals: list[float], on_wait: Callable[[float], None] | None = None) -> None:
        self.now = 0.0
        self.pending = sorted(arrivals)
        self.waits: list[float] = []
        self.on_wait = on_wait

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float, stop_after: int) -> int:
        assert 0 < timeout <= SLICE_S + 1e-9 and stop_after >= 1
        self.waits.append(timeout)
        if self.on_wait:
            self.on_wait(self.now)
        due = [t for t in self.pending if t <= self.now + timeout]
        if not due:
            self.now += timeout
            return 0
        got = due[:stop_after]
        self.now = max(self.now, got[-1])
        del self.pending[: len(got)]
        return len(got)


POLICY = BatchPolicy(limit=3, timeout_s=1.0, healthcheck_s=10.0)


def test_silence_for_the_healthcheck_interval_asks_for_a_health_check() -> None:
    s = Script([])
    assert wait_for_batch(s.wait, POLICY, StopFlag(), s.clock) == (Wake.HEALTHCHECK, 0)
    assert abs(s.now - 10.0) < 1e-6


def test_one_notification_reads_batch_timeout_after_it() -> None:
    s = Script([2.0])
    assert wait_for_batch(s.wait, POLICY, StopFlag(), s.clock) == (Wake.BATCH, 1)
    assert abs(s.now - 3.0) < 1e-6


def test_batch_limit_notifications_read_at_once() -> None:
    s = Script([2.0, 2.1, 2.2, 2.3])
    wake, count = wait_for_batch(s.wait, POLICY, StopFlag(), s.clock)
    assert (wake, count) == (Wake.BATCH, 3)
    assert abs(s.now - 2.2) < 1e-6


def test_the_timeout_counts_from_the_first_notification_not_the_last() -> None:
    s = Script([2.0, 2.9])
    assert wait_for_batch(s.wait, POLICY, StopFlag(), s.clock) == (Wake.BATCH, 2)
    assert abs(s.now - 3.0) < 1e-6


def test_waits_are_short_slices_and_a_stop_is_seen_within_one() -> None:
    stop = StopFlag()
    s = Script([], on_wait=lambda now: stop.set("SIGTERM") if now >= 1.0 else None)
    assert wait_for_batch(s.wait, POLICY, stop, s.clock) == (Wake.STOP, 0)
    assert s.now <= 1.0 + SLICE_S + 1e-6
    assert max(s.waits) <= SLICE_S
