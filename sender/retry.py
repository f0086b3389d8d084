"""THE retry policy of the sender, in one place: what is worth retrying, and how long to wait.

botocore is configured not to retry (max_attempts=1, see ses.py): every retry happens here,
per destination, bounded by MAILROOM_SEND_DEADLINE, and only for what did not succeed.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from mailroom.backoff import Backoff


class Verdict(enum.Enum):
    DONE = "done"  # delivered to SES
    RETRY = "retry"  # worth another try soon (backoff with full jitter)
    QUOTA = "quota"  # daily quota exhausted: wait minutes, not seconds
    PERMANENT = "permanent"  # will not get better: rejects.jsonl with SES's status and message


# Per-destination statuses of SendBulkTemplatedEmail (SES v1 BulkEmailDestinationStatus).
STATUS_VERDICTS: dict[str, Verdict] = {
    "Success": Verdict.DONE,
    "TransientFailure": Verdict.RETRY,
    "AccountThrottled": Verdict.RETRY,
    "Failed": Verdict.RETRY,  # "SES was unable to process your request": unspecific, so try again
    "AccountDailyQuotaExceeded": Verdict.QUOTA,
    "MessageRejected": Verdict.PERMANENT,
    "MailFromDomainNotVerified": Verdict.PERMANENT,
    "ConfigurationSetDoesNotExist": Verdict.PERMANENT,
    "TemplateDoesNotExist": Verdict.PERMANENT,
    "AccountSuspended": Verdict.PERMANENT,
    "InvalidSendingPoolName": Verdict.PERMANENT,
    "AccountSendingPaused": Verdict.PERMANENT,
    "ConfigurationSetSendingPaused": Verdict.PERMANENT,
    "InvalidParameterValue": Verdict.PERMANENT,
}

# Error codes of a whole call (the API answered with an error document).
RETRYABLE_ERRORS = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "NetworkError",
    }
)
DAILY_QUOTA_MESSAGE = "daily message quota exceeded"


def status_verdict(status: str) -> Verdict:
    """Unknown statuses are retried: the deadline bounds them, and nothing is lost."""
    return STATUS_VERDICTS.get(status, Verdict.RETRY)


def error_verdict(code: str, message: str, http_status: int | None) -> Verdict:
    """What to do with every destination of a call that failed as a whole."""
    if code in ("Throttling", "ThrottlingException") and DAILY_QUOTA_MESSAGE in message.lower():
        return Verdict.QUOTA
    if code in RETRYABLE_ERRORS or (http_status is not None and http_status >= 500):
        return Verdict.RETRY
    return Verdict.PERMANENT


@dataclass(frozen=True)
class RetryPolicy:
    """Delays between attempts; tests inject small values so nothing sleeps for real."""

    backoff: Backoff = Backoff(base=0.2, cap=20.0)
    quota_delay: float = 300.0  # "minutes": half to all of this, drawn at random
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, verdict: Verdict, attempt: int) -> float:
        if verdict is Verdict.QUOTA:
            return self.rng.uniform(self.quota_delay / 2, self.quota_delay)
        return self.backoff.delay(attempt, self.rng)
