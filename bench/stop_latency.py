"""How long the collector takes to exit after SIGTERM while it is blocked writing into a
full pipe (a reader that keeps the pipe open and takes nothing), per batch limit; and
that every token is still queued afterwards. Usage (from the repository root):

    .venv/bin/python -m bench.stop_latency [BATCH_LIMIT ...]   (default: 10 200 9000)

Not part of `make bench`'s report: a figure to quote with its command. The collector
gives the reader collector.output.STOP_GRACE_S to make room after the signal, so expect
that plus the rollback and the interpreter's exit.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import subprocess
import sys
import time

import psycopg

from bench.common import bench_database, program_env, script
from collector.connection import backlog


def _queued(fd: int) -> int:
    n = array.array("i", [0])
    fcntl.ioctl(fd, 0x541B, n, True)  # FIONREAD
    return n[0]


def measure(limit: int) -> tuple[float, int, int]:
    """(seconds from SIGTERM to exit, exit status, tokens still queued of those seeded)."""
    count = max(2000, limit)
    with bench_database("stop") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO accounts (email, login) SELECT 's' || i || '@example.com', "
                "i || '-' || repeat('é', 120) || repeat('漢', 120) FROM generate_series(1, %s) i",
                (count,),
            )
        r, w = os.pipe()
        capacity = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
        env = program_env(MAILROOM_DATABASE_URL=url, MAILROOM_BATCH_LIMIT=limit)
        proc = subprocess.Popen([script("collector")], env=env, stdin=subprocess.DEVNULL, stdout=w)
        os.close(w)
        try:
            deadline = time.monotonic() + 60
            while _queued(r) < capacity and time.monotonic() < deadline:
                time.sleep(0.01)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=60)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(r)
        with psycopg.connect(url) as conn:
            left = backlog(conn, "mailroom")
    return took, status, left


def main(argv: list[str]) -> int:
    limits = [int(a) for a in argv] or [10, 200, 9000]
    print("| MAILROOM_BATCH_LIMIT | SIGTERM to exit | exit status | tokens still queued |")
    print("|---|---|---|---|")
    for limit in limits:
        took, status, left = measure(limit)
        print(f"| {limit} | {took:.2f} s | {status} | {left} of {max(2000, limit)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
