"""The address rule: what counts as a sendable email address, decided once.

The database enforces it first (migrations/0006_email_rule.sql: `mailroom_email_problem()` and
the CHECK constraint `accounts_email_is_sendable`); the sender checks it again with this module
before any provider sees the address. Both run the same regular expressions, in the same order,
and give the same reason; tests/data/addresses.json is the table both must agree on.

The rule (docs/reference/schema.md#0006-the-address-rule has it with the reasons):

- exactly one `@`; the local part before it, the domain after it, neither empty;
- local part, at most 64 bytes (RFC 5321 4.5.3.1.1), either a dot-atom (RFC 5322 atext, plus
  non-ASCII characters as RFC 6532 allows, minus spaces, controls, format and private-use
  characters; dots only between atoms) or a quoted string of printable ASCII without space,
  `"`, `\\` and `@` (Amazon SES refuses whitespace in a local part, quoted or not, and splits at
  an `@` inside quotes);
- domain, at least two labels (a dotless domain is not a public mail domain; one is mostly a
  typo such as `gmailcom`), each of letters, digits and hyphens, not starting or ending with a
  hyphen; a label may hold non-ASCII characters from `address_chars.DOMAIN_CHARS` (IDNA 2008
  U-labels that the `idna` package encodes), then it is in NFC, does not start with a combining
  mark and has no `--` in 3rd and 4th position; the last label is not all digits; no address
  literals (`[192.0.2.1]`): SES documents none and many mail systems refuse them;
- lengths in the ASCII form the address is sent in (each non-ASCII label as `xn--` Punycode):
  label at most 63 characters, domain at most 253, the whole address at most 254 bytes.

What a provider can carry is a separate question, answered by the sender: SES takes no
non-ASCII local part, SMTP only with SMTPUTF8.
"""

from __future__ import annotations

import re
import unicodedata

import idna

from mailroom.address_chars import DOMAIN_CHARS, DOMAIN_MARKS, LOCAL_REFUSED

MAX_LOCAL_BYTES = 64
MAX_ADDRESS_BYTES = 254
MAX_DOMAIN_CHARS = 253
MAX_LABEL_CHARS = 63

# The same expressions are in migrations/0006_email_rule.sql (PostgreSQL ARE and Python re read
# them alike); keep them identical.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"
_DOT_ATOM = re.compile(r"\A" + _ATEXT + r"(\." + _ATEXT + r")*\Z")
_QUOTED = re.compile(r'\A"[\u0021\u0023-\u003f\u0041-\u005b\u005d-\u007e]+"\Z')
_LOCAL_REFUSED = re.compile("[" + LOCAL_REFUSED + "]")
_LABEL = re.compile(r"\A[A-Za-z0-9" + DOMAIN_CHARS + r"-]+\Z")
_MARK_FIRST = re.compile(r"\A[" + DOMAIN_MARKS + "]")
_ALL_DIGITS = re.compile(r"\A[0-9]+\Z")
_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def problem(email: str) -> str | None:
    """Why `email` is not a sendable address, or None when it is (the database's
    `mailroom_email_problem`, word for word)."""
    ats = email.count("@")
    if ats == 0:
        return "there is no @ in the address"
    if ats > 1:
        return "there is more than one @ in the address"
    local, _, domain = email.partition("@")
    if not local:
        return "the local part (before @) is empty"
    if not domain:
        return "the domain (after @) is empty"
    if len(local.encode("utf-8")) > MAX_LOCAL_BYTES:
        return "the local part (before @) is longer than 64 bytes"
    if local.startswith('"'):
        if not _QUOTED.search(local):
            return "the quoted local part may hold only printable ASCII other than space, double quote, backslash and @"
    elif _LOCAL_REFUSED.search(local):
        return "the local part (before @) holds a space, control, invisible or private-use character"
    elif not _DOT_ATOM.search(local):
        if local.startswith(".") or local.endswith(".") or ".." in local:
            return "the local part (before @) starts or ends with a dot, or has two dots in a row"
        return "the local part (before @) holds a character only a quoted local part may hold (space, comma, quote, brackets, ...)"
    if domain.startswith("["):
        return "the domain starts with [ (an address literal such as [192.0.2.1]); mailroom sends to domain names only"
    labels = domain.split(".")
    if "" in labels:
        return "the domain has an empty label (a dot at its start or end, or two dots in a row)"
    if len(labels) < 2:
        return "the domain has a single label; a mail domain has at least two (example.com)"
    ascii_labels: list[str] = []
    for label in labels:
        ascii_label = label
        if not _LABEL.search(label):
            return f"the domain label '{label}' holds a character the rule refuses in a domain (letters, digits and hyphens; no right-to-left script)"
        if label.startswith("-") or label.endswith("-"):
            return f"the domain label '{label}' starts or ends with a hyphen"
        if not label.isascii():
            if label[2:4] == "--":
                return f"the domain label '{label}' has -- in 3rd and 4th position"
            if _MARK_FIRST.search(label):
                return f"the domain label '{label}' starts with a combining mark"
            if not unicodedata.is_normalized("NFC", label):
                return f"the domain label '{label}' is not in Unicode normalization form C"
            ascii_label = "xn--" + label.translate(_UPPER).encode("punycode").decode("ascii")
        if len(ascii_label) > MAX_LABEL_CHARS:
            return f"the domain label '{label}' is longer than 63 characters (in ASCII form)"
        ascii_labels.append(ascii_label)
    if _ALL_DIGITS.search(labels[-1]):
        return "the top-level domain is all digits (an IP address is not a mail domain)"
    ascii_domain = ".".join(ascii_labels)
    if len(ascii_domain) > MAX_DOMAIN_CHARS:
        return "the domain is longer than 253 characters (in ASCII form)"
    if len(local.encode("utf-8")) + 1 + len(ascii_domain) > MAX_ADDRESS_BYTES:
        return "the address is longer than 254 bytes (with the domain in ASCII form)"
    return None


def ascii_domain(domain: str) -> str:
    """The domain as it goes out: each non-ASCII label as its A-label (IDNA 2008 with the UTS #46
    mapping, the `idna` package); an ASCII domain unchanged. Raises idna.IDNAError on a domain
    the rule refuses; never on one it accepts (tests/unit/test_addresses.py)."""
    if domain.isascii():
        return domain
    return idna.encode(domain, uts46=True).decode("ascii")
