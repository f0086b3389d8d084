"""Recipient addresses as a provider can take them: IDN domains in Punycode (IDNA 2008, UTS #46).

SES (and an SMTP server without SMTPUTF8) takes only 7-bit ASCII addresses. The domain of an
internationalised address has an ASCII form (`bücher.example` -> `xn--bcher-kva.example`);
its local part has none, so such an address is refused before any call, with the reason.
"""

from __future__ import annotations

import idna

from sender.provider import UnsendableAddress


def ascii_address(email: str, *, utf8_local_part: bool = False) -> str:
    """`email` with its domain in Punycode; raises UnsendableAddress when it cannot go out.

    `utf8_local_part`: the provider can carry a non-ASCII local part (SMTP with SMTPUTF8).
    """
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise UnsendableAddress(f"not an email address: {email!r}")
    if not local.isascii() and not utf8_local_part:
        raise UnsendableAddress(
            "the local part (before '@') is not 7-bit ASCII, and the provider cannot send it (no SMTPUTF8)"
        )
    if domain.isascii():
        return email if domain == domain.strip() else f"{local}@{domain.strip()}"
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise UnsendableAddress(f"the domain {domain!r} is not a valid internationalised domain name: {exc}") from None
    return f"{local}@{ascii_domain}"
