"""What an app installs and imports: a free distribution name, type information, no sender stack."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest
from conftest import ROOT

# What an app imports: verify and sign tokens of any action (mailroom.actions), and read a collector's lines (mailroom.wire).
APP_MODULES = ("mailroom.verify", "mailroom.signing", "mailroom.wire", "mailroom.actions")
BLOCKED = ("boto3", "botocore", "yoyo", "psycopg", "psycopg_binary", "dotenv")

_PROBE = """\
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # any import of it raises ImportError
import {module} as m
from mailroom.actions import PASSWORD_RECOVERY
from mailroom.signing import sign
from mailroom.verify import verify_link_token
key = bytes(range(32))
token = sign(key, PASSWORD_RECOVERY, bytes(32), "04217")
assert verify_link_token(key, token, "password_recovery", "04217") == bytes(32)
from mailroom.wire import decode_line
(record,), rejected = decode_line(("2,ada@example.com,ada," + token + ",04217").encode())
assert not rejected and record.signed_token == token
loaded = sorted(n for n, mod in sys.modules.items() if mod is not None and n.split(".")[0] in {blocked!r})
assert not loaded, loaded
print("ok")
"""


@pytest.mark.parametrize("module", APP_MODULES)
def test_an_app_creates_and_verifies_tokens_without_boto3_yoyo_or_psycopg(module: str) -> None:
    done = subprocess.run(  # the exit status is asserted below
        [sys.executable, "-c", _PROBE.format(blocked=BLOCKED, module=module)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


def test_the_distribution_has_a_free_name_and_keeps_the_import_package_and_scripts() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "pg-mailroom"  # "mailroom" on the package index is an unrelated project
    assert set(project["scripts"]) == {"collector", "sender", "mailroom"}


def test_every_package_of_the_wheel_ships_a_py_typed_marker() -> None:
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == ["mailroom", "collector", "sender"]
    for package in wheel["packages"]:
        assert (ROOT / package / "py.typed").is_file(), package
