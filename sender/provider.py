"""The one interface every provider (SES, SMTP, debug) implements.

The template data they send is built by `mailroom.templates` (`template_data`,
`default_template_data`), next to the renderer that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailroom.actions import Action
from mailroom.checks import Check
from mailroom.signing import SIGNED_TOKEN_CHARS
from mailroom.templates import DEFAULT_LOCALE, EmailTemplate
from sender.retry import Outcome

# A probe (the SES bisection's call to the mailbox simulator, the SMTP check that a template
# builds at all) carries this recipient data: the shape of a real record (an 86-character
# signed token, 5 digits), signed by no key, so no user's live token is ever sent for it.
PROBE_LOGIN = "mailroom-probe"
PROBE_SECRET = "A" * SIGNED_TOKEN_CHARS
PROBE_CODE = "00000"


@dataclass(frozen=True)
class Destination:
    email: str
    data: str  # ReplacementTemplateData (JSON)
    # The token's reference (mailroom.signing.token_ref), tagged on the message so that its SES
    # events find their token; None for a message of no token (the bisection probe): no tag.
    token_ref: str | None = None


@dataclass(frozen=True)
class DestinationResult:
    """SES's answer for one destination, in the order of the destinations."""

    status: str
    message_id: str | None = None
    error: str | None = None
    outcome: Outcome = Outcome.DELIVERED
    fix: str = ""  # for an operator fault: what the operator should do


@dataclass(frozen=True)
class BulkSend:
    """Everything one SendBulkTemplatedEmail call carries."""

    action: Action
    template: str  # the SES template's name
    source: str
    config_set: str
    default_data: str
    destinations: Sequence[Destination]
    locale: str = DEFAULT_LOCALE  # the templates' locale (the recipients', after the fallback)
    # the local template of (action, locale), for the providers that render (SMTP, debug);
    # None: the provider's own templates of the default locale, by action name
    local: EmailTemplate | None = None

    def local_template(self, templates: Mapping[str, EmailTemplate] | None) -> EmailTemplate | None:
        """The template to render this call's messages with, where the provider renders them."""
        if self.local is not None:
            return self.local
        return templates.get(self.action.name) if templates else None


class CallFailed(Exception):
    """The call failed as a whole: an API error document or no answer at all, classified (retry.py)."""

    def __init__(
        self, code: str, message: str, http_status: int | None = None, outcome: Outcome = Outcome.RETRY, fix: str = ""
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.outcome = outcome
        self.fix = fix


class UnsendableAddress(ValueError):
    """An address this provider can never take (the reason says why); rejected before any call."""


class Provider(Protocol):
    """What the dispatcher calls. Optional attributes it reads with getattr: `max_destinations`
    (destinations per send_bulk call, at most 50; SMTP declares 1 so that each message's result
    is journaled as soon as it is known), `endpoint` (where it sends, for log lines) and
    `probe_address` (SES's mailbox simulator, for isolating a refused destination)."""

    name: str

    def address(self, email: str) -> str:
        """The address as it goes out (IDN domains in Punycode); raises UnsendableAddress."""
        ...

    def preflight(self) -> list[Check]:
        """Checks run before any input is read (and by `sender --check`); all must pass to send."""
        ...

    def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
        """One result per destination, in order; raises CallFailed when the whole call fails."""
        ...

    def close(self) -> None:
        """Release connections at exit."""
        ...
