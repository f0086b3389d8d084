"""Signing the secrets that go into email links, and verifying them when they come back.

One rule for every action: a signed token is base64url without padding of
`secret (32 bytes) || HMAC-SHA256(key, msg)` where msg is `path || secret`, followed by the
code (5 ASCII digits) when the action signs it. `path` is the action's link path
(mailroom/actions.py): `b"/activate" + secret` for activation, `b"/recover" + secret + code`
for password recovery (the only shipped action that signs its code, so that a link and a
code only work together), `b"/magic-link" + secret` for magic_link, and so on. Actions 1
and 2 are byte-compatible with the earlier C implementation (vectors in
shared/interop/vectors.json).

Where an action is asked for, give its `ActionSpec`, a standard `Action` or its name
(`"magic_link"`), or a bare path (`"/team-invite"`, a str starting with `/`, or bytes): with a
bare path the code is signed when one is given (None: not signed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable

from mailroom.actions import Action, ActionSpec, spec_for

SECRET_BYTES = 32
SIGNED_BYTES = SECRET_BYTES + hashlib.sha256().digest_size  # 64
SIGNED_TOKEN_CHARS = 86  # base64 of 64 bytes is 88 characters, 86 without its "==" padding
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{86}$")
_CODE = re.compile(r"^[0-9]{5}$")


# RFC 2104's pads, as byte translation tables (key XOR 0x36, key XOR 0x5C)
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class InvalidToken(ValueError):
    """A signed token that is malformed or whose signature does not match."""


def is_code(code: str) -> bool:
    return bool(_CODE.fullmatch(code))  # not match: '$' would accept a trailing LF


SignedAs = ActionSpec | Action | str | bytes


def _rule(action: SignedAs, code: str | None) -> tuple[bytes, bool, str]:
    """The path to sign with, whether the code is part of the message, and what to call the token."""
    if isinstance(action, bytes):
        return action, code is not None, "this"
    if isinstance(action, str) and action.startswith("/"):
        return action.encode("ascii"), code is not None, "this"
    spec = action if isinstance(action, ActionSpec) else spec_for(action)
    return spec.path_bytes, spec.signs_code, "a " + spec.name.replace("_", "-")


def message(action: SignedAs, secret: bytes, code: str | None = None) -> bytes:
    """What is signed: `path || secret`, then the code when the action signs it."""
    path, signs_code, what = _rule(action, code)
    if signs_code:
        if code is None or not is_code(code):
            raise ValueError(f"{what} token signs its 5-digit code: give it")
        return path + secret + code.encode("ascii")
    return path + secret


def sign(key: bytes, action: SignedAs, secret: bytes, code: str | None = None) -> str:
    """The signed token for a 32-byte `secret` (the code matters only where the action signs it)."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a secret is {SECRET_BYTES} bytes, not {len(secret)}")
    mac = hmac.new(key, message(action, secret, code), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(secret + mac).rstrip(b"=").decode("ascii")


def signer(key: bytes, path: bytes, signs_code: bool) -> Callable[[bytes, str], str]:
    """`sign` for one key and action, for signing many tokens (the collector's chunk).

    HMAC-SHA256 as RFC 2104 builds it from SHA-256: the inner hash's state after
    `key XOR ipad || path` and the outer hash's after `key XOR opad` are computed once and
    copied per token. Copying hashlib's own objects costs no Python call of the hmac module's
    (whose copy, update and digest are Python methods): under half the time of a copied
    hmac object, a quarter of a new one. Same bytes as `sign` (tests/unit/test_signing.py
    checks them against the hmac module); the caller checks the codes."""
    block = hashlib.sha256().block_size  # 64
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(key.translate(_IPAD))
    inner.update(path)
    outer = hashlib.sha256(key.translate(_OPAD))
    encode = base64.urlsafe_b64encode

    def sign_one(secret: bytes, code: str) -> str:
        if len(secret) != SECRET_BYTES:
            raise ValueError(f"a secret is {SECRET_BYTES} bytes, not {len(secret)}")
        h = inner.copy()
        h.update(secret + code.encode("ascii") if signs_code else secret)
        mac = outer.copy()
        mac.update(h.digest())
        return encode(secret + mac.digest()).rstrip(b"=").decode("ascii")

    return sign_one


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


def verify(key: bytes, token: str, action: SignedAs, code: str | None = None) -> bytes:
    """Return the 32-byte secret of a valid token; raise InvalidToken otherwise.

    The signature is compared in constant time. An action that signs its code needs it."""
    raw = decode_token(token)
    path, signs_code, what = _rule(action, code)
    if signs_code and (code is None or not is_code(code)):
        raise InvalidToken(f"{what} token needs its 5-digit code")
    secret, mac = raw[:SECRET_BYTES], raw[SECRET_BYTES:]
    msg = path + secret + code.encode("ascii") if signs_code and code is not None else path + secret
    expected = hmac.new(key, msg, hashlib.sha256).digest()
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
