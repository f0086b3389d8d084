"""What every benchmark shares: the bench database, the programs' environment, child
processes (always stopped, their peak memory read from the kernel), machine facts.

The database server is the one the tests use: MAILROOM_BENCH_DATABASE_URL if set (a role
that may CREATE DATABASE), else MAILROOM_TEST_DATABASE_URL, else the local server at
postgresql://postgres@127.0.0.1:5432/postgres. Each measurement gets a fresh database
`mailroom_bench_*`, migrated with `mailroom.migrate`, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psycopg
from psycopg.conninfo import make_conninfo

from mailroom import migrate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
# A fixed, public key: benchmarks sign nothing that matters.
KEY_HEX = "b3" * 32
QUEUE = "mailroom"
CHANNEL = "token_insert"


def server_url() -> str:
    return (
        os.environ.get("MAILROOM_BENCH_DATABASE_URL") or os.environ.get("MAILROOM_TEST_DATABASE_URL") or DEFAULT_SERVER
    )


def script(name: str) -> str:
    """An installed console script of this venv (collector, sender)."""
    path = BIN / name
    if not path.exists():
        raise SystemExit(f"bench: {path} is missing; run `make bench` (it installs the package into .venv)")
    return str(path)


@contextlib.contextmanager
def bench_database(label: str, *, register_queue: bool = True) -> Iterator[str]:
    """A freshly migrated database (conninfo) with the queue registered; dropped afterwards."""
    admin = server_url()
    name = f"mailroom_bench_{label}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin, dbname=name)
    try:
        migrate.apply(url)
        # The benchmarks' own connections (and pgbench, the app) use unqualified names, as an
        # app whose role has the schema on its search_path does; the programs set their own.
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET search_path = {migrate.DEFAULT_SCHEMA}, public')
        if register_queue:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT mailroom_register_queue(%s, %s)", (QUEUE, CHANNEL))
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_accounts(url: str, count: int, prefix: str = "seed") -> float:
    """Commit `count` new accounts (their activation tokens are queued by the triggers) in
    one statement; then VACUUM ANALYZE, as autovacuum would have done to a backlog that
    built up over time. Returns the seconds it took."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO accounts (email, login) "
            "SELECT %s || g || '@example.com', %s || g FROM generate_series(1, %s) g",
            (prefix, prefix, count),
        )
        conn.execute("VACUUM ANALYZE accounts")
        conn.execute("VACUUM ANALYZE tokens")
        conn.execute("VACUUM ANALYZE job_tokens")
    return time.monotonic() - started


def program_env(**overrides: str | float) -> dict[str, str]:
    """The environment of a child program: ours without any MAILROOM_*/AWS_* variable
    (nothing leaks in from the shell or a .env), plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "AWS_"))}
    env["MAILROOM_SECRET_KEY"] = KEY_HEX
    env["MAILROOM_LOG_LEVEL"] = "warning"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class Children:
    """Every process a benchmark starts; whatever is still running at the end is stopped
    (SIGTERM, then SIGKILL after 5 s), so no benchmark leaves anything behind."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], *, env: Mapping[str, str], cwd: Path | None = None, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, env=dict(env), cwd=cwd or ROOT, **kwargs)
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            if proc.returncode is not None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_with_rusage(proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """Wait for `proc` (at most `timeout` s, then SIGKILL) and return (exit status, CPU
    seconds it used, from wait4). For memory see RssSampler."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise TimeoutError(f"{proc.args[0]} still running after {timeout:.0f} s (killed)")
        time.sleep(0.005)


def stop_with_rusage(proc: subprocess.Popen, timeout: float = 15.0) -> tuple[int, float]:
    """SIGTERM `proc` and return (exit status, CPU seconds)."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return wait_with_rusage(proc, timeout)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


@dataclass
class Figure:
    """One measured number, with what it is compared to and the command that reproduces it."""

    benchmark: str
    name: str
    value: float | None
    unit: str
    command: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    details: dict[str, object] = field(default_factory=dict)

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit in ("MB",):
            return f"{self.value:,.1f} {self.unit}"
        if abs(self.value) >= 100:
            return f"{self.value:,.0f} {self.unit}"
        return f"{self.value:,.2f} {self.unit}"


def memory_figure(subject: str, peak_mb: float, rss_curve: object, command: str) -> Figure:
    """Benchmark 5: a program's peak RSS over a run, against the 60 MB target."""
    return Figure(
        "5 memory",
        subject,
        peak_mb,
        "MB",
        command,
        target="<= 60 MB, flat",
        met=peak_mb <= 60,
        note=f"peak = VmHWM; VmRSS over the run: {rss_curve}",
    )


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    try:
        with psycopg.connect(server_url(), autocommit=True, connect_timeout=5) as conn:
            pg = conn.execute("SELECT version()").fetchone()[0]
            pg_settings = ", ".join(
                f"{name}={value}"
                for name, value in conn.execute(
                    "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
                    (["fsync", "synchronous_commit", "wal_sync_method", "shared_buffers", "max_connections"],),
                )
            )
    except psycopg.Error as exc:
        pg, pg_settings = f"unreachable ({str(exc).strip().splitlines()[0]})", ""
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg,
        "postgresql_settings": pg_settings,
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


class RssSampler:
    """Samples a child's memory from /proc/<pid>/status every `every` s until it exits.

    The peak is VmHWM, the kernel's high-water mark of the resident set of the program's
    own address space, so a short spike between two samples still counts; only growth in
    the last `every` s before exit could be missed. (wait4's ru_maxrss is no use here:
    Linux carries the parent's resident set at fork/exec time into the child's ru_maxrss,
    so it reports the harness's size, not the program's.) VmRSS over time shows whether
    memory grows with the work done or levels off.
    """

    def __init__(self, pid: int, every: float = 0.02) -> None:
        import threading

        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []  # (seconds since start, VmRSS MB)
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        path = Path(f"/proc/{self.pid}/status")
        while not self._stop.is_set():
            try:
                fields = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
                if fields.get("State", "").strip().startswith("Z"):  # exited, not reaped yet
                    return
                rss = int(fields["VmRSS"].split()[0]) * 1024 / 1e6
                self.peak_mb = max(self.peak_mb, int(fields["VmHWM"].split()[0]) * 1024 / 1e6)
                self.samples.append((time.monotonic() - started, rss))
            except (OSError, KeyError, ValueError, IndexError):
                return  # gone
            self._stop.wait(self.every)

    def stop(self) -> str:
        """Stop sampling, and describe the curve: VmRSS at 0, 25, 50, 75 and 100 % of the run."""
        self._stop.set()
        self._thread.join()
        if not self.samples:
            return "no samples"
        n = len(self.samples)
        points = [self.samples[min(n - 1, (n - 1) * q // 4)] for q in range(5)]
        return ", ".join(f"{mb:.1f} MB at {at:.1f} s" for at, mb in points)
