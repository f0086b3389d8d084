"""Verifying the signed token of a link that came back to the app.

An app checks the link's signature here (or with the same algorithm in its own language,
see `mailroom.signing`) and then consumes the token in the database. The signature check
runs first so the database only ever sees secrets this key signed.

The action is named as the `actions` table names it (`"magic_link"`). The six shipped
actions are known without a database; for one added with `mailroom actions add`, pass
its `ActionSpec` (built by hand, `ActionSpec(Action(7, "team_invite"), "/team-invite")`)
or the registry read from the database (`registry=mailroom.actions.load_registry(conn)`).

Key rotation: `key` signs today (MAILROOM_SECRET_KEY); `previous_keys` (what
MAILROOM_PREVIOUS_SECRET_KEYS lists, `parse_keys` reads it) are accepted too, so that links
signed before a rotation keep working until they expire. A key that is in neither is
retired: its links no longer verify.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping

from mailroom.actions import Action, ActionSpec, UnknownAction, spec_for
from mailroom.signing import InvalidToken, decode_token, verify

__all__ = ["InvalidToken", "UnknownAction", "action_spec", "parse_keys", "verify_link_token"]

_KEY = re.compile(r"[0-9a-fA-F]{64}")


def action_spec(
    action: str | int | Action | ActionSpec, registry: Mapping[str, ActionSpec] | None = None
) -> ActionSpec:
    """The spec a token of `action` is verified with (see `mailroom.actions.spec_for`); UnknownAction
    (a ValueError) for a name that is neither standard nor in `registry`."""
    return spec_for(action, registry)


def parse_keys(text: str) -> tuple[bytes, ...]:
    """The keys of a comma-separated list of 64-hex-character keys (MAILROOM_PREVIOUS_SECRET_KEYS);
    blank: none. ValueError says which entry is wrong and how, never showing a key."""
    entries = [e.strip() for e in text.split(",")]
    if not any(entries):
        return ()
    keys = []
    for i, entry in enumerate(entries, 1):
        if not _KEY.fullmatch(entry):
            what = (
                "empty"
                if not entry
                else f"{len(entry)} characters"
                + ("" if re.fullmatch(r"[0-9a-fA-F]*", entry) else " including non-hex ones")
            )
            raise ValueError(f"key {i} of {len(entries)} is {what}; expected 64 hex characters (a 32-byte key)")
        keys.append(bytes.fromhex(entry))
    return tuple(keys)


def verify_link_token(
    key: bytes,
    token: str,
    action: str | int | Action | ActionSpec,
    code: str | None = None,
    *,
    previous_keys: Iterable[bytes] = (),
    registry: Mapping[str, ActionSpec] | None = None,
) -> bytes:
    """The 32-byte secret behind a valid signed `token`; InvalidToken says what is wrong otherwise.

    `action` is the action's name (`"password_recovery"`, `"magic_link"`), its ActionSpec, or
    a standard action's number. `code` is the 5-digit code the user typed, needed where the
    action signs it (password recovery) and ignored otherwise. The token is checked with
    `key`, then with each of `previous_keys`. Each signature is compared in constant time
    (hmac.compare_digest in mailroom.signing.verify). Only the canonical spelling of a token
    is accepted: base64url leaves 4 unused bits in the last character, and a token that sets
    them is an altered one. UnknownAction (a ValueError) for an action not known here.
    """
    if not isinstance(token, str):
        raise InvalidToken(f"a signed token is text, not {type(token).__name__}")
    spec = spec_for(action, registry)
    failure: InvalidToken | None = None
    for candidate in (key, *previous_keys):
        try:
            secret = verify(candidate, token, spec, code)
            break
        except InvalidToken as exc:
            if not str(exc).startswith("bad signature"):
                raise  # the token's form or a missing code: no other key changes that
            failure = exc
    else:
        assert failure is not None
        raise failure
    if base64.urlsafe_b64encode(decode_token(token)).rstrip(b"=").decode("ascii") != token:
        raise InvalidToken("not the canonical base64url spelling of the token (an altered token)")
    return secret
