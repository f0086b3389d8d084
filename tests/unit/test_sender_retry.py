"""The retry policy table and the rate limiter, on their own."""

from __future__ import annotations

import pytest

from mailroom.backoff import Backoff
from sender.ratelimit import RateLimiter
from sender.retry import RetryPolicy, Verdict, error_verdict, status_verdict


@pytest.mark.parametrize(
    "status,verdict",
    [
        ("Success", Verdict.DONE),
        ("TransientFailure", Verdict.RETRY),
        ("AccountThrottled", Verdict.RETRY),
        ("Failed", Verdict.RETRY),
        ("AccountDailyQuotaExceeded", Verdict.QUOTA),
        ("MessageRejected", Verdict.PERMANENT),
        ("TemplateDoesNotExist", Verdict.PERMANENT),
        ("InvalidParameterValue", Verdict.PERMANENT),
        ("SomethingNew", Verdict.RETRY),
    ],
)
def test_destination_statuses(status, verdict):
    assert status_verdict(status) is verdict


@pytest.mark.parametrize(
    "code,message,http,verdict",
    [
        ("Throttling", "Maximum sending rate exceeded.", 400, Verdict.RETRY),
        ("Throttling", "Daily message quota exceeded.", 400, Verdict.QUOTA),
        ("ServiceUnavailable", "", 503, Verdict.RETRY),
        ("Whatever", "", 500, Verdict.RETRY),
        ("NetworkError", "connection reset", None, Verdict.RETRY),
        ("MessageRejected", "Email address is not verified.", 400, Verdict.PERMANENT),
        ("TemplateDoesNotExist", "", 400, Verdict.PERMANENT),
        ("InvalidParameterValue", "", 400, Verdict.PERMANENT),
    ],
)
def test_call_errors(code, message, http, verdict):
    assert error_verdict(code, message, http) is verdict


def test_quota_delay_is_minutes_and_fast_delay_is_capped():
    policy = RetryPolicy(Backoff(0.2, 20.0), quota_delay=300.0)
    assert all(150 <= policy.delay(Verdict.QUOTA, 0) <= 300 for _ in range(50))
    assert all(0 <= policy.delay(Verdict.RETRY, 30) <= 20 for _ in range(50))


def test_rate_limiter_never_grants_more_than_the_rate_in_any_window():
    now = [0.0]
    grants: list[tuple[float, int]] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
    for n in [10, 3, 7, 10, 1, 9, 10, 10, 4, 6] * 3:
        grants.append((limiter.acquire(n), n))
    for start, _ in grants:
        assert sum(n for t, n in grants if start <= t < start + 1.0) <= 10
    assert now[0] < 21  # it waits only as long as needed: 240 emails at 10/s


def test_rate_limiter_refuses_a_call_larger_than_the_rate():
    with pytest.raises(ValueError):
        RateLimiter(5).acquire(6)
