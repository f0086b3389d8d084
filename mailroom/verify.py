"""Verifying the signed token of a link that came back to the app.

An app checks the link's signature here (or with the same algorithm in its own language,
see `mailroom.signing`) and then consumes the token in the database with
`SELECT mailroom_consume_token(secret, code)`. The signature check runs first so the
database only ever sees secrets this key signed.
"""

from __future__ import annotations

import base64

from mailroom.signing import Action, InvalidToken, decode_token, verify

__all__ = ["InvalidToken", "parse_action", "verify_link_token"]


def parse_action(action: Action | str | int) -> Action:
    """An Action from itself, its database label (`activation`, `password_recovery`) or number."""
    if isinstance(action, Action):
        return action
    if isinstance(action, int):
        return Action(action)
    try:
        return Action.from_db(action)
    except KeyError:
        raise ValueError(f"unknown action {action!r} (expected activation or password_recovery)") from None


def verify_link_token(key: bytes, token: str, action: Action | str | int, code: str | None = None) -> bytes:
    """The 32-byte secret behind a valid signed `token`; InvalidToken says what is wrong otherwise.

    `code` is the 5-digit code the user typed, needed for password recovery (it is part of
    the signed message) and ignored for activation. The signature is compared in constant
    time (hmac.compare_digest in mailroom.signing.verify). Only the canonical spelling of a
    token is accepted: base64url leaves 4 unused bits in the last character, and a token
    that sets them is an altered one.
    """
    if not isinstance(token, str):
        raise InvalidToken(f"a signed token is text, not {type(token).__name__}")
    secret = verify(key, token, parse_action(action), code)
    if base64.urlsafe_b64encode(decode_token(token)).rstrip(b"=").decode("ascii") != token:
        raise InvalidToken("not the canonical base64url spelling of the token (an altered token)")
    return secret
