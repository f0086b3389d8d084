"""The wire format between collector and sender: one line per batch on a pipe.

A line is `action,email,username,signed_token,code` repeated, terminated by LF, and at most
MAX_LINE_BYTES long (LF included): the collector cuts a chunk that would make a longer
line into several lines (`encode_lines`), and the sender accepts every line up to it.
The action field is `N`, `N@locale`, `N/name` or `N/name@locale` (docs/reference/wire.md):
the action's wire number, its name (always written for numbers from 3: the sender picks
the templates folder by name, with no database), and the recipient's locale when it has
one. Actions 1 (activation) and 2 (password recovery) are written `1` and `2` in the
default locale, as they always were. signed_token (`Record.secret`, the name the earlier
implementation gave the field) is a signed token (see signing.py), code is 5 digits. A field containing a comma or a double quote is quoted RFC 4180 style:
wrapped in double quotes, with each quote inside doubled. Other fields are written bare,
so ordinary lines are byte-identical to the earlier C implementation's. A quote is only
special at the start of a field, so that implementation's unquoted lines read back as
they were meant.

A field never holds a line break (the schema refuses control characters in emails and
logins, migrations/0005_no_control_chars.sql, and the encoder refuses CR and LF), so
every physical line is a line of its own: the reader parses each one alone, and a
malformed line (a stray quote, garbage) is rejected without costing any other line.

Encoder and decoder live here, once, for both programs. Decoding never raises on bad
input: it returns the good records and a reason for each bad one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mailroom.actions import ACTIVATION, MAX_NUMBER, NAME_PATTERN, PASSWORD_RECOVERY, RESERVED, STANDARD, Action
from mailroom.signing import InvalidToken, decode_token, is_code, redact

FIELDS_PER_RECORD = 5
# The longest line, LF included, that the collector writes and the sender accepts whole.
# One record is at most about 2 KB (two fields of 254 characters of up to 4 bytes, quoted),
# so a line always has room for at least one.
MAX_LINE_BYTES = 1 << 20
MAX_FIELD_CHARS = 254  # accounts.email and accounts.login are varchar(254)
_NEEDS_QUOTES = re.compile(r'[,"]')
LOCALE_PATTERN = r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*"
_LOCALE = re.compile(LOCALE_PATTERN)
MAX_LOCALE_CHARS = 35  # BCP 47's practical bound (RFC 5646 §4.4.1)
_ACTION_FIELD = re.compile(rf"([1-9][0-9]{{0,4}})(?:/({NAME_PATTERN}))?(?:@([^@]*))?")
# (action, locale) -> its wire field, and the other way round: a line holds few distinct ones.
_FIELD_TEXT: dict[tuple[Action, str | None], str] = {(ACTIVATION, None): "1", (PASSWORD_RECOVERY, None): "2"}
_FIELD_PARSED: dict[bytes, tuple[Action, str | None]] = {b"1": (ACTIVATION, None), b"2": (PASSWORD_RECOVERY, None)}
_STANDARD = {(a.number, a.name): a for a in STANDARD}  # decoded as mailroom.actions' own objects
_CACHE_MAX = 4096  # distinct fields kept; past it, a field is parsed each time (it still works)
# Unicode category Cc (CR and LF among them): never in a field on the wire; the schema
# refuses them in emails and logins (migrations/0005_no_control_chars.sql).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{20,}")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True)
class Record:
    """One email to send: what for, to whom, and the signed token for its link.

    `secret` holds the signed token (86 characters of base64url), not the token's raw
    32-byte secret: the field keeps the name the wire format has always given it.
    `signed_token` is the same value under its own name, for apps that read lines."""

    action: Action
    email: str
    login: str
    secret: str
    code: str
    locale: str | None = None  # the recipient's (None: the default locale)

    @property
    def signed_token(self) -> str:
        """The signed token of the email's link (what `mailroom.verify.verify_link_token` checks)."""
        return self.secret

    def redacted(self) -> dict[str, object]:
        """The record as it may appear in logs and reject files."""
        shown: dict[str, object] = {
            "action": self.action.number,
            "email": self.email,
            "login": self.login,
            "secret": redact(self.secret),
            "code": self.code,
        }
        if self.action.number not in RESERVED:
            shown["name"] = self.action.name
        if self.locale is not None:
            shown["locale"] = self.locale
        return shown


@dataclass(frozen=True)
class Rejected:
    """Input that cannot be sent, with the reason; `fields` has its signed token redacted."""

    reason: str
    fields: tuple[str, ...]


class WireError(ValueError):
    """A line whose fields cannot be told apart (bad quoting), or a field the wire cannot carry."""


def control_char_in(record: Record) -> str | None:
    """The first field of `record` that holds a control character (the wire cannot carry
    it, see `encode_record`), or None."""
    for name in ("email", "login", "secret", "code"):
        if _CONTROL.search(getattr(record, name)):
            return name
    return None


