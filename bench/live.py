"""Benchmark 2: live throughput and commit-to-line latency of `collector | sender`.

Writer threads (one connection each, autocommit: one account per transaction) insert as
fast as they can, or at a fixed total rate, for a while. The commit time of each account
is taken right after its INSERT returns. The collector's stdout goes through
bench/relay.py, a process of its own that timestamps what it reads and forwards it to the
sender's stdin (debug mode: it prints each email to a file). Latency per token = arrival of
its line at the relay - its commit. Pipeline throughput = emails printed by the sender /
(last printed - first commit).

The harness (writers, watcher) and the relay run on the same machine: on a small machine
they are themselves part of the load, which the figures include.
"""

from __future__ import annotations

import bisect
import io
import re
import subprocess
import sys
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
    percentile,
    program_env,
    script,
    stop_with_rusage,
    wait_with_rusage,
)
from mailroom.wire import split_fields

_SENT = re.compile(rb"^\s+\[\d+/\d+\] to (\S+)$", re.MULTILINE)
INSERT = "INSERT INTO accounts (email, login) VALUES (%s, %s)"


def relay_arrivals(log: Path) -> tuple[dict[str, float], int]:
    """From bench/relay.py's log: when each email's line reached the relay, and how many lines."""
    data = log.read_bytes()
    stream, ends, times = bytearray(), [], []
    pos = 0
    while pos < len(data):
        eol = data.index(b"\n", pos)
        stamp, size = data[pos:eol].split()
        chunk = data[eol + 1 : eol + 1 + int(size)]
        pos = eol + 1 + int(size)
        stream += chunk
        ends.append(len(stream))
        times.append(float(stamp))
    arrival: dict[str, float] = {}
    offset, lines = 0, 0
    for line in io.BytesIO(bytes(stream)):
        offset += len(line)
        if not line.endswith(b"\n"):
            break
        lines += 1
        at = times[bisect.bisect_left(ends, offset)]
        fields = split_fields(line.rstrip(b"\n"))
        for i in range(1, len(fields), 5):
            arrival.setdefault(fields[i].decode(), at)
    return arrival, lines


