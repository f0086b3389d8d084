"""The suppression list's one rule for when two spellings are one mailbox.

An address's key is its local part as written, '@', and its domain in IDNA A-label form in
lower case: `Ada@Example.COM` and `Ada@example.com` share a key, so do `zoë@bücher.de`
and `zoë@xn--bcher-kva.de`; `ada@example.com` does not (only the receiving host may read
meaning into a local part, RFC 5321 §2.4). Every writer of `suppressions` passes this key;
SQL's `mailroom_address_key` gives the same key for ASCII domains and cannot do IDNA, so
SQL callers with a non-ASCII domain pass the key computed here (or by any IDNA library).
"""

from __future__ import annotations

import idna


class NotAnAddress(ValueError):
    """The text has no local part or domain, or a domain that IDNA cannot encode."""


def address_key(address: str) -> str:
    """The key of `address` in `suppressions`; NotAnAddress when it cannot have one."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise NotAnAddress(f"{address!r} is not an email address (a local part, @, a domain)")
    return f"{local}@{domain_key(domain)}"


def domain_key(domain: str) -> str:
    """A domain in A-label form, lower case: equal for the Unicode and Punycode spellings.

    An ASCII domain is only lowered (as SQL's mailroom_address_key does), so that a domain
    IDNA would refuse (an underscore in a label) still gets the key SQL gives it.
    """
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise NotAnAddress(f"the domain {domain!r} cannot be written in IDNA A-labels: {exc}") from None
