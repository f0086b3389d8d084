"""Signing the secrets that go into email links, and verifying them when they come back.

A signed token is base64url without padding of `secret (32 bytes) || HMAC-SHA256(key, msg)`
where msg is `b"/activate" + secret` for activation and `b"/recover" + secret + code`
(the 5 ASCII digits) for password recovery. The recovery code is part of the signed
message so that a link and a code only work together. This is byte-compatible with the
earlier C implementation (vectors in shared/interop/vectors.json).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re

SECRET_BYTES = 32
SIGNED_BYTES = SECRET_BYTES + hashlib.sha256().digest_size  # 64
SIGNED_TOKEN_CHARS = 86  # base64 of 64 bytes is 88 characters, 86 without its "==" padding
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{86}$")
_CODE = re.compile(r"^[0-9]{5}$")


class Action(enum.IntEnum):
    """What a token is for; the value is the action number on the wire."""

    ACTIVATION = 1
    PASSWORD_RECOVERY = 2

    @property
    def db_name(self) -> str:
        """The `token_action` enum label in PostgreSQL."""
        return self.name.lower()

    @property
    def path(self) -> bytes:
        return b"/activate" if self is Action.ACTIVATION else b"/recover"

    @classmethod
    def from_db(cls, label: str) -> Action:
        return cls[label.upper()]


class InvalidToken(ValueError):
    """A signed token that is malformed or whose signature does not match."""


def is_code(code: str) -> bool:
    return bool(_CODE.fullmatch(code))  # not match: '$' would accept a trailing LF


def _message(action: Action, secret: bytes, code: str) -> bytes:
    if action is Action.PASSWORD_RECOVERY:
        return action.path + secret + code.encode("ascii")
    return action.path + secret


def sign(key: bytes, action: Action, secret: bytes, code: str) -> str:
    """The signed token for a 32-byte `secret` (the code matters for recovery only)."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a secret is {SECRET_BYTES} bytes, not {len(secret)}")
    mac = hmac.new(key, _message(action, secret, code), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(secret + mac).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> bytes:
    """The 64 bytes behind a signed token, or InvalidToken saying what is wrong with its form."""
    if len(token) != SIGNED_TOKEN_CHARS:
        raise InvalidToken(f"a signed token is {SIGNED_TOKEN_CHARS} characters, not {len(token)}")
    if not _TOKEN.match(token):
        raise InvalidToken("a signed token is base64url (A-Z a-z 0-9 - _) without padding")
    try:
        return base64.urlsafe_b64decode(token + "==")
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the regex already rules these out
        raise InvalidToken(f"not base64url: {exc}") from exc


def verify(key: bytes, token: str, action: Action, code: str | None = None) -> bytes:
    """Return the 32-byte secret of a valid token; raise InvalidToken otherwise.

    The signature is compared in constant time. A recovery token needs its code.
    """
    raw = decode_token(token)
    if action is Action.PASSWORD_RECOVERY and (code is None or not is_code(code)):
        raise InvalidToken("a password-recovery token needs its 5-digit code")
    secret, mac = raw[:SECRET_BYTES], raw[SECRET_BYTES:]
    expected = hmac.new(key, _message(action, secret, code or ""), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise InvalidToken("bad signature (wrong key, action or code, or an altered token)")
    return secret


def secret_ref(secret: bytes) -> str:
    """A non-secret name for a secret: the first 16 hex characters of its SHA-256.

    The same value as SQL `left(encode(sha256(tokens.secret), 'hex'), 16)`, so that an
    operator can find a token's row from a log or reject line without the link being
    usable: a hash does not give the secret back, and the link also needs the HMAC.
    """
    return hashlib.sha256(secret).hexdigest()[:16]


def token_ref(token: str) -> str:
    """The `secret_ref` of a signed token's secret (its first 32 bytes); InvalidToken if malformed."""
    return secret_ref(decode_token(token)[:SECRET_BYTES])


def redact(token: str) -> str:
    """Enough of a signed token to correlate log lines, never enough to use it."""
    return token[:6] + "…" if len(token) > 6 else "…"
