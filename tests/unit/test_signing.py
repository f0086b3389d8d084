"""Signing and verifying link secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, STANDARD_SPECS, Action, ActionSpec
from mailroom.signing import InvalidToken, secret_ref, sign, signer, token_ref, verify

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


@pytest.mark.parametrize("spec", list(STANDARD_SPECS.values()), ids=lambda s: s.name)
def test_every_action_signs_its_path_then_the_secret_then_the_code_where_it_signs_it(spec: ActionSpec) -> None:
    code = "12345"
    msg = spec.path.encode() + SECRET + (code.encode() if spec.signs_code else b"")
    expected = base64.urlsafe_b64encode(SECRET + hmac.new(KEY, msg, hashlib.sha256).digest()).rstrip(b"=").decode()
    assert sign(KEY, spec, SECRET, code) == expected
    assert sign(KEY, spec.name, SECRET, code) == expected  # a shipped action by name
    assert verify(KEY, expected, spec, code) == SECRET


def test_a_token_of_one_action_does_not_verify_as_any_other() -> None:
    tokens = {name: sign(KEY, spec, SECRET, "12345") for name, spec in STANDARD_SPECS.items()}
    assert len(set(tokens.values())) == len(tokens)
    for name, token in tokens.items():
        for other in STANDARD_SPECS:
            if other != name:
                with pytest.raises(InvalidToken):
                    verify(KEY, token, other, "12345")


def test_a_bare_path_signs_the_code_only_when_one_is_given() -> None:
    assert sign(KEY, "/team-invite", SECRET) == sign(KEY, ActionSpec(Action(7, "team_invite"), "/team-invite"), SECRET)
    signed_code = ActionSpec(Action(7, "team_invite"), "/team-invite", signs_code=True)
    assert sign(KEY, b"/team-invite", SECRET, "55555") == sign(KEY, signed_code, SECRET, "55555")


def test_the_collectors_signer_makes_the_same_bytes_as_sign() -> None:
    for spec in STANDARD_SPECS.values():
        one = signer(KEY, spec.path_bytes, spec.signs_code)
        assert one(SECRET, "04217") == sign(KEY, spec, SECRET, "04217")
        assert one(SECRET, "04217") == one(SECRET, "04217")  # the copied state is never changed
    with pytest.raises(ValueError, match="32 bytes"):
        signer(KEY, b"/activate", False)(SECRET[:31], "00000")


@pytest.mark.parametrize("key_bytes", [0, 1, 16, 32, 63, 64, 65, 128])
def test_the_collectors_signer_is_hmac_sha256_for_a_key_of_any_length(key_bytes: int) -> None:
    key = bytes((7 * i + key_bytes) % 256 for i in range(key_bytes))
    for path, signs_code in ((b"/activate", False), (b"/recover", True), (b"/team-invite", False)):
        message = path + SECRET + (b"04217" if signs_code else b"")
        mac = hmac.new(key, message, hashlib.sha256).digest()
        expected = base64.urlsafe_b64encode(SECRET + mac).rstrip(b"=").decode("ascii")
        assert signer(key, path, signs_code)(SECRET, "04217") == expected


def test_signing_a_recovery_token_without_its_code_is_a_mistake_not_a_token() -> None:
    with pytest.raises(ValueError, match="signs its 5-digit code"):
        sign(KEY, PASSWORD_RECOVERY, SECRET)
