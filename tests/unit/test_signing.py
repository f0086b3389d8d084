"""Signing and verifying link secrets."""

from __future__ import annotations

import hashlib

import pytest

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.signing import InvalidToken, secret_ref, sign, token_ref, verify

KEY = bytes(range(32))
SECRET = bytes(range(100, 132))


def test_a_signed_activation_token_verifies_to_its_secret() -> None:
    assert verify(KEY, sign(KEY, ACTIVATION, SECRET, "00000"), ACTIVATION) == SECRET


def test_a_recovery_token_needs_the_right_code() -> None:
    token = sign(KEY, PASSWORD_RECOVERY, SECRET, "12345")
    assert verify(KEY, token, PASSWORD_RECOVERY, "12345") == SECRET
    with pytest.raises(InvalidToken, match="bad signature"):
        verify(KEY, token, PASSWORD_RECOVERY, "12346")
    with pytest.raises(InvalidToken, match="needs its 5-digit code"):
        verify(KEY, token, PASSWORD_RECOVERY)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t[:-1], "86 characters"),
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "bad signature"),
        (lambda t: "+" + t[1:], "base64url"),
    ],
)
def test_altered_tokens_are_refused_with_a_reason(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    token = sign(KEY, ACTIVATION, SECRET, "00000")
    with pytest.raises(InvalidToken, match=reason):
        verify(KEY, mutate(token), ACTIVATION)


def test_a_token_for_one_action_does_not_verify_as_the_other() -> None:
    token = sign(KEY, ACTIVATION, SECRET, "12345")
    with pytest.raises(InvalidToken):
        verify(KEY, token, PASSWORD_RECOVERY, "12345")


def test_another_key_does_not_verify() -> None:
    token = sign(KEY, ACTIVATION, SECRET, "00000")
    with pytest.raises(InvalidToken, match="bad signature"):
        verify(bytes(32), token, ACTIVATION)


def test_a_token_ref_names_the_secret_whatever_the_key_action_or_code() -> None:
    ref = hashlib.sha256(SECRET).hexdigest()[:16]
    assert secret_ref(SECRET) == ref
    assert token_ref(sign(KEY, ACTIVATION, SECRET, "00000")) == ref
    assert token_ref(sign(bytes(32), PASSWORD_RECOVERY, SECRET, "12345")) == ref
    assert len(ref) == 16 and ref not in sign(KEY, ACTIVATION, SECRET, "00000")


def test_a_token_ref_of_a_malformed_token_says_what_is_wrong() -> None:
    with pytest.raises(InvalidToken, match="86 characters"):
        token_ref("short")
