"""Running the real `collector` console script in tests: start it, read its stdout with a
deadline (a reader thread, never an unbounded blocking read), watch its stderr log, and
always stop it.

Wait for READY before making tokens that the test expects from a notification: the
collector logs it once its start drain is done, so nothing the test does afterwards is
read by that drain."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg

from collector import connection
from mailroom.wire import Record, decode_line, lines

COLLECTOR_APPLICATION_NAME = "mailroom-collector"
READY = "ready: start drain done"
_READ = re.compile(r"read (\d+) queued tokens? \(([^)]*)\)")


class CollectorProcess:
    """One `collector` subprocess; stdout is read by a thread into a queue of logical lines."""

    def __init__(
        self,
        executable: str,
        env: Mapping[str, str],
        log_path: Path,
        *args: str,
        read_stdout: bool = True,
        cwd: Path | None = None,
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            [executable, *args],
            env=dict(env),
            cwd=cwd or log_path.parent,  # the test's folder: a developer's ./.env stays out
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self._reader: threading.Thread | None = None
        if read_stdout:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in lines(iter(self.proc.stdout.readline, b"")):
            self.lines.put(line)

    def close_stdout(self) -> None:
        """Close our end of the pipe, as a sender that went away would."""
        assert self.proc.stdout is not None and self._reader is None
        self.proc.stdout.close()

    def next_line(self, timeout: float) -> bytes | None:
        try:
            line = self.lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        return line

    def read_lines(self, until: float) -> Iterator[bytes]:
        while (line := self.next_line(until - time.monotonic())) is not None:
            yield line

    def records(self, count: int, timeout: float) -> list[Record]:
        """Records from stdout until `count` have arrived or `timeout` seconds passed."""
        deadline = time.monotonic() + timeout
        out: list[Record] = []
        while len(out) < count:
            line = self.next_line(deadline - time.monotonic())
            if line is None:
                break
            records, rejected = decode_line(line)
            assert not rejected, rejected
            out.extend(records)
        return out

    def lines_after_stop(self) -> list[bytes]:
        """Stop it (SIGTERM) and return every line it wrote that was not read yet: all of
        them, since the reader reads to end of file. Proves "nothing more" without a window."""
        assert self._reader is not None
        self.signal(signal.SIGTERM)
        assert self.wait(timeout=10) == 0, self.log()
        self._reader.join(timeout=10)
        assert not self._reader.is_alive()
        rest: list[bytes] = []
        while not self.lines.empty():
            line = self.lines.get_nowait()
            assert isinstance(line, bytes), f"collector wrote an unreadable line: {line}"
            rest.append(line)
        return rest

    def quiet_for(self, seconds: float) -> list[bytes]:
        """Lines written within the next `seconds` (expected: none)."""
        return list(self.read_lines(time.monotonic() + seconds))

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def reads(self, count: int, timeout: float = 15.0) -> list[tuple[int, str]]:
        """(tokens, reason) of each read that found tokens, as logged once the read is over
        (after its lines were taken and committed): which path read them. Waits until
        there are at least `count`."""
        deadline = time.monotonic() + timeout
        while True:
            found = [(int(n), why) for n, why in _READ.findall(self.log())]
            if len(found) >= count or time.monotonic() >= deadline or self.proc.poll() is not None:
                return found
            time.sleep(0.02)

    def wait_until_ready(self, timeout: float = 15.0, count: int = 1) -> str:
        """Wait until the collector is active and its start drain (the `count`th) is done."""
        return self.wait_for_log(READY, timeout=timeout, count=count)

    def wait_for_log(self, text: str, timeout: float = 15.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if log.count(text) >= count:
                return log
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"collector did not log {text!r} (x{count}) within {timeout} s "
            f"(exit status {self.proc.poll()}); its log:\n{self.log()}"
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure the process is gone (SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout and self._reader is None:
            self.proc.stdout.close()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._log.close()


def collector_env(base_env: Mapping[str, str], database_url: str, key_hex: str, **overrides: str) -> dict[str, str]:
    env = dict(base_env)
    env.update(
        {
            "MAILROOM_DATABASE_URL": database_url,
            "MAILROOM_SECRET_KEY": key_hex,
            "MAILROOM_BATCH_TIMEOUT": "200",
            "MAILROOM_BATCH_LIMIT": "10",
            "MAILROOM_HEALTHCHECK_INTERVAL": "5000",
            "MAILROOM_LOG_LEVEL": "info",
        }
    )
    env.update(overrides)
    return env


def add_accounts(db: psycopg.Connection, prefix: str, count: int) -> list[str]:
    """`count` provisioned accounts (each gets an activation token) in one statement."""
    db.execute(
        "INSERT INTO accounts (email, login) SELECT %s || i || '@example.com', %s || i FROM generate_series(1, %s) i",
        (prefix, prefix, count),
    )
    return [f"{prefix}{i}" for i in range(1, count + 1)]


def terminate_collector_backends(db: psycopg.Connection) -> int:
    rows = db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND datname = current_database()",
        (COLLECTOR_APPLICATION_NAME,),
    ).fetchall()
    return len(rows)


def backlog(db: psycopg.Connection, queue_name: str = "mailroom") -> int:
    return connection.backlog(db, queue_name)


def wait_for_empty_backlog(db: psycopg.Connection, queue_name: str = "mailroom", timeout: float = 10.0) -> None:
    """The collector commits a chunk just after writing its line: wait for that commit."""
    deadline = time.monotonic() + timeout
    while (left := backlog(db, queue_name)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert left == 0, f"{left} tokens still queued after {timeout} s"
