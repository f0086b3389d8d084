"""The installed `mailroom` script's app-side commands: verify, prune and run (real subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import ROOT, pg_connect, script

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.signing import sign

KEY_HEX = "5f" * 32
KEY = bytes.fromhex(KEY_HEX)
SECRET = bytes(range(32))
CODE = "04217"
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_GOOD = sign(KEY, ACTIVATION, SECRET, CODE)
# The same 64 bytes with one of the last character's 4 unused bits set: an altered spelling.
NON_CANONICAL = _GOOD[:-1] + _B64URL[_B64URL.index(_GOOD[-1]) | 1]


def _mailroom(
    env: dict[str, str], *args: str, stdin: str | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("mailroom"), *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


@pytest.fixture
def env(base_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    # tmp_path as the working directory keeps a developer's ./.env out of the tests.
    # `mailroom run` checks the programs' settings first, MAILROOM_DATABASE_URL among them (never
    # connected to by the tests that replace the programs).
    return {
        **base_env,
        "MAILROOM_SECRET_KEY": KEY_HEX,
        "MAILROOM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
    }


# ---------------------------------------------------------------- mailroom verify


def test_verify_prints_the_secret_of_a_valid_activation_token(env: dict[str, str], tmp_path: Path) -> None:
    token = sign(KEY, ACTIVATION, SECRET, CODE)
    done = _mailroom(env, "verify", token, "--action", "activation", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, SECRET.hex() + "\n")
    assert token not in done.stderr


def test_verify_takes_a_token_that_starts_with_a_dash_as_typed(env: dict[str, str], tmp_path: Path) -> None:
    secret = next(bytes([i]) * 32 for i in range(256) if sign(KEY, ACTIVATION, bytes([i]) * 32, CODE).startswith("-"))
    token = sign(KEY, ACTIVATION, secret, CODE)
    done = _mailroom(env, "verify", token, "--action", "activation", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, secret.hex() + "\n"), done.stderr


def test_verify_a_recovery_token_needs_the_right_code(env: dict[str, str], tmp_path: Path) -> None:
    token = sign(KEY, PASSWORD_RECOVERY, SECRET, CODE)
    ok = _mailroom(env, "verify", token, "--action", "password_recovery", "--code", CODE, cwd=tmp_path)
    assert (ok.returncode, ok.stdout.strip()) == (0, SECRET.hex())
    wrong = _mailroom(env, "verify", token, "--action", "password_recovery", "--code", "99999", cwd=tmp_path)
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert "invalid token: bad signature" in wrong.stderr
    missing = _mailroom(env, "verify", token, "--action", "password_recovery", cwd=tmp_path)
    assert missing.returncode == 1 and "needs its 5-digit code" in missing.stderr


def test_verify_rejects_a_token_for_another_action(env: dict[str, str], tmp_path: Path) -> None:
    token = sign(KEY, ACTIVATION, SECRET, CODE)
    done = _mailroom(env, "verify", token, "--action", "password_recovery", "--code", CODE, cwd=tmp_path)
    assert done.returncode == 1 and "bad signature" in done.stderr


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("abc", "86 characters, not 3"),
        ("!" * 86, "base64url"),
        (NON_CANONICAL, "canonical"),
        (sign(bytes(32), ACTIVATION, SECRET, CODE), "bad signature"),  # another key
    ],
)
def test_verify_says_why_a_token_is_invalid(env: dict[str, str], tmp_path: Path, token: str, reason: str) -> None:
    done = _mailroom(env, "verify", token, "--action", "activation", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("mailroom verify: invalid token: ") and reason in done.stderr


def test_verify_reads_the_token_from_stdin(env: dict[str, str], tmp_path: Path) -> None:
    token = sign(KEY, ACTIVATION, SECRET, CODE)
    done = _mailroom(env, "verify", "-", "--action", "activation", stdin=token + "\n", cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, SECRET.hex())


@pytest.mark.parametrize(
    ("key", "expected"),
    [(None, "MAILROOM_SECRET_KEY: is required"), ("abc", "MAILROOM_SECRET_KEY: expected 64 hex characters")],
)
def test_verify_without_a_usable_key_is_a_configuration_error(
    env: dict[str, str], tmp_path: Path, key: str | None, expected: str
) -> None:
    env = {k: v for k, v in env.items() if k != "MAILROOM_SECRET_KEY"}
    if key is not None:
        env["MAILROOM_SECRET_KEY"] = key
    done = _mailroom(env, "verify", sign(KEY, ACTIVATION, SECRET, CODE), "--action", "activation", cwd=tmp_path)
    assert done.returncode == 2 and expected in done.stderr


def test_verify_with_an_unknown_action_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    done = _mailroom(env, "verify", "x", "--action", "reset", cwd=tmp_path)
    assert done.returncode == 2 and "unknown action 'reset'" in done.stderr and "--path" in done.stderr


# ---------------------------------------------------------------- mailroom prune


def test_prune_deletes_old_tokens_and_reports_how_many(
    env: dict[str, str], tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 'p' || i || '@x.org', 'p' || i FROM generate_series(1, 35) i"
    )
    db.execute("UPDATE tokens SET expires_at = now() - interval '2 days' WHERE id <= 30")
    env = {**env, "MAILROOM_DATABASE_URL": database_url, "MAILROOM_PRUNE_AFTER": "1d"}
    done = _mailroom(env, "prune", "--batch-size", "10", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "deleted 30 tokens consumed or expired more than 86400 s ago in 4 batches\n"
    assert db.execute("SELECT count(*) FROM tokens").fetchone() == (5,)


@pytest.mark.parametrize("value", ["", "soon", "0", "-1d", "7w"])
def test_prune_with_a_bad_retention_exits_2_naming_the_variable(
    env: dict[str, str], tmp_path: Path, value: str
) -> None:
    done = _mailroom({**env, "MAILROOM_PRUNE_AFTER": value}, "prune", cwd=tmp_path)
    assert done.returncode == 2
    assert "MAILROOM_PRUNE_AFTER" in done.stderr and "positive duration" in done.stderr


@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_prune_with_a_bad_batch_size_exits_2(env: dict[str, str], tmp_path: Path, value: str) -> None:
    done = _mailroom(env, "prune", "--batch-size", value, cwd=tmp_path)
    assert done.returncode == 2 and "--batch-size" in done.stderr


def test_prune_on_an_unmigrated_database_says_to_migrate(
    env: dict[str, str], tmp_path: Path, empty_database_url: str
) -> None:
    done = _mailroom({**env, "MAILROOM_DATABASE_URL": empty_database_url}, "prune", cwd=tmp_path)
    assert done.returncode == 1 and "mailroom migrate" in done.stderr


# ---------------------------------------------------------------- mailroom run

UPSTREAM = """
import os, signal, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
def stop(signum, frame):
    sys.stdout.write("last\\n"); sys.stdout.flush(); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
