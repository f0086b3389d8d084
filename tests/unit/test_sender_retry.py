"""The one outcome table (sender/retry.py): every SES answer falls into exactly one class."""

from __future__ import annotations

import botocore.exceptions
import botocore.session
import pytest

from mailroom.backoff import Backoff
from sender.ratelimit import RateLimiter
from sender.retry import (
    Outcome,
    RetryPolicy,
    names,
    ses_error_outcome,
    ses_fix,
    ses_status_outcome,
)

SEND_BULK = botocore.session.get_session().get_service_model("ses").operation_model("SendBulkTemplatedEmail")
SOURCE = "Example <noreply@example.com>"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("Success", Outcome.DELIVERED),
        ("TransientFailure", Outcome.RETRY),
        ("AccountThrottled", Outcome.RETRY),
        ("Failed", Outcome.RETRY),
        ("AccountDailyQuotaExceeded", Outcome.QUOTA),
        ("MessageRejected", Outcome.REFUSED),
        ("InvalidParameterValue", Outcome.REFUSED),
        ("TemplateDoesNotExist", Outcome.OPERATOR),
        ("ConfigurationSetDoesNotExist", Outcome.OPERATOR),
        ("MailFromDomainNotVerified", Outcome.OPERATOR),
        ("AccountSuspended", Outcome.OPERATOR),
        ("AccountSendingPaused", Outcome.OPERATOR),
        ("ConfigurationSetSendingPaused", Outcome.OPERATOR),
        ("InvalidSendingPoolName", Outcome.OPERATOR),
        ("SomethingNew", Outcome.OPERATOR),
    ],
)
def test_each_destination_status_has_exactly_one_outcome(status, outcome):
    assert ses_status_outcome(status, "", SOURCE) is outcome


def test_a_destination_rejected_because_the_source_is_unverified_is_an_operator_fault():
    message = "Email address is not verified. The following identities failed the check: noreply@example.com"
    assert ses_status_outcome("MessageRejected", message, SOURCE) is Outcome.OPERATOR
    other = "Email address is not verified. The following identities failed the check: ada@example.org"
    assert ses_status_outcome("MessageRejected", other, SOURCE) is Outcome.REFUSED


@pytest.mark.parametrize(
    ("code", "message", "http", "outcome"),
    [
        ("Throttling", "Maximum sending rate exceeded.", 400, Outcome.RETRY),
        ("Throttling", "Daily message quota exceeded.", 400, Outcome.QUOTA),
        ("ThrottlingException", "Rate exceeded", 400, Outcome.RETRY),
        ("ServiceUnavailable", "", 503, Outcome.RETRY),
        ("InternalFailure", "", 500, Outcome.RETRY),
        ("Whatever", "", 500, Outcome.RETRY),
        ("RequestTimeout", "", 400, Outcome.RETRY),
        ("", "", 429, Outcome.RETRY),
        ("InvalidParameterValue", "Missing final '@domain'", 400, Outcome.ISOLATE),
        ("MessageRejected", "Email address is not verified.", 400, Outcome.ISOLATE),
        ("TemplateDoesNotExist", "Template activationv1 does not exist", 400, Outcome.OPERATOR),
        ("ConfigurationSetDoesNotExist", "", 400, Outcome.OPERATOR),
        ("MailFromDomainNotVerifiedException", "", 400, Outcome.OPERATOR),
        ("AccountSendingPausedException", "", 400, Outcome.OPERATOR),
        ("ConfigurationSetSendingPausedException", "", 400, Outcome.OPERATOR),
        ("AccessDenied", "not authorized to perform ses:SendBulkTemplatedEmail", 403, Outcome.OPERATOR),
        ("InvalidClientTokenId", "The security token included in the request is invalid.", 403, Outcome.OPERATOR),
        ("SignatureDoesNotMatch", "", 403, Outcome.OPERATOR),
        ("ExpiredToken", "The security token included in the request is expired", 403, Outcome.OPERATOR),
        ("UnrecognizedClientException", "", 400, Outcome.OPERATOR),
        ("SomethingNobodyHasSeen", "", 400, Outcome.OPERATOR),
    ],
)
def test_each_call_error_has_exactly_one_outcome(code, message, http, outcome):
    assert ses_error_outcome(code, message, http, operation_model=SEND_BULK) is outcome


@pytest.mark.parametrize(
    ("exception", "outcome"),
    [
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), Outcome.RETRY),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), Outcome.RETRY),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), Outcome.RETRY),
        (botocore.exceptions.NoRegionError(), Outcome.OPERATOR),
    ],
)
def test_transport_failures_are_classified_by_botocore(exception, outcome):
    assert ses_error_outcome("", str(exception), None, operation_model=SEND_BULK, exception=exception) is outcome


def test_every_operator_fault_names_a_fix():
    fix = ses_fix("TemplateDoesNotExist", template="activationv1", region="us-east-1")
    assert "mailroom templates push" in fix and "us-east-1" in fix
    assert "MAILROOM_SES_CONFIG_SET" in ses_fix("ConfigurationSetDoesNotExist", config_set="default")
    assert "errors/" in ses_fix("SomethingNobodyHasSeen")


def test_names_finds_the_addresses_a_message_names():
    message = (
        "Email address is not verified. The following identities failed the check in region US-EAST-1: a@x.org, B@Y.org"
    )
    assert names(message, ["a@x.org", "b@y.org", "c@z.org"]) == {"a@x.org", "b@y.org"}


def test_quota_delay_is_minutes_and_fast_delay_is_capped():
    policy = RetryPolicy(Backoff(0.2, 20.0), quota_delay=300.0)
    assert all(150 <= policy.delay(Outcome.QUOTA, 0) <= 300 for _ in range(50))
    assert all(0 <= policy.delay(Outcome.RETRY, 30) <= 20 for _ in range(50))


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
