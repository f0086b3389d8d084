"""What an app installs and imports: a free distribution name, type information, no sender stack.

The light install (no extras) and the pipeline extra are installed for real into fresh venvs
by `make wheel-check` (.ci/wheel_check.py); here, in-process, the same boundaries with the
pipeline's packages blocked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest
from conftest import ROOT

from mailroom import extras

# What an app imports: verify and sign tokens of any action (mailroom.actions), and read a collector's lines (mailroom.wire).
APP_MODULES = ("mailroom.verify", "mailroom.signing", "mailroom.wire", "mailroom.actions")
BLOCKED = (
    "boto3",
    "botocore",
    "yoyo",
    "prometheus_client",
    "css_inline",
    "idna",
    "psycopg",
    "psycopg_binary",
    "dotenv",
)

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


# The import name of each requirement of the pipeline extra.
_IMPORT_NAMES = {
    "boto3": "boto3",
    "yoyo-migrations": "yoyo",
    "idna": "idna",
    "prometheus_client": "prometheus_client",
    "css-inline": "css_inline",
}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;@]", requirement, maxsplit=1)[0]


def test_the_light_install_leaves_the_pipelines_packages_to_the_pipeline_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pipeline = [_requirement_name(r) for r in project["optional-dependencies"]["pipeline"]]
    base = [_requirement_name(r) for r in project["dependencies"]]
    assert base == ["psycopg", "python-dotenv"]
    # mailroom.extras checks for exactly the extra's modules, in its order.
    assert tuple(_IMPORT_NAMES[name] for name in pipeline) == extras.PIPELINE_MODULES
    # What needs the pipeline's packages installs it: the demo, the tests, the docs' build hook, mypy.
    for extra in ("demo", "test", "docs", "lint"):
        assert "pg-mailroom[pipeline]" in project["optional-dependencies"][extra], extra


# Run with the pipeline extra's packages blocked, as in a light install (psycopg and dotenv are there).
_LIGHT_PROBE = """\
import sys
for name in {blocked!r}:
    sys.modules[name] = None
{code}
"""


def _light(code: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the exit status is asserted by the callers
        [sys.executable, "-c", _LIGHT_PROBE.format(blocked=(*extras.PIPELINE_MODULES, "botocore"), code=code), *args],
        check=False,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")},
    )


def _missing_extra_line(program: str) -> str:
    return (
        f"{program}: this command needs the pipeline extra: pip install 'pg-mailroom[pipeline]' "
        "(missing module boto3)\n"
    )


@pytest.mark.parametrize(
    ("program", "code"),
    [
        ("collector", "from collector.__main__ import main; sys.argv[1:] = ['--help']; sys.exit(main())"),
        ("sender", "from sender.__main__ import main; sys.argv[1:] = []; sys.exit(main())"),
        ("mailroom migrate", "from mailroom.cli import main; sys.exit(main(['migrate']))"),
        ("mailroom run", "from mailroom.cli import main; sys.exit(main(['run']))"),
        ("mailroom templates", "from mailroom.cli import main; sys.exit(main(['templates', 'render', 'activation']))"),
    ],
)
def test_without_the_pipeline_extra_a_program_says_in_one_line_what_to_install(program: str, code: str) -> None:
    done = _light(code)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", _missing_extra_line(program))


def test_without_the_pipeline_extra_mailroom_verify_checks_a_link() -> None:
    vectors = json.loads((ROOT / "tests" / "data" / "interop_vectors.json").read_text())
    row = vectors["rows"][1]
    token = vectors["line"].split(",")[5 + 3]
    done = _light(
        "import os; from mailroom.cli import main\n"
        f"os.environ['MAILROOM_SECRET_KEY'] = {vectors['secret_key_hex']!r}\n"
        "sys.exit(main(sys.argv[1:]))",
        "verify",
        "--action",
        row["action"],
        "--code",
        row["code"],
        token,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, row["secret_hex"] + "\n", "")


def test_without_the_pipeline_extra_mailroom_help_offers_verify_and_names_the_extra() -> None:
    done = _light("from mailroom.cli import main; sys.exit(main(['--help']))")
    assert done.returncode == 0, done.stderr
    commands = done.stdout.split("COMMAND\n", 1)[1].split("\n\n", 1)[0]
    assert commands.split()[0] == "verify" and "migrate" not in commands, commands
    assert "The other commands need the pipeline extra: pip install 'pg-mailroom[pipeline]'" in done.stdout


def test_with_the_pipeline_extra_every_command_is_there() -> None:
    from mailroom import cli

    assert extras.missing_module() is None
    assert {"migrate", "run", "templates", "verify"} <= set(cli.COMMANDS)