n = 0
while True:
    n += 1
    sys.stdout.write(f"line {n}\\n"); sys.stdout.flush()
    time.sleep(0.02)
"""

DOWNSTREAM = """
import os, sys
open(sys.argv[1], "w").write(str(os.getpid()))
with open(sys.argv[2], "a") as out:
    for line in sys.stdin:
        out.write(line); out.flush()
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
"""


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Pipeline:
    def __init__(self, tmp_path: Path, env: dict[str, str], down_exit: int = 0) -> None:
        (tmp_path / "up.py").write_text(UPSTREAM)
        (tmp_path / "down.py").write_text(DOWNSTREAM)
        self.up_pid_file, self.down_pid_file = tmp_path / "up.pid", tmp_path / "down.pid"
        self.out = tmp_path / "received.txt"
        self.proc = subprocess.Popen(
            [
                script("mailroom"),
                "run",
                "--grace",
                "10",
                "--collector",
                f"{sys.executable} {tmp_path / 'up.py'} {self.up_pid_file}",
                "--sender",
                f"{sys.executable} {tmp_path / 'down.py'} {self.down_pid_file} {self.out} {down_exit}",
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for(lambda: self.out.exists() and "line 3" in self.out.read_text(), "lines to flow through the pipe")
        self.up_pid = int(self.up_pid_file.read_text())
        self.down_pid = int(self.down_pid_file.read_text())

    def finish(self) -> tuple[int, str]:
        _, stderr = self.proc.communicate(timeout=60)
        return self.proc.returncode, stderr

    def cleanup(self) -> None:
        for pid in (getattr(self, "up_pid", None), getattr(self, "down_pid", None)):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def pipeline(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Pipeline]]:
    started: list[Pipeline] = []

    def start(down_exit: int = 0) -> Pipeline:
        started.append(Pipeline(tmp_path, env, down_exit))
        return started[-1]

    yield start
    for p in started:
        p.cleanup()


def test_run_stops_both_on_sigterm_and_exits_0_after_the_sender_read_everything(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    p.proc.send_signal(signal.SIGTERM)
    code, stderr = p.finish()
    assert code == 0, stderr
    assert not _alive(p.up_pid) and not _alive(p.down_pid)
    # The collector was stopped first and the sender read up to its last line.
    assert p.out.read_text().endswith("last\n")


def test_run_exits_non_zero_when_the_collector_dies_and_the_sender_is_gone(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    os.kill(p.up_pid, signal.SIGKILL)
    code, stderr = p.finish()
    assert code == 128 + signal.SIGKILL
    assert "collector exited with status 137" in stderr
    assert not _alive(p.down_pid)


def test_run_exits_non_zero_when_the_sender_dies_and_the_collector_is_gone(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    os.kill(p.down_pid, signal.SIGKILL)
    code, stderr = p.finish()
    assert code == 128 + signal.SIGKILL
    assert "sender exited with status 137" in stderr
    assert not _alive(p.up_pid)


def test_run_exits_non_zero_even_when_the_process_that_ended_said_0(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    os.kill(p.up_pid, signal.SIGTERM)  # the stand-in collector exits 0 on SIGTERM
    code, _ = p.finish()
    assert code == 1
    assert not _alive(p.down_pid)


STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").write(str(os.getpid()))
if sys.argv[2] == "read":
    sys.stdin.read()  # to end of input, then stay
while True:
    time.sleep(1)
"""


