"""Benchmark 4 (and the sender half of 5): sender throughput against a fake SES.

N valid records (signed like the collector signs them) are written to a file as batch
lines; `sender` reads that file on stdin and sends through boto3 to bench/fake_ses.py on
a loopback port (each SendBulkTemplatedEmail answered after 50 ms), at
MAILROOM_SES_MAX_SEND_RATE=5000. The rate is measured on the server side, from the
destinations it received over time: between 10 % and 90 % of the total, which leaves out
the start-up and the tail. The server must have received exactly N distinct addresses.
The sender's peak RSS is its VmHWM (bench.common.RssSampler).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import (
    KEY_HEX,
    Children,
    Figure,
    RssSampler,
    memory_figure,
    program_env,
    script,
    stop_with_rusage,
    wait_with_rusage,
)
from bench.fake_ses import start_child
from mailroom.actions import ACTIVATION
from mailroom.signing import sign
from mailroom.wire import Record, encode_line

RATE = 5000
DELAY_S = 0.05


def write_input(path: Path, records: int, per_line: int) -> None:
    key = bytes.fromhex(KEY_HEX)
    with path.open("wb") as f:
        batch: list[Record] = []
        for i in range(records):
            code = f"{secrets.randbelow(100000):05d}"
            batch.append(
                Record(
                    ACTIVATION,
                    f"s{i}@example.com",
                    f"s{i}",
                    sign(key, ACTIVATION, secrets.token_bytes(32), code),
                    code,
                )
            )
            if len(batch) == per_line:
                f.write(encode_line(batch))
                batch = []
        if batch:
            f.write(encode_line(batch))


def _stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_bench/stats", timeout=10) as answer:
        return json.load(answer)


def sustained_rate(calls: list[list[float]], total: int) -> float:
    """Destinations per second between 10 % and 90 % of `total` received."""
    calls = sorted(calls)
    cumulative, t10, n10, t90, n90 = 0, None, 0, None, 0
    for at, n in calls:
        cumulative += n
        if t10 is None and cumulative >= 0.1 * total:
            t10, n10 = at, cumulative
        if cumulative >= 0.9 * total:
            t90, n90 = at, cumulative
            break
    if t10 is None or t90 is None or t90 <= t10:
        return float("nan")
    return (n90 - n10) / (t90 - t10)


def run(records: int, concurrency: int, per_line: int = 50) -> list[Figure]:
    command = f".venv/bin/python -m bench sender --records {records} --concurrency {concurrency}"
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp, Children() as kids:
        tmp_path = Path(tmp)
        lines = tmp_path / "input.lines"
        write_input(lines, records, per_line)
        fake = start_child(kids, DELAY_S, RATE)
        stderr_path = tmp_path / "sender.stderr"
        env = program_env(
            **fake.env,
            MAILROOM_SES_MAX_SEND_RATE=RATE,
            MAILROOM_SES_CONCURRENCY=concurrency,
            MAILROOM_SES_OUTPUT_PATH=tmp_path / "out",
        )
        with lines.open("rb") as stdin, stderr_path.open("wb") as stderr:
            started = time.monotonic()
            sender = kids.start([script("sender")], env=env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr)
            rss = RssSampler(sender.pid)
            status, cpu_s = wait_with_rusage(sender, records / 200 + 120)
            wall = time.monotonic() - started
            rss_curve = rss.stop()
        stats = _stats(fake.port)
        _, fake_cpu_s = stop_with_rusage(fake.process)
        if status != 0:
            tail = stderr_path.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"sender exited with status {status}:\n{tail}")
    rate = sustained_rate(stats["calls"], records)
    ok = stats["destinations"] == records and stats["distinct"] == records
    check = (
        f"fake SES received {stats['destinations']:,} destinations ({stats['distinct']:,} distinct) "
        f"in {len(stats['calls']):,} calls" + ("" if ok else f" -- MISMATCH, expected {records:,}")
    )
    if stats["other_actions"]:
        check += f"; other actions: {stats['other_actions']}"
    return [
        Figure(
            "4 sender",
            f"{records:,} emails, MAILROOM_SES_CONCURRENCY={concurrency}: sustained",
            rate,
            "emails/s",
            command,
            target=">= 4,000 emails/s",
            met=rate >= 4000 and ok,
            note=f"10-90 % of the total; whole run {records / wall:,.0f} emails/s in {wall:.1f} s "
            f"(start-up included); CPU used: sender {cpu_s:.1f} s ({cpu_s / wall:.0%} of one core), fake SES "
            f"{fake_cpu_s:.1f} s; "
            f"ceiling with {concurrency} calls of 50 in flight and 50 ms answers: "
            f"{min(concurrency * 50 / DELAY_S, RATE):,.0f} emails/s; " + check,
            details={"sender_cpu_s": round(cpu_s, 2), "wall_s": round(wall, 2), "calls": len(stats["calls"])},
        ),
        memory_figure(
            f"sender peak RSS, {records:,} emails, concurrency {concurrency}", rss.peak_mb, rss_curve, command
        ),
    ]
