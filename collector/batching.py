"""The batching policy, in one place: when the collector reads the queue.

A notification is a wake-up signal, never a row count (PostgreSQL folds identical
notifications of a transaction into one; the trigger sends one per statement). So:

1. Wait for the first notification, at most HEALTHCHECK_INTERVAL; if none comes, say so
   (the caller runs the health check, which is a drain pass: a query on the connection).
2. After the first, keep collecting until BATCH_LIMIT notifications have arrived or
   BATCH_TIMEOUT has passed since the first, whichever is sooner.
3. The caller then drains the queue until it is empty.

This is the rule while the collector sleeps; awake (collector/awake.py) it applies the same
rule to queued tokens, since inserts then send no notification.

Waits are cut into short slices so that a stop signal is seen within SLICE_S.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector.signals import StopFlag
from mailroom.settings import CollectorSettings

SLICE_S = 0.25

# wait(timeout_s, stop_after) -> how many notifications arrived (0 on timeout)
WaitForNotifications = Callable[[float, int], int]


class Wake(enum.Enum):
    BATCH = "batch"  # notifications arrived: read now
    HEALTHCHECK = "healthcheck"  # silence for HEALTHCHECK_INTERVAL: check the connection
    STOP = "stop"  # a stop signal arrived


@dataclass(frozen=True)
class BatchPolicy:
    limit: int
    timeout_s: float
    healthcheck_s: float

    @classmethod
    def from_settings(cls, settings: CollectorSettings) -> BatchPolicy:
        return cls(
            limit=settings.batch_limit,
            timeout_s=settings.batch_timeout_ms / 1000.0,
            healthcheck_s=settings.healthcheck_interval_ms / 1000.0,
        )


def wait_for_batch(
    wait: WaitForNotifications, policy: BatchPolicy, stop: StopFlag, clock: Callable[[], float] = time.monotonic
) -> tuple[Wake, int]:
    """Block until it is time to read; return why, and how many notifications were seen."""
    idle_deadline = clock() + policy.healthcheck_s
    received = 0
    while received == 0:
        if stop:
            return Wake.STOP, 0
        remaining = idle_deadline - clock()
        if remaining <= 0:
            return Wake.HEALTHCHECK, 0
        received = wait(min(SLICE_S, remaining), 1)
    batch_deadline = clock() + policy.timeout_s
    while received < policy.limit:
        if stop:
            return Wake.STOP, received
        remaining = batch_deadline - clock()
        if remaining <= 0:
            break
        received += wait(min(SLICE_S, remaining), policy.limit - received)
    return (Wake.STOP if stop else Wake.BATCH), received