def action_field(action: Action, locale: str | None = None) -> str:
    """The record's first field: `N`, `N@locale`, `N/name` or `N/name@locale`. The name is
    written for every action but 1 and 2 (their numbers say it, as they always did); a locale
    the decoder would refuse is a WireError here."""
    text = _FIELD_TEXT.get((action, locale))
    if text is not None:
        return text
    if locale is not None and not valid_locale(locale):
        raise WireError(f"the locale {locale!r} is not a language tag the wire carries ({LOCALE_PATTERN})")
    text = str(action.number) if action.number in RESERVED else f"{action.number}/{action.name}"
    if locale is not None:
        text += "@" + locale
    if len(_FIELD_TEXT) < _CACHE_MAX:
        _FIELD_TEXT[action, locale] = text
    return text


def valid_locale(locale: str) -> bool:
    """A language tag as the wire carries it: `pt`, `pt-BR`, `zh-Hant-TW`."""
    return len(locale) <= MAX_LOCALE_CHARS and _LOCALE.fullmatch(locale) is not None


def parse_action_field(raw: bytes) -> tuple[Action, str | None]:
    """The action and locale of a record's first field; ValueError with the reason otherwise."""
    parsed = _FIELD_PARSED.get(raw)
    if parsed is not None:
        return parsed
    text = raw.decode("utf-8", "replace")
    match = _ACTION_FIELD.fullmatch(text)
    if match is None:
        raise ValueError(
            f"unknown action {text[:80]!r} (expected N, N@locale, N/name or N/name@locale; N a number, "
            "name lowercase letters, digits and _)"
        )
    number_text, name, locale = match.groups()
    number = int(number_text)
    if number > MAX_NUMBER:
        raise ValueError(f"unknown action {text[:80]!r} (an action number is at most {MAX_NUMBER})")
    if name is None:
        name = RESERVED.get(number)
        if name is None:
            raise ValueError(
                f"unknown action {text[:80]!r} (an action from 3 is written with its name, {number}/name: "
                "the sender picks its templates by name)"
            )
    try:
        action = _STANDARD.get((number, name)) or Action(number, name)
    except ValueError as exc:
        raise ValueError(f"unknown action {text[:80]!r} ({exc})") from None
    if locale is not None and not valid_locale(locale):
        raise ValueError(f"locale {locale[:40]!r} is not a language tag (expected {LOCALE_PATTERN}, e.g. pt-BR)")
    parsed = (action, locale)
    if len(_FIELD_PARSED) < _CACHE_MAX:
        _FIELD_PARSED[bytes(raw)] = parsed
    return parsed


def _field(value: str) -> str:
    if _NEEDS_QUOTES.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def encode_record(record: Record) -> str:
    """One record's fields; WireError when a field holds a control character (CR, LF or
    any other of Unicode category Cc), so that no line break ever gets inside a line."""
    if field := control_char_in(record):
        raise WireError(f"the {field} holds a control character, which the wire format does not carry")
    # Secret and code never need quotes when valid; quoting them anyway keeps a bad value
    # from turning into extra fields (records) on the line.
    return ",".join(
        (
            action_field(record.action, record.locale),
            _field(record.email),
            _field(record.login),
            _field(record.secret),
            _field(record.code),
        )
    )


def encode_line(records: Iterable[Record]) -> bytes:
    """One batch line, LF-terminated, UTF-8."""
    records = list(records)
    # The common line needs no quoting and holds no control character: join every field
    # at once and check the whole line in two C-speed passes (a comma count, one search),
    # instead of five regex searches a record. Anything else takes encode_record's path,
    # which quotes, or raises WireError.
    texts, field_of = _FIELD_TEXT, action_field
    text = ",".join(
        [
            field
            for r in records
            for field in (
                texts.get((r.action, r.locale)) or field_of(r.action, r.locale),
                r.email,
                r.login,
                r.secret,
                r.code,
            )
        ]
    )
    if text.count(",") != FIELDS_PER_RECORD * len(records) - 1 or '"' in text or _has_control(text):
        text = ",".join([encode_record(r) for r in records])
    return (text + "\n").encode("utf-8")


def control_char_in_any(records: Iterable[Record]) -> bool:
    """Whether any field of `records` holds a control character: one search over all of
    them, so that the common chunk (none) costs no search a record."""
    return _has_control("".join([f for r in records for f in (r.email, r.login, r.secret, r.code)]))


def _has_control(text: str) -> bool:
    """Whether `text` holds a control character (Unicode category Cc). Printable ASCII,
    the common case, is told by two C loops far faster than the regex."""
    if text.isascii() and text.isprintable():
        return False
    return _CONTROL.search(text) is not None


