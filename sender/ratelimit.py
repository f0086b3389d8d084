"""Never more than `rate` emails in any one-second window, shared by every worker thread.

A sliding-window log (time, emails) rather than a token bucket with a burst: a call of n
destinations may start only when the calls started in the last second plus n stay within
the rate, which is exactly how an observer counting emails per second would check it.
Calls are therefore never larger than the rate (see dispatch.batch_size).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        window: float = 1.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._log: deque[tuple[float, int]] = deque()
        self._in_window = 0
        self._lock = threading.Lock()

    def acquire(self, n: int) -> float:
        """Block until `n` emails may go out now; return the time they were granted."""
        if n > self.rate:
            raise ValueError(f"a call of {n} emails can never fit a rate of {self.rate}/s")
        while True:
            with self._lock:
                now = self._clock()
                while self._log and self._log[0][0] <= now - self.window:
                    self._in_window -= self._log.popleft()[1]
                if self._in_window + n <= self.rate:
                    self._log.append((now, n))
                    self._in_window += n
                    return now
                # wait until enough of the oldest calls leave the window
                need, freed, until = self._in_window + n - self.rate, 0, now
                for stamp, count in self._log:
                    freed += count
                    until = stamp + self.window
                    if freed >= need:
                        break
            self._sleep(max(until - now, 0.0005))