def test_run_stops_children_that_ignore_sigterm_within_three_grace_periods(env: dict[str, str], tmp_path: Path) -> None:
    # The orchestrator's stop timeout must be longer than 3 x --grace (docs/how-to/deploy.md):
    # one grace period for the collector's SIGTERM, one for the sender to reach end of input,
    # one for the sender's SIGTERM; then SIGKILL.
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    up_pid, down_pid = tmp_path / "up.pid", tmp_path / "down.pid"
    proc = subprocess.Popen(
        [
            script("mailroom"),
            "run",
            "--grace",
            "200ms",
            "--collector",
            f"{sys.executable} {tmp_path / 'stubborn.py'} {up_pid} write",
            "--sender",
            f"{sys.executable} {tmp_path / 'stubborn.py'} {down_pid} read",
        ],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: up_pid.exists() and down_pid.exists(), "both children to ignore SIGTERM")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    steps = [line.split(": ", 1)[1] for line in stderr.splitlines() if " 0.2 s" in line]
    up, down = up_pid.read_text(), down_pid.read_text()
    assert steps == [
        f"collector (pid {up}) ignored SIGTERM for 0.2 s: killing it",
        f"sender (pid {down}) still running 0.2 s after end of input: stopping it",
        f"sender (pid {down}) ignored SIGTERM for 0.2 s: killing it",
    ], stderr
    assert proc.returncode == 128 + signal.SIGKILL


