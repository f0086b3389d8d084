"""`make wheel-check`: the wheel and the sdist install and run in a fresh venv.

`python -m build` makes the sdist and then the wheel from that sdist. Each is installed
into a new virtualenv of its own (dependencies from the package index, as a user gets
them), and the console scripts are run from there, outside the repository, so that
nothing can come from the source tree: `--help` of the three programs, the packaged
templates rendered, and the interop vectors' batch line printed by the sender in debug
mode. Exits non-zero with the reason on the first failure.
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


def check_installed(artifact: Path, work: Path, version: str) -> None:
    venv = work / ("venv-wheel" if artifact.suffix == ".whl" else "venv-sdist")
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(artifact)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "AWS_", "PYTHON"))}
    cwd = work / "elsewhere"
    cwd.mkdir(exist_ok=True)
    bin_ = venv / "bin"
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
    print(f"wheel-check: {artifact.name} installs and runs", flush=True)


def main() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with tempfile.TemporaryDirectory(prefix="mailroom-wheel-check-") as tmp:
        work = Path(tmp)
        run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(ROOT)])
        (wheel,) = (work / "dist").glob("*.whl")
        (sdist,) = (work / "dist").glob("*.tar.gz")
        check_contents(wheel, sdist)
        check_installed(wheel, work, version)
        check_installed(sdist, work, version)


if __name__ == "__main__":
    main()
