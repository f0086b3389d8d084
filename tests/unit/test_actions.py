"""Actions are data: the Action type, the shipped specs, and finding an action's spec."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailroom import actions
from mailroom.actions import (
    ACTIVATION,
    PASSWORD_RECOVERY,
    STANDARD,
    STANDARD_SPECS,
    Action,
    ActionSpec,
    UnknownAction,
    spec_for,
    specs_from_rows,
)


def test_the_six_shipped_actions_keep_1_and_2_and_number_the_others_from_3() -> None:
    assert [(a.number, a.name) for a in STANDARD] == [
        (1, "activation"),
        (2, "password_recovery"),
        (3, "email_change"),
        (4, "magic_link"),
        (5, "invitation"),
        (6, "welcome"),
    ]
    assert [spec.action for spec in STANDARD_SPECS.values()] == list(STANDARD)


def test_the_shipped_specs_sign_their_paths_and_only_recovery_signs_its_code() -> None:
    assert {name: spec.path for name, spec in STANDARD_SPECS.items()} == {
        "activation": "/activate",
        "password_recovery": "/recover",
        "email_change": "/email-change",
        "magic_link": "/magic-link",
        "invitation": "/invitation",
        "welcome": "/welcome",
    }
    assert [name for name, spec in STANDARD_SPECS.items() if spec.signs_code] == ["password_recovery"]
    assert [name for name, spec in STANDARD_SPECS.items() if not spec.link] == ["welcome"]


def test_the_shipped_lifetimes_keep_15_minutes_for_1_and_2_and_statuses_fit_each_action() -> None:
    lifetimes = {name: spec.lifetime for name, spec in STANDARD_SPECS.items()}
    assert lifetimes == {
        "activation": timedelta(minutes=15),
        "password_recovery": timedelta(minutes=15),
        "email_change": timedelta(hours=1),
        "magic_link": timedelta(minutes=15),
        "invitation": timedelta(days=7),
        "welcome": timedelta(days=1),
    }
    assert STANDARD_SPECS["activation"].statuses == ("provisioned",)
    assert STANDARD_SPECS["invitation"].statuses is None  # a token with no account
    assert all(spec.cooldown is None for spec in STANDARD_SPECS.values())  # MAILROOM_RECOVERY_COOLDOWN


def test_actions_are_hashable_values_ordered_by_number() -> None:
    assert Action(4, "magic_link") == actions.MAGIC_LINK
    assert hash(Action(4, "magic_link")) == hash(actions.MAGIC_LINK)
    assert sorted([actions.WELCOME, ACTIVATION, Action(9, "a_late_one"), PASSWORD_RECOVERY]) == [
        ACTIVATION,
        PASSWORD_RECOVERY,
        actions.WELCOME,
        Action(9, "a_late_one"),
    ]
    assert str(actions.MAGIC_LINK) == "magic_link"
    with pytest.raises(AttributeError):
        ACTIVATION.number = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("number", "name", "reason"),
    [
        (0, "zero", "1..32767"),
        (32768, "too_big", "1..32767"),
        (7, "Upper", "lowercase letter"),
        (7, "1st", "lowercase letter"),
        (7, "with-dash", "lowercase letter"),
        (7, "a" * 64, "lowercase letter"),
        (1, "magic_link", "action number 1 is activation"),
        (2, "activation", "action number 2 is password_recovery"),
        (5, "activation", "activation is action number 1"),
        (9, "password_recovery", "password_recovery is action number 2"),
    ],
)
def test_an_action_out_of_the_rules_is_refused_with_the_rule(number: int, name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Action(number, name)


def test_a_name_of_63_characters_is_the_longest() -> None:
    assert Action(7, "a" * 63).name == "a" * 63


@pytest.mark.parametrize("path", ["magic-link", "", "/ü"])
def test_a_spec_path_is_ascii_starting_with_a_slash(path: str) -> None:
    with pytest.raises(ValueError, match="starting with '/'"):
        ActionSpec(Action(7, "team_invite"), path)


def test_a_standard_action_is_found_by_name_number_alias_or_action() -> None:
    recovery = STANDARD_SPECS["password_recovery"]
    assert spec_for("password_recovery") is recovery
    assert spec_for(2) is recovery
    assert spec_for("2") is recovery
    assert spec_for("recovery") is recovery
    assert spec_for(PASSWORD_RECOVERY) is recovery
    assert spec_for(recovery) is recovery


def test_a_custom_action_needs_its_spec_or_the_registry() -> None:
    with pytest.raises(UnknownAction, match="a custom action needs its spec"):
        spec_for("team_invite")
    team = ActionSpec(Action(7, "team_invite"), "/team-invite", signs_code=True)
    registry = {**STANDARD_SPECS, "team_invite": team}
    assert spec_for("team_invite", registry) is team
    assert spec_for(7, registry) is team
    assert spec_for(Action(7, "team_invite"), registry) is team


def test_an_action_whose_number_disagrees_with_the_standard_one_is_unknown() -> None:
    with pytest.raises(UnknownAction, match="magic_link is action 4 here, not 9"):
        spec_for(Action(9, "magic_link"))


def test_registry_rows_become_specs_and_a_bad_row_is_named() -> None:
    rows = [
        ("activation", 1, "/activate", False, True, timedelta(minutes=15), None, ["provisioned"]),
        ("team_invite", 7, "/team-invite", True, True, timedelta(days=2), timedelta(minutes=5), None),
    ]
    specs = specs_from_rows(rows)
    assert specs["activation"] == STANDARD_SPECS["activation"]
    assert specs["team_invite"] == ActionSpec(
        Action(7, "team_invite"), "/team-invite", True, True, timedelta(days=2), timedelta(minutes=5), None
    )
    with pytest.raises(ValueError, match="the actions row 'Bad'"):
        specs_from_rows([("Bad", 8, "/bad", False, True, timedelta(minutes=1), None, None)])
