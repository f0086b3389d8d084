"""Capped exponential backoff with full jitter, shared by reconnects and SES retries.

Full jitter (a uniform draw between zero and the capped exponential) spreads retries of
many clients apart; see "Exponential Backoff And Jitter" on the AWS architecture blog.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float

    def ceiling(self, attempt: int) -> float:
        """The largest delay for `attempt` (0-based): base * 2**attempt, at most cap."""
        return min(self.cap, self.base * (2.0 ** min(attempt, 32)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A delay drawn uniformly from [0, ceiling(attempt)]."""
        draw = rng.uniform if rng is not None else random.uniform
        return draw(0.0, self.ceiling(attempt))
