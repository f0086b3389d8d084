"""`mailroom demo` as a user runs it: no database configured, no AWS, one command.

The demo runs on its embedded PostgreSQL (MAILROOM_DATABASE_URL unset), as `make demo` does
on a fresh clone: starting pgserver takes about a second here, and pointing the demo at the
test server instead would leave the embedded path, the one users take first, untested.

"No process left behind" is checked through /proc (psutil is not a dependency of ours):
the pipeline's processes are found by the demo's own queue name in their environment
(MAILROOM_QUEUE_NAME=mailroom_demo_..., which only the demo's children carry), the embedded
server by its postmaster pid and data directory, both of which the demo prints.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from conftest import script
from demo_output import blocks

from mailroom.debug_output import END_RULE, RULE

DEMO_TIMEOUT_S = 120

_POSTGRES = re.compile(r"^\[demo\] PostgreSQL is up \(pid (\d+), data in (\S+),", re.MULTILINE)
_QUEUE = re.compile(r"MAILROOM_QUEUE_NAME=(mailroom_demo_[0-9a-f]+)")
_ACTIVATE = re.compile(r"^\s+\| http://localhost:8000/activate\?token=[A-Za-z0-9_-]{86}$", re.MULTILINE)
_RECOVER = re.compile(r"^\s+\| http://localhost:8000/recover\?token=[A-Za-z0-9_-]{86}$", re.MULTILINE)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return b""


def processes_of_demo(queue_name: str, postmaster_pid: int, datadir: str) -> dict[int, str]:
    """pid -> command line of every live process the demo started (pipeline or embedded server).

    Zombies are not counted: they run nothing, and in a container whose PID 1 does not reap,
    the stopped postmaster (re-parented there by pg_ctl) may stay one.
    """
    marker = f"MAILROOM_QUEUE_NAME={queue_name}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        status = _read(entry / "status").decode(errors="replace")
        state = re.search(r"^State:\s+(\S)", status, re.MULTILINE)
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)
        if not state or state.group(1) == "Z":
            continue
        cmdline = _read(entry / "cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        if (
            pid == postmaster_pid
            or (ppid and int(ppid.group(1)) == postmaster_pid)
            or datadir in cmdline
            or marker in _read(entry / "environ").split(b"\0")
        ):
            found[pid] = cmdline
    return found


def demo_env(base_env: dict[str, str]) -> dict[str, str]:
    env = dict(base_env)  # no MAILROOM_* at all: the embedded server, as on a fresh clone
    env.pop("PGHOST", None)
    return env


def test_demo_shows_rendered_emails_and_leaves_no_process_behind(base_env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [script("mailroom"), "demo"],
        env=demo_env(base_env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, f"stdout:\n{out}\nstderr:\n{result.stderr}"

    # The emails, rendered, with working-looking links: three activations, one recovery.
    assert out.count("subject: Activate your account") == 3
    for who in ("alice", "bob", "carol"):
        assert f"to {who}@example.com" in out and f"Hello {who}," in out
    assert len(_ACTIVATE.findall(out)) == 3
    assert out.count("subject: Reset your password") == 1
    assert len(_RECOVER.findall(out)) == 1
    assert re.search(r"enter this code when asked: \d{5}$", out, re.MULTILINE)
    # The narration says what the app did, and that it worked.
    assert "[demo] MAILROOM_DATABASE_URL is not set: starting an embedded throwaway PostgreSQL" in out
    assert "its status is now 'active'" in out
    assert "mailroom_consume_token -> NULL (a token works once)" in out
    assert "[demo] collector and sender exited 0" in out
    assert "[demo] embedded PostgreSQL stopped" in out
    # Every non-narration line on stdout is the sender's (its debug print), nothing else, and
    # each bulk send is printed whole, narration only between them (blocks() checks).
    assert all(line.startswith(("[demo] ", RULE, END_RULE, "bulk send:", "  ")) for line in out.splitlines()), out
    emails, outside = blocks(out)
    assert all(line.startswith("[demo] ") for line in outside), outside
    per_email = [part for block in emails for part in re.split(r"(?m)^(?=\s+\[\d+/\d+\] to )", block)[1:]]
    assert len(per_email) == 4
    for email in per_email:  # each email intact: recipient, data, subject, then its body to the end
        assert re.match(r"\s+\[\d+/\d+\] to \S+\n\s+data: +\{.*\}\n\s+subject: .+\n(\s+\|.*\n)+", email), email
    # The key never shows, and nothing on stderr at the default (warning) log level.
    assert "MAILROOM_SECRET_KEY=" not in out.replace("MAILROOM_SECRET_KEY (not shown)", "")
    assert result.stderr.strip() == "", result.stderr

    postgres = _POSTGRES.search(out)
    queue = _QUEUE.search(out)
    assert postgres and queue
    postmaster, datadir = int(postgres.group(1)), postgres.group(2)
    assert processes_of_demo(queue.group(1), postmaster, datadir) == {}
    assert not Path(datadir).exists()
    print(f"mailroom demo took {elapsed:.1f} s")


def _as_a_background_job() -> None:
    """What a shell does to a background job (`make demo &`): SIGINT starts ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "signum,background",
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGKILL, False)],
    ids=["ctrl-c", "ctrl-c-started-as-a-background-job", "sigterm", "kill-9"],
)
def test_demo_interrupted_midway_stops_everything_it_started(
    signum: int, background: bool, base_env: dict[str, str], tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [script("mailroom"), "demo"],
        env=demo_env(base_env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_a_background_job if background else None,  # noqa: PLW1509 (no threads yet)
    )
    lines: list[str] = []
    first_email = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "subject: Activate your account" in line and not first_email.is_set():
                # Freeze the demo right here (the pipeline and the server keep running), so the
                # interrupt lands mid-way however fast the rest of the demo would have been.
                os.kill(proc.pid, signal.SIGSTOP)
                first_email.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first_email.wait(DEMO_TIMEOUT_S), "".join(lines) + (
            proc.stderr.read() if proc.poll() is not None else ""
        )
        out = "".join(lines)
        postgres, queue = _POSTGRES.search(out), _QUEUE.search(out)
        assert postgres and queue, out
        postmaster, datadir = int(postgres.group(1)), postgres.group(2)
        workdir = re.search(r"MAILROOM_SES_OUTPUT_PATH=(\S+)/output", out)
        assert workdir, out

        running = processes_of_demo(queue.group(1), postmaster, datadir)
        commands = " | ".join(running.values())
        # The check below is only worth something if it sees them while they run.
        assert postmaster in running and "collector" in commands and "sender" in commands, running

        os.kill(proc.pid, signum)  # SIGINT is what Ctrl-C sends
        os.kill(proc.pid, signal.SIGCONT)
        if signum == signal.SIGKILL:
            # No cleanup by the demo itself: the pipeline gets SIGTERM from the kernel (parent
            # death signal) and the embedded server is stopped by the demo's watchdog process.
            assert proc.wait(DEMO_TIMEOUT_S) == -signal.SIGKILL
            deadline = time.monotonic() + 60
            while (
                processes_of_demo(queue.group(1), postmaster, datadir)
                or Path(datadir).exists()
                or Path(workdir.group(1)).exists()
            ) and time.monotonic() < deadline:
                time.sleep(0.1)
        else:
            assert proc.wait(DEMO_TIMEOUT_S) == 130, "".join(lines) + proc.stderr.read()
            reader.join(10)
            assert "interrupted; everything it started is stopped" in proc.stderr.read()
        assert processes_of_demo(queue.group(1), postmaster, datadir) == {}
        assert not Path(datadir).exists()
        assert not Path(workdir.group(1)).exists()  # the sender's journal there holds tokens
    finally:
        if proc.poll() is None:  # a failed assertion above: let the demo clean up, then make sure
            os.kill(proc.pid, signal.SIGTERM)
            os.kill(proc.pid, signal.SIGCONT)
            try:
                proc.wait(DEMO_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_demo_reports_a_database_it_cannot_reach_and_exits_non_zero(base_env: dict[str, str], tmp_path: Path) -> None:
    env = {**base_env, "MAILROOM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2"}
    result = subprocess.run(
        [sys.executable, "-m", "mailroom", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    assert result.returncode == 1
    assert "MAILROOM_DATABASE_URL is set: using that database as it is (127.0.0.1:1/nothing)" in result.stdout
    assert "cannot reach the database" in result.stderr


def test_demo_on_a_configured_database_uses_it_as_is_twice_and_drops_its_queue(
    database_url: str, db: psycopg.Connection, base_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**base_env, "MAILROOM_DATABASE_URL": database_url}
    db.execute("INSERT INTO accounts (email, login) VALUES ('pending@example.com', 'pending')")
    for _ in range(2):  # the demo's accounts do not collide with an earlier run's
        result = subprocess.run(
            [script("mailroom"), "demo"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S
        )
        assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        assert "MAILROOM_DATABASE_URL is set: using that database as it is" in result.stdout
        assert "migrations applied: none needed" in result.stdout
        assert result.stdout.count("subject: Activate your account") == 3
        # A token that was pending before the demo is not the demo's to print.
        assert "pending@example.com" not in result.stdout
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM job_tokens").fetchone()[0] == 0
    active = db.execute("SELECT count(*) FROM accounts WHERE login LIKE 'alice+%' AND status = 'active'").fetchone()[0]
    assert active == 2
