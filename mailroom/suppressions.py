"""The suppression list's one rule for when two spellings are one mailbox.

An address's key is its local part as written, '@', and its domain in IDNA A-label form in
lower case: `Ada@Example.COM` and `Ada@example.com` share a key, so do `zoë@bücher.de`
and `zoë@xn--bcher-kva.de`; `ada@example.com` does not (only the receiving host may read
meaning into a local part, RFC 5321 §2.4). This is SQL's `mailroom_address_key` in Python,
key for key (migrations/0007_deliverability.sql): a non-ASCII domain has a key only when the
address rule (mailroom.addresses) admits it, since only then is SQL's A-label IDNA's.
"""

from __future__ import annotations

import idna

from mailroom import addresses


class NotAnAddress(ValueError):
    """The text has no local part or domain, or a non-ASCII domain the address rule refuses."""


def address_key(address: str) -> str:
    """The key of `address` in `suppressions`; NotAnAddress when it cannot have one."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise NotAnAddress(f"{address!r} is not an email address (a local part, @, a domain)")
    return f"{local}@{domain_key(domain)}"


def domain_key(domain: str) -> str:
    """A domain in A-label form, lower case: equal for the Unicode and Punycode spellings.

    An ASCII domain is only lowered (as SQL's mailroom_address_key does), so that a domain
    IDNA would refuse (an underscore in a label) still gets the key SQL gives it. A non-ASCII
    domain the address rule refuses has no key (SQL gives NULL for it).
    """
    if domain.isascii():
        return domain.lower()
    problem = addresses.problem(f"a@{domain}")
    if problem is not None:
        raise NotAnAddress(f"the domain {domain!r} has no key: {problem}")
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:  # the rule admits only what idna encodes (tests/unit/test_addresses.py)
        raise NotAnAddress(f"the domain {domain!r} cannot be written in IDNA A-labels: {exc}") from None