def encode_lines(records: Iterable[Record], max_bytes: int = MAX_LINE_BYTES) -> list[bytes]:
    """Batch lines of at most `max_bytes` each (LF included), the records in order: one
    line, unless the records do not fit in one."""
    records = list(records)
    line = encode_line(records)
    if len(line) <= max_bytes or len(records) <= 1:
        if len(line) > max_bytes:
            raise ValueError(f"one record is {len(line)} bytes, more than the line limit of {max_bytes}")
        return [line]
    lines: list[bytes] = []
    parts: list[bytes] = []
    size = 1  # the LF
    for record in records:
        part = encode_record(record).encode("utf-8")
        if len(part) + 1 > max_bytes:
            raise ValueError(f"one record is {len(part) + 1} bytes, more than the line limit of {max_bytes}")
        extra = len(part) + (1 if parts else 0)  # the comma before it
        if parts and size + extra > max_bytes:
            lines.append(b",".join(parts) + b"\n")
            parts, size, extra = [], 1, len(part)
        parts.append(part)
        size += extra
    lines.append(b",".join(parts) + b"\n")
    return lines


def split_fields(line: bytes) -> list[bytes]:
    """Split one line (without its LF) into fields, undoing RFC 4180 quoting."""
    fields: list[bytes] = []
    i, n = 0, len(line)
    while True:
        if i < n and line[i] == 0x22:
            buf = bytearray()
            j = i + 1
            while True:
                k = line.find(b'"', j)
                if k < 0:
                    raise WireError(f"unterminated quoted field {len(fields) + 1}")
                buf += line[j:k]
                if line[k + 1 : k + 2] == b'"':
                    buf += b'"'
                    j = k + 2
                    continue
                j = k + 1
                break
            fields.append(bytes(buf))
            if j == n:
                return fields
            if line[j] != 0x2C:
                raise WireError(f"unexpected character after quoted field {len(fields)}")
            i = j + 1
        else:
            k = line.find(b",", i)
            if k < 0:
                fields.append(line[i:])
                return fields
            fields.append(line[i:k])
            i = k + 1


def lines(physical: Iterable[bytes]) -> Iterator[bytes]:
    """Each physical line on its own, without its LF (or CRLF): a field never spans lines,
    so whatever is wrong with one line stays in that line."""
    for line in physical:
        yield _strip_eol(line)


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def _redact_text(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return _TOKEN_LIKE.sub(lambda m: m.group(0)[:6] + "…", text)


def _text(raw: bytes, what: str) -> str:
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    if len(value) > MAX_FIELD_CHARS:
        raise ValueError(f"{what} is {len(value)} characters, more than {MAX_FIELD_CHARS}")
    if control := _CONTROL.search(value):
        raise ValueError(f"{what} contains a control character (U+{ord(control.group(0)):04X})")
    return value


def _record(fields: list[bytes]) -> Record:
    action_raw, email_raw, login_raw, secret_raw, code_raw = fields
    action, locale = parse_action_field(action_raw)
    email = _text(email_raw, "email")
    if not email:
        raise ValueError("email is empty")
    if not _EMAIL.fullmatch(email):  # fullmatch: '$' alone lets a trailing LF through
        raise ValueError("email is not an address of the form local@domain")
    login = _text(login_raw, "username")
    try:
        secret = secret_raw.decode("ascii")
        decode_token(secret)
    except (UnicodeDecodeError, InvalidToken) as exc:
        raise ValueError(f"secret is not base64url of 64 bytes ({exc})") from None
    code = code_raw.decode("utf-8", errors="replace")
    if not is_code(code):
        raise ValueError("code is not 5 digits")
    return Record(action, email, login, secret, code, locale)


def _redacted_fields(fields: list[bytes]) -> tuple[str, ...]:
    shown = [f.decode("utf-8", errors="replace") for f in fields]
    if len(shown) == FIELDS_PER_RECORD:
        shown[3] = redact(shown[3])
    return tuple(_TOKEN_LIKE.sub(lambda m: m.group(0)[:6] + "…", s) for s in shown)


def decode_line(line: bytes) -> tuple[list[Record], list[Rejected]]:
    """The valid records of one line, and a reason for everything else in it."""
    if not line.strip():
        return [], []
    try:
        fields = split_fields(line)
    except WireError as exc:
        return [], [Rejected(str(exc), (_redact_text(line),))]
    if len(fields) % FIELDS_PER_RECORD:
        return [], [Rejected(f"{len(fields)} fields is not a multiple of {FIELDS_PER_RECORD}", (_redact_text(line),))]
    records: list[Record] = []
    rejected: list[Rejected] = []
    for i in range(0, len(fields), FIELDS_PER_RECORD):
        chunk = fields[i : i + FIELDS_PER_RECORD]
        try:
            records.append(_record(chunk))
        except ValueError as exc:
            rejected.append(Rejected(str(exc), _redacted_fields(chunk)))
    return records, rejected
