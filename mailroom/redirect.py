"""The staging interceptor: MAILROOM_REDIRECT_TO sends every email to one address instead.

A staging deployment holds copies of real accounts; its sender must never write to them.
With MAILROOM_REDIRECT_TO set, the sender gives every email to the provider addressed to that
one mailbox, its subject starting with `[to: original@address] `, except the addresses the
allow-list MAILROOM_REDIRECT_EXCEPT lets through (the team's own).

The allow-list is comma-separated; each entry is either a whole address (`qa@example.com`:
that mailbox only; its local part compared exactly, its domain case-insensitively) or
`@domain` (`@example.com`: every address whose domain is exactly that one, in any case;
not its subdomains). An address not on the list is redirected: a mistake in the list
redirects more, never less.

The prefix reaches the subject through the template variable `redirect_prefix`: the sender
gives it to every message (empty when not redirected), the subjects rendered locally (SMTP,
debug mode) start with `{{{redirect_prefix}}}`, and so do the SES templates pushed by
`mailroom templates push` while MAILROOM_REDIRECT_TO is set (docs/how-to/operate.md says why).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TypeVar

from mailroom.templates import EmailTemplate

PREFIX_VARIABLE = "redirect_prefix"
SUBJECT_TAG = "{{{" + PREFIX_VARIABLE + "}}}"  # raw: an address holds characters HTML-escaping would change
_ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+")
_DOMAIN = re.compile(r"@([^@\s,<>]+)")
K = TypeVar("K")


@dataclasses.dataclass(frozen=True)
class Redirect:
    """Where every email goes, and who is let through to their own address."""

    to: str  # the redirect address as the provider takes it
    addresses: frozenset[str] = frozenset()  # whole addresses: local part as given, domain lower-cased
    domains: frozenset[str] = frozenset()  # lower-cased

    @classmethod
    def from_settings(cls, to: str, exceptions: tuple[str, ...]) -> Redirect:
        addresses = {_normal(e) for e in exceptions if not e.startswith("@")}
        domains = {e[1:].lower() for e in exceptions if e.startswith("@")}
        return cls(to, frozenset(addresses), frozenset(domains))

    def lets_through(self, email: str) -> bool:
        """True: `email` is on the allow-list and gets its own email."""
        if not self.addresses and not self.domains:
            return False
        domain = email.rpartition("@")[2].lower()
        return domain in self.domains or _normal(email) in self.addresses

    def describe(self) -> str:
        """One line for the log and `sender --check`: where the mail goes, and the exceptions."""
        allowed = sorted(self.addresses) + sorted("@" + d for d in self.domains)
        return f"every email goes to {self.to} instead of its recipient, " + (
            f"except to {', '.join(allowed)} (MAILROOM_REDIRECT_EXCEPT)" if allowed else "with no exception"
        )


def _normal(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def subject_prefix(original: str) -> str:
    """What a redirected email's subject starts with: the address it was meant for."""
    return f"[to: {original}] "


def has_subject_tag(subject: str) -> bool:
    return subject.lstrip().startswith(SUBJECT_TAG)


def with_subject_tag(template: EmailTemplate) -> EmailTemplate:
    """`template` with its subject starting with the prefix variable (once, however often called)."""
    if has_subject_tag(template.subject):
        return template
    return dataclasses.replace(template, subject=SUBJECT_TAG + template.subject)


def with_subject_tags(templates: Mapping[K, EmailTemplate]) -> dict[K, EmailTemplate]:
    return {key: with_subject_tag(t) for key, t in templates.items()}


def parse_address(raw: str) -> str | None:
    """A bare address (no display name, no list), or None."""
    value = raw.strip()
    return value if _ADDRESS.fullmatch(value) else None


def parse_exceptions(raw: str) -> tuple[str, ...] | None:
    """The allow-list's entries, or None when an entry is neither an address nor `@domain`."""
    entries = tuple(e.strip() for e in raw.split(",") if e.strip())
    for entry in entries:
        if not (_ADDRESS.fullmatch(entry) or _DOMAIN.fullmatch(entry)):
            return None
    return entries
