"""The one table of addresses the address rule is judged by (issue #17).

Every gate runs it and must agree: the database (`mailroom_email_problem` and an INSERT into
accounts, tests/integration/test_address_rule.py), the sender's check and the SMTP provider's
message building (tests/unit/test_addresses.py). `refused` is a phrase the reason must hold, or
None for an address the rule accepts; `why` says where the verdict comes from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    address: str
    refused: str | None  # a phrase of the reason; None: sendable
    why: str

    @property
    def id(self) -> str:
        shown = (
            self.address
            if len(self.address) <= 40
            else f"{self.address[:18]}…{self.address[-12:]}({len(self.address)})"
        )
        return shown.encode("unicode_escape").decode("ascii")


LOCAL_64 = "a" * 64
# 64 + 1 + 189 = 254 characters: the longest address (RFC 5321 path of 256 octets, minus <>)
DOMAIN_189 = "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
DOMAIN_188 = "b" * 63 + "." + "c" * 63 + "." + "d" * 56 + ".com"
DOMAIN_190 = "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".com"
# "bücher" is "xn--bcher-kva" in ASCII form: 6 characters as stored, 13 as sent
BUCHER_14 = ".".join(["bücher"] * 14) + ".de"  # 100 characters as stored, 198 as sent
BUCHER_18 = ".".join(["bücher"] * 18) + ".de"  # 128 characters as stored, 254 as sent

ADDRESSES: list[Case] = [
    # -- the five of issue #17, and the one that made the header parser raise --------------------
    Case("bad@@example.com", "more than one @", "issue #17: two @"),
    Case(
        "a b@example.com",
        "only a quoted local part may hold",
        "issue #17: SES: 'Local address contains control or whitespace'",
    ),
    Case("no-at-sign", "no @", "issue #17"),
    Case("trailing@", "domain (after @) is empty", "issue #17"),
    Case("dot@example..com", "empty label", "issue #17: an empty DNS label"),
    Case("typo@[example.com", "address literal", "issue #17: Python's header parser raised on it in send_bulk"),
    # -- ordinary addresses ----------------------------------------------------------------------
    Case("user@example.com", None, "the plain case"),
    Case("first.last@example.co.uk", None, "dots between atoms; three labels"),
    Case("user+tag@example.com", None, "plus-addressing (RFC 5233 subaddress)"),
    Case("User@EXAMPLE.COM", None, "uppercase: DNS is case-insensitive, SES and SMTP take it"),
    Case("a!#$%&'*+/=?^_`{|}~-@example.com", None, "every RFC 5322 atext character"),
    Case("u@a.bc", None, "short is fine"),
    Case("user@1example.com", None, "a label may start with a digit (RFC 1123)"),
    Case("user@ab--cd.example", None, "an ASCII label is LDH; -- is only reserved in IDN labels"),
    Case("user@xn--bcher-kva.example", None, "an A-label stored as such is an LDH label"),
    # -- the local part ----------------------------------------------------------------------------
    Case(".user@example.com", "starts or ends with a dot", "RFC 5322 dot-atom"),
    Case("user.@example.com", "starts or ends with a dot", "RFC 5322 dot-atom"),
    Case("us..er@example.com", "two dots in a row", "RFC 5322 dot-atom"),
    Case("a,b@example.com", "only a quoted local part may hold", "a comma is not atext"),
    Case("@example.com", "local part (before @) is empty", "RFC 5321 needs a local part"),
    Case(LOCAL_64 + "@example.com", None, "64 bytes: the RFC 5321 local-part limit"),
    Case(LOCAL_64 + "a@example.com", "longer than 64 bytes", "65 bytes: over the RFC 5321 limit"),
    Case("é" * 32 + "@example.com", None, "32 characters, 64 bytes of UTF-8 (RFC 6531 counts octets)"),
    Case("é" * 33 + "@example.com", "longer than 64 bytes", "33 characters but 66 bytes"),
    # quoted local parts: only what SES takes (it refuses whitespace, quoted or not, and splits at
    # an @ inside quotes: 'Missing domain'); nothing to unescape, so no backslash
    Case('"john..doe"@example.com', None, "a quoted string carries what a dot-atom cannot"),
    Case('"a,b"@example.com', None, "a comma, quoted"),
    Case('"(x)<y>[z];:"@example.com', None, "RFC 5322 specials, quoted"),
    Case(
        '"john doe"@example.com', "quoted local part may hold only", "a space: SES refuses whitespace in a local part"
    ),
    Case('"a@b"@example.com', "more than one @", "SES answers 'Missing domain' (brave/accounts#35)"),
    Case('"a\\"b"@example.com', "quoted local part may hold only", "a quoted-pair: a backslash is refused"),
    Case('""@example.com', "quoted local part may hold only", "an empty quoted string"),
    Case('"abc@example.com', "quoted local part may hold only", "an unterminated quote"),
    # non-ASCII local parts (RFC 6532/6531): an address; whether a provider can carry it is the
    # sender's question (SES: never; SMTP: with SMTPUTF8)
    Case("用户@例子.广告", None, "RFC 6531 example: UTF-8 local part and IDN domain"),
    Case("zoë@bücher.example", None, "UTF-8 local part"),
    Case("δοκιμή@παράδειγμα.δοκιμή", None, "Greek, all lowercase"),
    Case("a\u00a0b@example.com", "space, control, invisible", "U+00A0 no-break space"),
    Case("ab\u200b@example.com", "space, control, invisible", "U+200B zero width space"),
    Case("a\u202eb@example.com", "space, control, invisible", "U+202E right-to-left override"),
    Case("a\u3000b@example.com", "space, control, invisible", "U+3000 ideographic space"),
    Case("a\ue000@example.com", "space, control, invisible", "U+E000 private use"),
    # control characters: 0005's constraint refuses them too (and the wire cannot carry them)
    Case("a\tb@example.com", "only a quoted local part may hold", "a tab"),
    Case("ab@example.com\n", "holds a character the rule refuses in a domain", "a trailing line feed"),
    Case("a\u0085b@example.com", "space, control, invisible", "U+0085 NEL, a C1 control"),
    # -- the domain ------------------------------------------------------------------------------
    Case("user@localhost", "single label", "a dotless domain is not a public mail domain (ICANN SAC053)"),
    Case("user@gmailcom", "single label", "the typo a single-label rule catches"),
    Case("user@example.com.", "empty label", "a trailing dot; SES answers 'Missing domain'"),
    Case("user@.example.com", "empty label", "a leading dot"),
    Case("user@-example.com", "starts or ends with a hyphen", "RFC 1123 LDH label"),
    Case("user@example-.com", "starts or ends with a hyphen", "RFC 1123 LDH label"),
    Case("user@exa_mple.com", "refuses in a domain", "an underscore is no hostname character"),
    Case("user@exa mple.com", "refuses in a domain", "a space in the domain"),
    Case(
        "user@[192.0.2.1]", "address literal", "an address literal: SES documents none, many mail systems refuse them"
    ),
    Case(
        "user@[IPv6:2001:db8::1]",
        "address literal",
        "an address literal: SES documents none, many mail systems refuse them",
    ),
    Case("user@192.0.2.1", "all digits", "an IP address without brackets (RFC 3696: no all-numeric TLD)"),
    Case("user@example.123", "all digits", "RFC 3696: no all-numeric TLD"),
    Case("user@" + "a" * 63 + ".com", None, "a 63-character label: the DNS limit"),
    Case("user@" + "a" * 64 + ".com", "longer than 63 characters", "a 64-character label"),
    # internationalised domains (IDNA 2008, UTS #46, sent in Punycode)
    Case("user@bücher.example", None, "IDN: xn--bcher-kva.example"),
    Case("user@Bücher.example", None, "an ASCII capital in an IDN label: UTS #46 lowercases it"),
    Case("user@例子.广告", None, "IDN: Chinese"),
    Case("user@ドメイン名例.jp", None, "IDN: Japanese"),
    Case("user@παράδειγμα.δοκιμή", None, "IDN: Greek"),
    Case(
        "user@BÜCHER.example", "refuses in a domain", "a non-ASCII capital: the rule takes IDN labels in lowercase only"
    ),
    Case("user@bu\u0308cher.example", "normalization form C", "u + combining diaeresis: not NFC"),
    Case("user@\u0308bucher.example", "starts with a combining mark", "IDNA 2008 (RFC 5891 4.2.3.2)"),
    Case("user@ab--ü.example", "-- in 3rd and 4th position", "IDNA 2008 (RFC 5891 4.2.3.1)"),
    Case("user@☃.example", "refuses in a domain", "a symbol is DISALLOWED in IDNA 2008"),
    Case("user@col·legi.cat", "refuses in a domain", "U+00B7 is CONTEXTO: not in the rule (a known gap)"),
    Case(
        "user@מבחן.example",
        "no right-to-left script",
        "Hebrew: the RFC 5893 bidi rule is not in the rule (a known gap)",
    ),
    Case("user@موقع.وزارة-الاتصالات.مصر", "no right-to-left script", "Arabic: as above"),
    Case("user@" + "ü" * 57 + ".de", None, "57 characters: 63 as sent (xn--tdaaa…), the longest label of ü"),
    Case("user@" + "ü" * 58 + ".de", "longer than 63 characters", "58 characters but 64 as sent"),
    # -- the whole -------------------------------------------------------------------------------
    Case(LOCAL_64 + "@" + DOMAIN_188, None, "253 characters"),
    Case(LOCAL_64 + "@" + DOMAIN_189, None, "254 characters: the RFC 5321 limit"),
    Case(LOCAL_64 + "@" + DOMAIN_190, "longer than 254 bytes", "255 characters"),
    Case("a" * 55 + "@" + BUCHER_14, None, "156 characters as stored, 254 as sent"),
    Case("a" * 56 + "@" + BUCHER_14, "longer than 254 bytes", "157 characters as stored, 255 as sent"),
    Case("a@" + BUCHER_18, "domain is longer than 253", "130 characters as stored; a 254-character domain as sent"),
]

ACCEPTED = [c for c in ADDRESSES if c.refused is None]
REFUSED = [c for c in ADDRESSES if c.refused is not None]
