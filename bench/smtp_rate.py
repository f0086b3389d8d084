"""Benchmark 6: sender throughput with MAILROOM_PROVIDER=smtp against a local aiosmtpd sink.

N valid records are written to a file as batch lines; the real `sender` reads it on stdin and
sends each email (rendered locally, one SMTP transaction per recipient, RSET between messages)
to bench/smtp_sink.py on loopback, with MAILROOM_CONNECTIONS connections, at
MAILROOM_SES_MAX_SEND_RATE=5000 (so the rate limit is not what is measured). The rate is
measured on the sink's side, from the arrival time of each message, between 10 % and 90 % of
the total (start-up and tail left out). The sink must have received exactly N distinct
recipients. On a 2-core machine the sender and the sink share the CPU: the figure is a floor
for a real relay, which runs elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Children, Figure, program_env, script, stop_with_rusage, wait_with_rusage
from bench.sender_rate import sustained_rate, write_input

RATE = 5000


def run(records: int, connections: int) -> list[Figure]:
    command = f".venv/bin/python -m bench smtp --records {records} --connections {connections}"
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-smtp-") as tmp, Children() as kids:
        tmp_path = Path(tmp)
        lines = tmp_path / "input.lines"
        write_input(lines, records, 50)
        sink = kids.start(
            [sys.executable, "-m", "bench.smtp_sink", "--port", "0"],
            env=program_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        port = int(sink.stdout.readline().strip().rsplit(":", 1)[1])
        env = program_env(
            MAILROOM_PROVIDER="smtp",
            MAILROOM_SMTP_HOST="127.0.0.1",
            MAILROOM_SMTP_PORT=port,
            MAILROOM_SMTP_TLS="none",
            MAILROOM_SOURCE="noreply@example.com",
            MAILROOM_SES_MAX_SEND_RATE=RATE,
            MAILROOM_CONNECTIONS=connections,
            MAILROOM_SES_OUTPUT_PATH=tmp_path / "out",
        )
        stderr_path = tmp_path / "sender.stderr"
        with lines.open("rb") as stdin, stderr_path.open("wb") as stderr:
            started = time.monotonic()
            sender = kids.start([script("sender")], env=env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr)
            status, cpu_s = wait_with_rusage(sender, records / 20 + 120)
            wall = time.monotonic() - started
        if status != 0:
            raise RuntimeError(
                f"sender exited with status {status}:\n{stderr_path.read_text(errors='replace')[-1500:]}"
            )
        sink.send_signal(15)
        stats = json.loads(sink.stdout.readline())
        _, sink_cpu_s = stop_with_rusage(sink)
    rate = sustained_rate([[t, 1] for t in stats["arrivals"]], records)
    ok = stats["messages"] == records and stats["distinct"] == records
    check = f"sink received {stats['messages']:,} messages ({stats['distinct']:,} distinct recipients)" + (
        "" if ok else f" -- MISMATCH, expected {records:,}"
    )
    return [
        Figure(
            "6 smtp",
            f"{records:,} emails over SMTP, MAILROOM_CONNECTIONS={connections}: sustained",
            rate if ok else None,
            "emails/s",
            command,
            target="(reported)",
            note=f"10-90 % of the total; whole run {records / wall:,.0f} emails/s in {wall:.1f} s (start-up "
            f"included); CPU used: sender {cpu_s:.1f} s ({cpu_s / wall:.0%} of one core), sink {sink_cpu_s:.1f} s; "
            + check,
            details={"sender_cpu_s": round(cpu_s, 2), "sink_cpu_s": round(sink_cpu_s, 2), "wall_s": round(wall, 2)},
        )
    ]
