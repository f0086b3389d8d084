"""Bounce and complaint rates over the last 24 hours and 7 days, against SES's marks.

SES reviews an account whose bounce rate reaches 5 % or complaint rate 0.1 %, and may pause
its sending at 10 % and 0.5 % (SES's sending review process). SES counts hard bounces; so does mailroom: the bounce rate is permanent
bounces over messages sent, the complaint rate complaints over messages sent. "Sent" is the
number of Send events, or deliveries plus bounces when that is larger (identity
notifications publish no Send events).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from mailroom.db import queries

BOUNCE_REVIEW, BOUNCE_PAUSE = 0.05, 0.10
COMPLAINT_REVIEW, COMPLAINT_PAUSE = 0.001, 0.005


@dataclass(frozen=True)
class Rates:
    window: str  # 24h or 7d
    sent: int
    delivered: int
    bounced: int
    hard_bounced: int
    complained: int

    @property
    def base(self) -> int:
        return max(self.sent, self.delivered + self.bounced)

    @property
    def bounce_rate(self) -> float | None:
        return self.hard_bounced / self.base if self.base else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.base if self.base else None


def read(conn: psycopg.Connection) -> list[Rates]:
    """The 24-hour and 7-day rates, in that order."""
    return [Rates(str(w), *(int(n) for n in counts)) for w, *counts in conn.execute(queries("events.sql")["rates"])]


def mark(rate: float | None, review: float, pause: float) -> str:
    """`ok`, `review` (at or past SES's review mark) or `pause` (at or past its pause mark)."""
    if rate is None or rate < review:
        return "ok"
    return "review" if rate < pause else "pause"


def describe(r: Rates) -> str:
    """One line for a person: `24h: 2,000 sent, bounce 0.40 % (ok), complaint 0.000 % (ok)`."""
    if not r.base:
        return f"{r.window}: no event recorded"
    bounce, complaint = r.bounce_rate or 0.0, r.complaint_rate or 0.0
    return (
        f"{r.window}: {r.base:,} sent, bounce {bounce:.2%} ({mark(bounce, BOUNCE_REVIEW, BOUNCE_PAUSE)}), "
        f"complaint {complaint:.3%} ({mark(complaint, COMPLAINT_REVIEW, COMPLAINT_PAUSE)})"
    )
