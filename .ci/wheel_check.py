"""`make wheel-check`: the wheel and the sdist install and run in a fresh venv, light and with the pipeline.

`python -m build` makes the sdist and then the wheel from that sdist. Each install is a new
virtualenv (dependencies from the package index, as a user gets them), and the console
scripts are run from there, outside the repository, so that nothing can come from the
source tree. Exits non-zero with the reason on the first failure.

1. The light install (the wheel, no extras), what an app gets: none of the pipeline's
   packages is installed; mailroom.verify and mailroom.wire verify the interop vectors'
   tokens, and so does `mailroom verify`; `collector`, `sender` and the other `mailroom`
   commands print the one line that names the missing extra and exit 2.
2. The same venv after `pip install 'pg-mailroom[pipeline]'` (an app's host that becomes a
   pipeline host), and a fresh venv with the sdist and the extra: `--help` of the three
   programs, the packaged templates rendered, and the interop vectors' batch line printed
   by the sender in debug mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mailroom", "collector", "sender")
EXTRA = "pipeline"
# The import names of the pipeline extra's requirements, and botocore (boto3's): none of
# them may be in the light install.
PIPELINE_MODULES = ("boto3", "botocore", "yoyo", "idna", "prometheus_client", "css_inline")
MISSING_EXTRA_STATUS = 2

# Run by the light install's python, outside the repository: the app's path, on the interop vectors.
_APP_PROBE = """\
import importlib.util, json, sys
from mailroom.verify import verify_link_token
from mailroom.wire import decode_line
vectors = json.loads(sys.stdin.read())
key = bytes.fromhex(vectors["secret_key_hex"])
records, rejected = decode_line(vectors["line"].encode())
assert not rejected and len(records) == len(vectors["rows"]), rejected
for record, row in zip(records, vectors["rows"]):
    secret = verify_link_token(key, record.signed_token, row["action"], row["code"])
    assert secret.hex() == row["secret_hex"], row
present = [name for name in sys.argv[1:] if importlib.util.find_spec(name) is not None]
assert not present, f"the light install has {present}"
print(len(records))
"""


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        sys.exit(f"wheel-check: `{' '.join(cmd)}` exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def check_contents(wheel: Path, sdist: Path) -> None:
    """Every package with its py.typed marker, and the schema, queries and templates."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        if f"{package}/py.typed" not in names:
            sys.exit(f"wheel-check: {wheel.name} has no {package}/py.typed")
    for resource in ("migrations/0001_schema.sql", "sql/collector.sql", "templates/activation/body.html"):
        if f"mailroom/_resources/{resource}" not in names:
            sys.exit(f"wheel-check: {wheel.name} has no mailroom/_resources/{resource}")
    with tarfile.open(sdist) as tar:
        members = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in (
        "pyproject.toml",
        "README.md",
        "migrations/0001_schema.sql",
        "sql/collector.sql",
        "mailroom/py.typed",
    ):
        if needed not in members:
            sys.exit(f"wheel-check: {sdist.name} has no {needed}")


def new_venv(work: Path, name: str) -> Path:
    venv = work / name
    run([sys.executable, "-m", "venv", str(venv)])
    return venv


def pip_install(venv: Path, requirement: str) -> None:
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement])


def program_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "AWS_", "PYTHON"))}


def elsewhere(work: Path) -> Path:
    cwd = work / "elsewhere"
    cwd.mkdir(exist_ok=True)
    return cwd


