"""Key rotation: MAILROOM_SECRET_KEY signs; the previous keys still verify; a retired key does not."""

from __future__ import annotations

import os

import pytest

from mailroom import settings
from mailroom.actions import STANDARD_SPECS, Action, ActionSpec, UnknownAction
from mailroom.signing import sign
from mailroom.verify import InvalidToken, parse_keys, verify_link_token

CURRENT = bytes(range(32))
PREVIOUS = bytes(range(32, 64))
OLDER = bytes(range(64, 96))
RETIRED = bytes(range(96, 128))
SECRET = bytes(range(100, 132))


@pytest.mark.parametrize("name", list(STANDARD_SPECS))
def test_a_link_signed_with_a_previous_key_verifies_while_the_key_is_listed(name: str) -> None:
    token = sign(PREVIOUS, name, SECRET, "04217")
    assert verify_link_token(CURRENT, token, name, "04217", previous_keys=[OLDER, PREVIOUS]) == SECRET
    with pytest.raises(InvalidToken, match="bad signature"):
        verify_link_token(CURRENT, token, name, "04217")  # not listed: retired


def test_a_link_signed_with_a_retired_key_does_not_verify() -> None:
    token = sign(RETIRED, "magic_link", SECRET)
    with pytest.raises(InvalidToken, match="bad signature"):
        verify_link_token(CURRENT, token, "magic_link", previous_keys=(PREVIOUS, OLDER))


def test_the_current_key_still_verifies_with_previous_keys_listed() -> None:
    token = sign(CURRENT, "password_recovery", SECRET, "12345")
    assert verify_link_token(CURRENT, token, "password_recovery", "12345", previous_keys=(PREVIOUS,)) == SECRET


def test_a_previous_key_does_not_excuse_a_wrong_code_or_a_missing_one() -> None:
    token = sign(PREVIOUS, "password_recovery", SECRET, "12345")
    with pytest.raises(InvalidToken, match="bad signature"):
        verify_link_token(CURRENT, token, "password_recovery", "12346", previous_keys=(PREVIOUS,))
    with pytest.raises(InvalidToken, match="needs its 5-digit code"):
        verify_link_token(CURRENT, token, "password_recovery", previous_keys=(PREVIOUS,))


def test_a_custom_action_verifies_with_its_spec_or_the_registry_and_is_unknown_without() -> None:
    team = ActionSpec(Action(7, "team_invite"), "/team-invite")
    token = sign(PREVIOUS, team, SECRET)
    assert verify_link_token(CURRENT, token, team, previous_keys=(PREVIOUS,)) == SECRET
    registry = {"team_invite": team}
    assert verify_link_token(CURRENT, token, "team_invite", registry=registry, previous_keys=(PREVIOUS,)) == SECRET
    with pytest.raises(UnknownAction, match="team_invite"):
        verify_link_token(CURRENT, token, "team_invite")


def test_previous_keys_are_read_from_a_comma_separated_list() -> None:
    text = f" {PREVIOUS.hex()} ,{OLDER.hex().upper()}"
    assert parse_keys(text) == (PREVIOUS, OLDER)
    assert parse_keys("") == () and parse_keys("  ") == ()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("abc", "key 1 of 1 is 3 characters"),
        (f"{'a' * 64},{'z' * 64}", "key 2 of 2 is 64 characters including non-hex ones"),
        (f"{'a' * 64},,{'b' * 64}", "key 2 of 3 is empty"),
    ],
)
def test_a_bad_previous_key_is_named_by_position_never_shown(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as err:
        parse_keys(text)
    assert "a" * 64 not in str(err.value) and "z" * 10 not in str(err.value)


def test_the_setting_is_optional_and_a_bad_one_is_a_config_error_naming_it() -> None:
    assert settings.read({}, "MAILROOM_PREVIOUS_SECRET_KEYS")["MAILROOM_PREVIOUS_SECRET_KEYS"] == ()
    value = f"{PREVIOUS.hex()},{os.urandom(31).hex()}"
    with pytest.raises(settings.ConfigError) as err:
        settings.read({"MAILROOM_PREVIOUS_SECRET_KEYS": value}, "MAILROOM_PREVIOUS_SECRET_KEYS")
    assert err.value.name == "MAILROOM_PREVIOUS_SECRET_KEYS"
    assert "key 2 of 2 is 62 characters" in str(err.value)
    assert PREVIOUS.hex() not in str(err.value) and value not in str(err.value)
