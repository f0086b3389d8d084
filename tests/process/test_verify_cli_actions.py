"""`mailroom verify` takes any action by name, and the keys of a rotation (real subprocesses)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import script

from mailroom.actions import STANDARD_SPECS, Action, ActionSpec
from mailroom.signing import sign

CURRENT_HEX = "5f" * 32
PREVIOUS_HEX = "6a" * 32
RETIRED_HEX = "7b" * 32
SECRET = bytes(range(32))
CODE = "04217"


def _verify(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("mailroom"), "verify", *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "MAILROOM_SECRET_KEY": CURRENT_HEX}


@pytest.mark.parametrize("name", list(STANDARD_SPECS))
def test_verify_checks_every_shipped_action_by_name(env: dict[str, str], tmp_path: Path, name: str) -> None:
    token = sign(bytes.fromhex(CURRENT_HEX), name, SECRET, CODE)
    done = _verify(env, tmp_path, token, "--action", name, "--code", CODE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == SECRET.hex()
    other = "magic_link" if name != "magic_link" else "welcome"
    assert _verify(env, tmp_path, token, "--action", other, "--code", CODE).returncode == 1


@pytest.mark.parametrize(
    ("spelling", "name"), [("1", "activation"), ("2", "password_recovery"), ("recovery", "password_recovery")]
)
def test_verify_accepts_the_old_spellings_of_the_two_first_actions(
    env: dict[str, str], tmp_path: Path, spelling: str, name: str
) -> None:
    token = sign(bytes.fromhex(CURRENT_HEX), name, SECRET, CODE)
    done = _verify(env, tmp_path, token, "--action", spelling, "--code", CODE)
    assert done.returncode == 0 and done.stdout.strip() == SECRET.hex(), done.stderr


def test_verify_checks_an_added_action_with_its_path(env: dict[str, str], tmp_path: Path) -> None:
    spec = ActionSpec(Action(7, "team_invite"), "/team-invite", signs_code=True)
    token = sign(bytes.fromhex(CURRENT_HEX), spec, SECRET, CODE)
    ok = _verify(
        env, tmp_path, token, "--action", "team_invite", "--path", "/team-invite", "--signs-code", "--code", CODE
    )
    assert ok.returncode == 0 and ok.stdout.strip() == SECRET.hex(), ok.stderr
    unsigned_code = _verify(env, tmp_path, token, "--action", "team_invite", "--path", "/team-invite", "--code", CODE)
    assert unsigned_code.returncode == 1 and "bad signature" in unsigned_code.stderr
    standard = _verify(env, tmp_path, token, "--action", "magic_link", "--path", "/magic-link")
    assert standard.returncode == 2 and "drop --path" in standard.stderr


def test_verify_accepts_a_previous_key_and_not_a_retired_one(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "MAILROOM_PREVIOUS_SECRET_KEYS": f"{'00' * 32},{PREVIOUS_HEX}"}
    old = sign(bytes.fromhex(PREVIOUS_HEX), "magic_link", SECRET)
    done = _verify(env, tmp_path, old, "--action", "magic_link")
    assert done.returncode == 0 and done.stdout.strip() == SECRET.hex(), done.stderr
    retired = sign(bytes.fromhex(RETIRED_HEX), "magic_link", SECRET)
    done = _verify(env, tmp_path, retired, "--action", "magic_link")
    assert done.returncode == 1 and "bad signature" in done.stderr


def test_a_bad_previous_key_exits_2_with_one_line_that_never_shows_a_key(env: dict[str, str], tmp_path: Path) -> None:
    bad = f"{PREVIOUS_HEX},{'g' * 64}"
    env = {**env, "MAILROOM_PREVIOUS_SECRET_KEYS": bad}
    done = _verify(env, tmp_path, sign(bytes.fromhex(CURRENT_HEX), "activation", SECRET), "--action", "activation")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "MAILROOM_PREVIOUS_SECRET_KEYS" in done.stderr and "key 2 of 2" in done.stderr
    assert PREVIOUS_HEX not in done.stderr and "g" * 64 not in done.stderr