def check_light(venv: Path, work: Path) -> None:
    """What an app gets without extras: the app's modules and `mailroom verify`, and one line from the rest."""
    env, cwd, bin_ = program_env(), elsewhere(work), venv / "bin"
    vectors_text = (ROOT / "tests" / "data" / "interop_vectors.json").read_text()
    vectors = json.loads(vectors_text)
    probe = work / "app_probe.py"
    probe.write_text(_APP_PROBE)
    said = run([str(bin_ / "python"), str(probe), *PIPELINE_MODULES], env=env, cwd=cwd, input=vectors_text).stdout
    if said.strip() != str(len(vectors["rows"])):
        sys.exit(f"wheel-check: the light install's app probe said {said!r}")
    key_env = {**env, "MAILROOM_SECRET_KEY": vectors["secret_key_hex"]}
    row = vectors["rows"][0]
    token = vectors["line"].split(",")[3]
    secret = run([str(bin_ / "mailroom"), "verify", "--action", row["action"], token], env=key_env, cwd=cwd).stdout
    if secret.strip() != row["secret_hex"]:
        sys.exit(f"wheel-check: `mailroom verify` in the light install printed {secret!r}")
    run([str(bin_ / "mailroom"), "--help"], env=env, cwd=cwd)
    install = f"pip install 'pg-mailroom[{EXTRA}]'"
    for program, args in (
        ("collector", ["--help"]),
        ("collector", []),
        ("sender", ["--help"]),
        ("sender", []),
        ("mailroom", ["migrate"]),
        ("mailroom", ["run"]),
        ("mailroom", ["templates", "render", "activation"]),
    ):
        cmd = [str(bin_ / program), *args]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=cwd, input="")
        shown = " ".join([program, *args])
        lines = done.stderr.splitlines()
        if (
            done.returncode != MISSING_EXTRA_STATUS
            or done.stdout
            or len(lines) != 1
            or f"needs the {EXTRA} extra: {install} (missing module " not in lines[0]
        ):
            sys.exit(
                f"wheel-check: `{shown}` in the light install exited {done.returncode} and printed "
                f"{done.stdout!r} and {done.stderr!r}; expected one line naming the {EXTRA} extra and status "
                f"{MISSING_EXTRA_STATUS}"
            )
        print(f"+ {shown}: {lines[0]}", flush=True)
    print("wheel-check: the light install verifies links and names the missing extra", flush=True)


def check_pipeline(venv: Path, work: Path, version: str, label: str) -> None:
    """The three programs run from an install with the pipeline extra."""
    env, cwd, bin_ = program_env(), elsewhere(work), venv / "bin"
    help_ = run([str(bin_ / "mailroom"), "--help"], env=env, cwd=cwd).stdout
    # `mailroom --version` comes with the operator commands' branch; once it is there it must say the version.
    if "--version" in help_:
        said = run([str(bin_ / "mailroom"), "--version"], env=env, cwd=cwd).stdout
        if version not in said:
            sys.exit(f"wheel-check: `mailroom --version` said {said!r}, not {version}")
    run([str(bin_ / "collector"), "--help"], env=env, cwd=cwd)
    run([str(bin_ / "sender"), "--help"], env=env, cwd=cwd)
    rendered = run([str(bin_ / "mailroom"), "templates", "render", "activation"], env=env, cwd=cwd).stdout
    if "activate?token=" not in rendered:
        sys.exit(f"wheel-check: the packaged activation template did not render:\n{rendered}")
    vectors = json.loads((ROOT / "tests" / "data" / "interop_vectors.json").read_text())
    # An output directory per install: a shared journal would take the second run's records for duplicates.
    debug_env = {**env, "MAILROOM_DEBUG": "true", "MAILROOM_SES_OUTPUT_PATH": str(venv / "output")}
    printed = run([str(bin_ / "sender")], env=debug_env, cwd=cwd, input=vectors["line"] + "\n").stdout
    for row in vectors["rows"]:
        if f"to {row['email']}" not in printed:
            sys.exit(f"wheel-check: the installed sender did not print the email to {row['email']}:\n{printed}")
    print(f"wheel-check: {label} installs and runs", flush=True)


def main() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with tempfile.TemporaryDirectory(prefix="mailroom-wheel-check-") as tmp:
        work = Path(tmp)
        run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(ROOT)])
        (wheel,) = (work / "dist").glob("*.whl")
        (sdist,) = (work / "dist").glob("*.tar.gz")
        check_contents(wheel, sdist)
        app = new_venv(work, "venv-wheel")
        pip_install(app, str(wheel))
        check_light(app, work)
        # The same venv gains the extra with the command the programs printed (pip keeps the
        # installed pg-mailroom and adds the extra's packages), as an app's host that becomes a
        # pipeline host.
        pip_install(app, f"pg-mailroom[{EXTRA}]")
        check_pipeline(app, work, version, f"{wheel.name} with [{EXTRA}]")
        host = new_venv(work, "venv-sdist")
        pip_install(host, f"pg-mailroom[{EXTRA}] @ {sdist.as_uri()}")
        check_pipeline(host, work, version, f"{sdist.name} with [{EXTRA}]")


if __name__ == "__main__":
    main()