def test_run_passes_on_a_childs_configuration_error(env: dict[str, str], tmp_path: Path) -> None:
    done = _mailroom(
        env,
        "run",
        "--collector",
        f"{sys.executable} -c 'import sys; sys.exit(2)'",
        "--sender",
        f"{sys.executable} -c 'import sys; sys.stdin.read()'",
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "collector exited with status 2" in done.stderr


def test_run_with_a_missing_program_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    done = _mailroom(env, "run", "--collector", str(tmp_path / "no-such-collector"), cwd=tmp_path)
    assert done.returncode == 2 and "cannot start collector" in done.stderr


# ---------------------------------------------------------------- docker/entrypoint (no Docker needed)


def test_the_container_entrypoint_dispatches_to_mailroom(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "PATH": f"{Path(script('mailroom')).parent}{os.pathsep}{env.get('PATH', '')}"}
    token = sign(KEY, ACTIVATION, SECRET, CODE)
    done = subprocess.run(
        [str(ROOT / "docker" / "entrypoint"), "verify", token, "--action", "activation"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, SECRET.hex())
    done = subprocess.run(
        [str(ROOT / "docker" / "entrypoint"), "mailroom", "verify", "bad", "--action", "activation"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1


def test_the_dockerfile_copies_everything_the_wheel_is_built_from() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", project["project"]["readme"], *wheel["packages"], *wheel["force-include"]}
    copied: set[str] = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied.update(part.removeprefix("./").rstrip("/") for part in line.split()[1:-1])
    assert needed <= copied, f"the Dockerfile does not COPY {sorted(needed - copied)}"
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not (copied & ignored), f".dockerignore excludes {sorted(copied & ignored)}"
    assert "docker/entrypoint" in copied and os.access(ROOT / "docker" / "entrypoint", os.X_OK)


def test_run_with_the_real_programs_delivers_a_token_that_verifies_and_consumes(
    env: dict[str, str], tmp_path: Path, database_url: str, db: psycopg.Connection
) -> None:
    import json
    import re

    env = {
        **env,
        "MAILROOM_DATABASE_URL": database_url,
        "MAILROOM_DEBUG": "true",
        "MAILROOM_BATCH_TIMEOUT": "100",
        "MAILROOM_SES_OUTPUT_PATH": str(tmp_path / "output"),
    }
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([script("mailroom"), "run"], env=env, cwd=tmp_path, stdout=stdout, stderr=stderr)
    try:
        _wait_for(lambda: "ready: start drain done" in err.read_text(), "the collector to be ready")
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", err.read_text().split("started ", 1)[1].splitlines()[0])]
        account = db.execute(
            "INSERT INTO accounts (email, login) VALUES ('zoe@example.com', 'zoe') RETURNING id"
        ).fetchone()[0]
        _wait_for(lambda: "to zoe@example.com" in out.read_text(), "the email on the sender's stdout")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)
    data = next(
        json.loads(line.split("data:", 1)[1])
        for line in out.read_text().splitlines()
        if "data:" in line and "zoe" in line
    )
    verified = _mailroom(env, "verify", data["secret"], "--action", "activation", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    secret = bytes.fromhex(verified.stdout.strip())
    assert db.execute("SELECT mailroom_consume_token(%s, NULL)", (secret,)).fetchone() == (account,)
    assert db.execute("SELECT status::text FROM accounts WHERE id = %s", (account,)).fetchone() == ("active",)


# ---------------------------------------------------------------- mailroom migrate / --help


def test_migrate_builds_the_schema_on_an_empty_database_is_idempotent_and_rolls_back(
    base_env: dict[str, str], empty_database_url: str, tmp_path: Path
) -> None:
    env = {**base_env, "MAILROOM_DATABASE_URL": empty_database_url}
    first = _mailroom(env, "migrate", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied: 0001_schema")
    again = _mailroom(env, "migrate", cwd=tmp_path)
    assert (again.returncode, again.stdout) == (0, "applied: nothing (schema is up to date)\n")
    with pg_connect(empty_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts (email, login) VALUES ('m@example.com', 'm')")
        assert conn.execute("SELECT count(*) FROM tokens").fetchone() == (1,)  # the trigger chain works
    last = first.stdout.removeprefix("applied: ").strip().split(", ")[-1]
    back = _mailroom(env, "migrate", "--rollback", cwd=tmp_path)
    assert (back.returncode, back.stdout) == (0, f"rolled back: {last}\n")
    assert _mailroom(env, "migrate", cwd=tmp_path).stdout == f"applied: {last}\n"


def test_migrate_over_accounts_with_control_characters_names_them_in_one_line_and_exits_1(
    base_env: dict[str, str], empty_database_url: str, tmp_path: Path
) -> None:
    env = {**base_env, "MAILROOM_DATABASE_URL": empty_database_url}
    assert _mailroom(env, "migrate", cwd=tmp_path).returncode == 0
    for _ in range(20):  # roll back to just before 0005 (and whatever came after it)
        if "0005_no_control_chars" in _mailroom(env, "migrate", "--rollback", cwd=tmp_path).stdout:
            break
    else:
        pytest.fail("0005_no_control_chars was never rolled back")
    with pg_connect(empty_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts (email, login) VALUES ('lf@example.com', E'l\\nf')")
    done = _mailroom(env, "migrate", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("mailroom migrate: failed: migration 0005_no_control_chars: 1 account(s) have a control")
    assert "list them with: SELECT id, email, login FROM accounts WHERE" in line


def test_migrate_against_an_unreachable_database_says_so_and_exits_1(base_env: dict[str, str], tmp_path: Path) -> None:
    env = {**base_env, "MAILROOM_DATABASE_URL": "postgresql://nobody:secretpw@127.0.0.1:1/none?connect_timeout=2"}
    done = _mailroom(env, "migrate", cwd=tmp_path)
    assert done.returncode == 1 and "cannot reach the database" in done.stderr
    assert "secretpw" not in done.stderr


def test_mailroom_help_lists_every_command_and_every_variable_it_reads(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    from mailroom.cli import COMMANDS

    done = _mailroom(base_env, "--help", cwd=tmp_path)
    assert done.returncode == 0
    for name, (_, variables, _, _) in COMMANDS.items():
        assert name in done.stdout
        for variable in variables:
            assert variable in done.stdout, variable


# ---------------------------------------------------------------- mailroom status


def test_status_says_when_the_output_folder_does_not_exist_and_which_variable_sets_it(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    env = {k: v for k, v in env.items() if k != "MAILROOM_SES_OUTPUT_PATH"}  # the default, ./output
    done = _mailroom(dict(env, MAILROOM_DATABASE_URL=database_url), "status", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "none found" not in done.stdout
    assert (
        f"  ✗ the folder output ({tmp_path / 'output'}) does not exist: MAILROOM_SES_OUTPUT_PATH sets it; "
        "run `mailroom status` with the sender's MAILROOM_SES_OUTPUT_PATH, on the host where the sender runs"
    ) in done.stdout.splitlines()
    as_json = _mailroom(dict(env, MAILROOM_DATABASE_URL=database_url), "status", "--json", cwd=tmp_path)
    assert '"output_path_exists": false' in as_json.stdout