class SenderWatcher(threading.Thread):
    """Counts the emails the sender has printed (debug mode), and when the last one appeared."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="sender-watch", daemon=True)
        self.path = path
        self.sent = 0
        self.last = 0.0
        self.samples: list[tuple[float, int]] = []  # (time, emails printed so far)
        self.printed: dict[str, float] = {}  # email -> when the sender's line was seen (5 ms polls)
        self.done = threading.Event()

    def sent_at(self, moment: float) -> int:
        """Emails printed by `moment` (the last sample at or before it)."""
        count = 0
        for at, sent in self.samples:
            if at > moment:
                break
            count = sent
        return count

    def run(self) -> None:
        offset, pending = 0, b""
        while not self.done.is_set():
            try:
                with self.path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            if data:
                offset += len(data)
                pending += data
                cut = pending.rfind(b"\n") + 1
                emails = _SENT.findall(pending[:cut])
                pending = pending[cut:]
                if emails:
                    now = time.monotonic()
                    for email in emails:
                        self.printed.setdefault(email.decode(), now)
                    self.sent += len(emails)
                    self.last = now
                    self.samples.append((self.last, self.sent))
            time.sleep(0.005)


def _writer(
    url: str,
    prefix: str,
    stop: threading.Event,
    commits: dict[str, float],
    interval: float | None,
    start_at: float,
    errors: list[str],
) -> None:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            k = 0
            while not stop.is_set():
                if interval is not None:
                    due = start_at + k * interval
                    delay = due - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        break
                email = f"{prefix}-{k}@example.com"
                conn.execute(INSERT, (email, f"{prefix}-{k}"), prepare=True)
                commits[email] = time.monotonic()
                k += 1
    except Exception as exc:  # reported, never swallowed
        errors.append(f"{prefix}: {exc}")


def run(
    writers: int, seconds: float, rate: float | None, batch_limit: int, batch_timeout_ms: int, label: str
) -> list[Figure]:
    command = (
        f".venv/bin/python -m bench live --writers {writers} --seconds {seconds:g}"
        + (f" --rate {rate:g}" if rate else "")
        + f" --batch-limit {batch_limit} --batch-timeout {batch_timeout_ms}"
    )
    with (
        bench_database("live") as url,
        tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp,
        Children() as kids,
    ):
        sender_out = Path(tmp) / "sender.out"
        collector = kids.start(
            [script("collector")],
            stdout=subprocess.PIPE,
            env=program_env(
                MAILROOM_DATABASE_URL=url, MAILROOM_BATCH_LIMIT=batch_limit, MAILROOM_BATCH_TIMEOUT=batch_timeout_ms
            ),
        )
        with sender_out.open("wb") as sink:
            sender = kids.start(
                [script("sender")],
                stdin=subprocess.PIPE,
                stdout=sink,
                env=program_env(
                    MAILROOM_DEBUG="true",
                    MAILROOM_SES_MAX_SEND_RATE=1000000,
                    MAILROOM_SES_OUTPUT_PATH=Path(tmp) / "sender",
                ),
            )
        relay_log = Path(tmp) / "relay.log"
        relay = kids.start(
            [sys.executable, "-m", "bench.relay", str(relay_log)],
            stdin=collector.stdout,
            stdout=sender.stdin,
            env=program_env(),
        )
        collector.stdout.close()  # the relay holds the pipes now
        sender.stdin.close()
        collector_rss, sender_rss = RssSampler(collector.pid, 0.1), RssSampler(sender.pid, 0.1)
        watcher = SenderWatcher(sender_out)
        watcher.start()

        # Warm-up: one account through the whole pipeline proves the collector is LISTENing.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(INSERT, ("warmup@example.com", "warmup"))
        deadline = time.monotonic() + batch_timeout_ms / 1000 + 30
        while "warmup@example.com" not in watcher.printed:
            if time.monotonic() > deadline or collector.poll() is not None or sender.poll() is not None:
                raise RuntimeError("the warm-up token did not come through collector | sender")
            time.sleep(0.01)
        base_sent = watcher.sent

        commits: dict[str, float] = {}
        errors: list[str] = []
        stop = threading.Event()
        interval = writers / rate if rate else None
        start_at = time.monotonic()
        threads = [
            threading.Thread(
                target=_writer,
                daemon=True,
                args=(
                    url,
                    f"w{i}",
                    stop,
                    commits,
                    interval,
                    start_at + (i * interval / writers if interval else 0),
                    errors,
                ),
            )
            for i in range(writers)
        ]
        for t in threads:
            t.start()
        stop.wait(seconds)
        stop.set()
        for t in threads:
            t.join(30)
        writers_done = time.monotonic()
        committed = len(commits)
        deadline = time.monotonic() + batch_timeout_ms / 1000 + 120
        while watcher.sent - base_sent < committed and time.monotonic() < deadline:
            if collector.poll() is not None or sender.poll() is not None:
                break
            time.sleep(0.02)
        _, collector_cpu = stop_with_rusage(collector)
        relay.wait(30)
        sender_status, sender_cpu = wait_with_rusage(sender, 60)
        collector_rss.stop()
        sender_rss.stop()
        watcher.done.set()
        watcher.join()
        arrival, relay_lines = relay_arrivals(relay_log)

    if errors:
        raise RuntimeError("writer failed: " + "; ".join(errors))
    latencies = sorted(arrival[e] - t for e, t in commits.items() if e in arrival)
    end_to_end = sorted(watcher.printed[e] - t for e, t in commits.items() if e in watcher.printed)
    e50, e99, emax = (percentile(end_to_end, p) * 1000 for p in (50, 99, 100))
    missing = sum(1 for e in commits if e not in arrival)
    delivered = watcher.sent - base_sent
    # Sustained: what the sender printed between 10 % and 90 % of the writers' window (the
    # tail after the writers stop waits for BATCH_TIMEOUT by design and is reported apart).
    window = writers_done - start_at
    early, late = start_at + 0.1 * window, start_at + 0.9 * window
    sustained = (watcher.sent_at(late) - watcher.sent_at(early)) / (late - early)
    p50, p99, worst = (percentile(latencies, p) * 1000 for p in (50, 99, 100))
    details = {
        "committed": committed,
        "delivered": delivered,
        "missing_on_collector_stdout": missing,
        "writer_commits_per_s": round(committed / (writers_done - start_at), 1),
        "tail_after_writers_s": round(watcher.last - writers_done, 3) if watcher.last else None,
        "collector_lines": relay_lines,
        "sender_status": sender_status,
        "collector_peak_mb": round(collector_rss.peak_mb, 1),
        "sender_peak_mb": round(sender_rss.peak_mb, 1),
        "collector_cpu_s": round(collector_cpu, 2),
        "sender_cpu_s": round(sender_cpu, 2),
    }
    check = (
        f"{committed:,} committed, {delivered:,} printed by the sender, {missing} never seen on the collector's stdout"
    )
    limit_ms = batch_timeout_ms + 50
    figures = []
    if rate is None:
        figures.append(
            Figure(
                "2 live",
                f"{label}: pipeline throughput",
                sustained,
                "tokens/s",
                command,
                note=f"printed by the sender between 10 % and 90 % of the {window:.1f} s window; "
                f"the writers committed {details['writer_commits_per_s']:,} tx/s; the last "
                f"email was printed {details['tail_after_writers_s']} s after the writers "
                f"stopped (the last tokens wait up to BATCH_TIMEOUT); " + check,
                details=details,
            )
        )
    figures.append(
        Figure(
            "2 live",
            f"{label}: commit-to-line latency p50 / p99 / max",
            p99,
            "ms (p99)",
            command,
            target=f"p99 <= {limit_ms} ms" if rate else "(reported)",
            met=(p99 <= limit_ms and missing == 0) if rate else None,
            note=f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms over {len(latencies):,} tokens; "
            f"commit to the sender's printed email (end to end, 5 ms polls): p50 {e50:.1f} ms, "
            f"p99 {e99:.1f} ms, max {emax:.1f} ms; " + check,
            details=details,
        )
    )
    return figures
