"""SIGTERM and SIGINT as a flag: handlers only set it, the loops look at it.

Nothing is interrupted mid-chunk: a chunk in progress is finished (or rolled back) and
the program exits between chunks, or within one short wait slice when idle.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from types import FrameType


class StopFlag:
    """Set once a stop signal arrived; `sleep` naps in short slices so it is seen quickly."""

    SLICE_S = 0.1

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._wake: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None

    def set(self, name: str = "stop") -> None:
        if self.signal_name is None:
            self.signal_name = name
        if self._wake is not None:
            with contextlib.suppress(OSError):  # full: it is readable already
                os.write(self._wake[1], b"\0")

    def wakeup_fd(self) -> int:
        """A descriptor that becomes readable once the flag is set, to poll beside another
        one (a blocked write would otherwise not see a signal: poll() resumes after it)."""
        if self._wake is None:
            self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            if self:
                os.write(self._wake[1], b"\0")
        return self._wake[0]

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
