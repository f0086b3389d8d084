"""Bounce and complaint rates (mailroom/rates.py, sql/events.sql `rates`) against SES's review
and pause marks, from events recorded by mailroom/recorder.py, and in `mailroom status`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from test_recorder import ses_event

from mailroom import rates
from mailroom.commands import status
from mailroom.recorder import record


def test_rates_over_24_hours_and_7_days_against_the_review_and_pause_marks(db: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    for i in range(100):  # 100 sent today
        record(db, ses_event("Send", f"u{i}@example.com", message_id=f"s{i}", at=now - timedelta(minutes=5)))
    for i in range(6):  # 6 hard bounces today: 6 % is past the review mark
        record(db, ses_event("Bounce", f"u{i}@example.com", message_id=f"s{i}", at=now - timedelta(minutes=1)))
    record(db, ses_event("Bounce", "t@example.com", message_id="t", bounce_type="Transient", at=now))  # not counted
    record(db, ses_event("Complaint", "u50@example.com", message_id="s50", at=now))  # 1 %: past the pause mark
    for i in range(100):  # 100 more sent 3 days ago, with nothing wrong
        record(db, ses_event("Send", f"v{i}@example.com", message_id=f"v{i}", at=now - timedelta(days=3)))
    day, week = rates.read(db)
    assert (day.window, day.sent, day.hard_bounced, day.bounced, day.complained) == ("24h", 100, 6, 7, 1)
    assert (week.window, week.sent) == ("7d", 200)
    assert day.bounce_rate == 0.06 and week.bounce_rate == 0.03
    assert rates.mark(day.bounce_rate, rates.BOUNCE_REVIEW, rates.BOUNCE_PAUSE) == "review"
    assert rates.mark(week.bounce_rate, rates.BOUNCE_REVIEW, rates.BOUNCE_PAUSE) == "ok"
    assert rates.mark(day.complaint_rate, rates.COMPLAINT_REVIEW, rates.COMPLAINT_PAUSE) == "pause"
    assert rates.describe(day) == "24h: 100 sent, bounce 6.00% (review), complaint 1.000% (pause)"


def test_without_send_events_deliveries_and_bounces_are_the_base(db: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    for i in range(19):
        record(db, ses_event("Delivery", f"d{i}@example.com", message_id=f"d{i}", at=now))
    record(db, ses_event("Bounce", "b@example.com", message_id="b", at=now))
    day, _ = rates.read(db)
    assert day.base == 20 and day.bounce_rate == 0.05


def test_no_event_is_no_rate(db: psycopg.Connection) -> None:
    assert [rates.describe(r) for r in rates.read(db)] == ["24h: no event recorded", "7d: no event recorded"]


def test_mailroom_status_shows_the_rates(database_url: str, db: psycopg.Connection, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    record(db, ses_event("Send", "a@example.com", message_id="a", at=now))
    record(db, ses_event("Bounce", "a@example.com", message_id="a", at=now))
    screen = status.render(status.collect(database_url, tmp_path))
    assert "Deliverability (SES events recorded by `mailroom events`)\n  24h: 1 sent, bounce 100.00% (pause)" in screen
