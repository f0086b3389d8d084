"""SIGTERM and SIGINT as a flag: handlers only set it, the loops look at it.

Nothing is interrupted mid-chunk: a chunk in progress is finished (or rolled back) and
the program exits between chunks, or within one short wait slice when idle.
"""

from __future__ import annotations

import signal
import time
from types import FrameType


class StopFlag:
    """Set once a stop signal arrived; `sleep` naps in short slices so it is seen quickly."""

    SLICE_S = 0.1

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None

    def set(self, name: str = "stop") -> None:
        if self.signal_name is None:
            self.signal_name = name

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning early once the flag is set."""
        deadline = time.monotonic() + seconds
        while not self:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(self.SLICE_S, remaining))


def install(flag: StopFlag) -> None:
    """Route SIGTERM and SIGINT to `flag`."""

    def handler(signum: int, frame: FrameType | None) -> None:
        flag.set(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
