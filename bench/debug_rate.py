"""Benchmark 7: debug mode prints as fast as it reads (it is not paced: there is no provider).

N valid records are written to a file as batch lines; `sender` in debug mode reads it on
stdin and prints every email (subject and body rendered) to a file. The figure is the
sending time: from the sender's "ready" log line (preflight done, reading starts) to its
"done" line, both stamped by the sender itself in milliseconds. Before debug mode was
unpaced, it sent at most 14 emails/s: 2,000 records took 143 s.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from bench.common import Children, Figure, program_env, script, wait_with_rusage
from bench.sender_rate import write_input


def _stamp(stderr: str, needle: str) -> dt.datetime:
    for line in stderr.splitlines():
        if needle in line:
            return dt.datetime.fromisoformat(line.split(" ", 1)[0])
    raise RuntimeError(f"the sender never logged {needle!r}:\n{stderr}")


def run(records: int) -> list[Figure]:
    command = f".venv/bin/python -m bench debug --records {records}"
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp, Children() as kids:
        tmp_path = Path(tmp)
        lines = tmp_path / "input.lines"
        write_input(lines, records, 10)
        env = program_env(MAILROOM_DEBUG="true", MAILROOM_LOG_LEVEL="info", MAILROOM_SES_OUTPUT_PATH=tmp_path / "out")
        stdout_path, stderr_path = tmp_path / "emails.txt", tmp_path / "sender.stderr"
        with lines.open("rb") as stdin, stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            sender = kids.start([script("sender")], env=env, stdin=stdin, stdout=stdout, stderr=stderr)
            status, _ = wait_with_rusage(sender, 600)
        log = stderr_path.read_text()
        if status != 0:
            raise RuntimeError(f"sender exited {status}:\n{log}")
        printed = stdout_path.read_text().count("        subject: ")
        if printed != records:
            raise RuntimeError(f"debug mode printed {printed} emails of {records}")
        seconds = (_stamp(log, "done:") - _stamp(log, "ready:")).total_seconds()
    return [
        Figure(
            "7 debug",
            f"debug mode, {records:,} records printed (sending time)",
            seconds,
            "s",
            command,
            target="well under 1 s for 2,000 records",
            met=seconds < 1.0 if records <= 2000 else None,
            details={"emails_per_second": round(records / seconds) if seconds else None},
        )
    ]
