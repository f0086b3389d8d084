"""Recipient addresses as a provider can take them: the address rule, then the domain in Punycode.

The second gate of the address rule (mailroom/addresses.py; the database is the first,
migrations/0006_email_rule.sql): an address that breaks it is refused before any call, with the
rule's reason, so a row that got past the database (an account older than the rule, or a
database without migration 0006) still cannot reach a provider or its header parser.

SES (and an SMTP server without SMTPUTF8) takes only 7-bit ASCII addresses. The domain of an
internationalised address has an ASCII form (`bücher.example` -> `xn--bcher-kva.example`, IDNA
2008 with the UTS #46 mapping); its local part has none, so such an address is refused by a
provider that cannot carry it, with the reason.
"""

from __future__ import annotations

import idna

from mailroom import addresses
from sender.provider import UnsendableAddress


def ascii_address(email: str, *, utf8_local_part: bool = False, recipient: bool = True) -> str:
    """`email` with its domain in Punycode; raises UnsendableAddress when it cannot go out.

    `utf8_local_part`: the provider can carry a non-ASCII local part (SMTP with SMTPUTF8).
    `recipient`: apply the address rule (accounts.email's); False for the operator's own
    envelope sender (MAILROOM_SOURCE), which may be `noreply@localhost` for a local relay.
    """
    if recipient and (reason := addresses.problem(email)):
        raise UnsendableAddress(f"the address breaks the address rule: {reason}")
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise UnsendableAddress(f"not an email address: {email!r}")
    if not local.isascii() and not utf8_local_part:
        raise UnsendableAddress(
            "the local part (before '@') is not 7-bit ASCII, and the provider cannot send it (no SMTPUTF8)"
        )
    try:
        return f"{local}@{addresses.ascii_domain(domain if recipient else domain.strip())}"
    except idna.IDNAError as exc:  # the rule admits only domains idna encodes: never expected
        raise UnsendableAddress(f"the domain {domain!r} is not a valid internationalised domain name: {exc}") from None
