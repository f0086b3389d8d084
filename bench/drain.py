"""Benchmark 1 (and the collector half of 5): draining a committed backlog.

N accounts are committed first in one statement (their activation tokens are queued by
the triggers), then `collector --drain` runs with stdout redirected to a file and exits
when the queue is empty. Figures: tokens/s from process start to exit, and from process
start to the last line (the file is polled every 2 ms for growth); the output is decoded
and must hold exactly N valid records for N distinct accounts. The collector's peak RSS
is its VmHWM (bench.common.RssSampler).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import psycopg

from bench.common import (
    Children,
    Figure,
    RssSampler,
    bench_database,
    memory_figure,
    program_env,
    script,
    seed_accounts,
    wait_with_rusage,
)
from mailroom.wire import decode_line

TIMEOUT_S = 600.0


def _watch_growth(path: Path, stop: threading.Event, seen: dict[str, float]) -> None:
    """Record when the file first grows and when it last grew."""
    size = 0
    while not stop.is_set():
        now = time.monotonic()
        try:
            current = path.stat().st_size
        except FileNotFoundError:
            current = 0
        if current != size:
            size = current
            seen.setdefault("first", now)
            seen["last"] = now
        time.sleep(0.002)


def verify(path: Path, expected: int) -> tuple[int, int, int, int]:
    """(lines, records, distinct emails, rejected) of the collector's output."""
    lines = records = rejected = 0
    emails: set[str] = set()
    with path.open("rb") as f:
        for line in f:
            lines += 1
            good, bad = decode_line(line.rstrip(b"\n"))
            records += len(good)
            rejected += len(bad)
            emails.update(r.email for r in good)
    return lines, records, len(emails), rejected


def suppress_others(url: str, count: int) -> None:
    """Put `count` addresses on the suppression list, none of them a seeded account's, so
    that every drained token is probed and none is found."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO suppressions (address_key, address, reason) "
            "SELECT 'listed' || i || '@bench.example', 'listed' || i || '@bench.example', 'manual' "
            "FROM generate_series(1, %s) i",
            (count,),
        )
        conn.execute("VACUUM ANALYZE suppressions")


def run(tokens: int, batch_limit: int, suppressed: int = 0, cooldown: str | None = None) -> list[Figure]:
    command = f".venv/bin/python -m bench drain --tokens {tokens} --batch-limit {batch_limit}"
    if suppressed:
        command += f" --suppressed {suppressed}"
    if cooldown is not None:
        command += f" --cooldown {cooldown}"
    label = f"drain{tokens}_l{batch_limit}"
    with bench_database(label) as url, tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp, Children() as kids:
        seed_s = seed_accounts(url, tokens)
        if suppressed:
            suppress_others(url, suppressed)
        out = Path(tmp) / "collector.out"
        env = program_env(MAILROOM_DATABASE_URL=url, MAILROOM_BATCH_LIMIT=batch_limit)
        if cooldown is not None:
            env["MAILROOM_RECOVERY_COOLDOWN"] = cooldown
        stop, seen = threading.Event(), {}
        watcher = threading.Thread(target=_watch_growth, args=(out, stop, seen), daemon=True)
        with out.open("wb") as sink:
            watcher.start()
            started = time.monotonic()
            proc = kids.start([script("collector"), "--drain"], env=env, stdout=sink)
            rss = RssSampler(proc.pid)
            status, cpu_s = wait_with_rusage(proc, TIMEOUT_S)
            ended = time.monotonic()
            rss_curve = rss.stop()
        time.sleep(0.01)
        stop.set()
        watcher.join()
        if status != 0:
            raise RuntimeError(f"collector --drain exited with status {status}")
        lines, records, distinct, rejected = verify(out, tokens)
    wall = ended - started
    to_last = seen.get("last", ended) - started
    first_to_last = seen.get("last", ended) - seen.get("first", started)
    ok = records == tokens and distinct == tokens and rejected == 0
    check = (
        f"output checked: {lines:,} lines, {records:,} records, {distinct:,} distinct accounts, "
        f"{rejected} rejected" + ("" if ok else f" -- MISMATCH, expected {tokens:,}")
    )
    details = {
        "seed_s": round(seed_s, 2),
        "wall_s": round(wall, 3),
        "start_to_last_line_s": round(to_last, 3),
        "first_to_last_line_s": round(first_to_last, 3),
        "collector_cpu_s": round(cpu_s, 2),
        "collector_cpu_share_of_wall": f"{cpu_s / wall:.0%}",
        "lines": lines,
        "records": records,
        "distinct": distinct,
        "rejected": rejected,
    }
    suppressed_note = f", {suppressed:,} on the suppression list" if suppressed else ""
    if cooldown is not None:
        suppressed_note += f", MAILROOM_RECOVERY_COOLDOWN={cooldown}"
    figures = [
        Figure(
            "1 drain",
            f"{tokens:,} tokens, BATCH_LIMIT={batch_limit}{suppressed_note}: start to exit",
            tokens / wall,
            "tokens/s",
            command,
            target=">= 20,000 tokens/s" if batch_limit == 50 else "(reported)",
            met=(tokens / wall >= 20000 and ok) if batch_limit == 50 else None,
            note=f"{wall:.2f} s including interpreter start-up; " + check,
            details=details,
        ),
        Figure(
            "1 drain",
            f"{tokens:,} tokens, BATCH_LIMIT={batch_limit}: start to last line",
            tokens / to_last,
            "tokens/s",
            command,
            note=f"{to_last:.2f} s; first to last line {first_to_last:.2f} s "
            f"({tokens / first_to_last if first_to_last > 0 else float('nan'):,.0f} tokens/s)",
        ),
        memory_figure(
            f"collector peak RSS, --drain of {tokens:,}, BATCH_LIMIT={batch_limit}", rss.peak_mb, rss_curve, command
        ),
    ]
    if not ok:
        figures[0].met = False
    return figures
