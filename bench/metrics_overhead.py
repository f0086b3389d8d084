"""Benchmark 8: what the metrics cost. The same work with MAILROOM_*_METRICS_ADDR empty
(off) and set (on, scraped every SCRAPE_EVERY_S seconds by a thread here, as Prometheus
would but more often), interleaved off/on for ROUNDS rounds; the median of each is reported.

- drain: `collector --drain` of N committed tokens to a file (benchmark 1's setup); tokens/s
  from process start to exit. With metrics on, each scrape also reads the queue's backlog
  on the metrics' own connection.
- sender: `sender` reading N records from a file and sending them to bench/fake_ses.py
  answering at once (no simulated latency, no pacing to speak of), so the sender is CPU-bound
  and any per-record cost of the metrics shows; emails/s over the whole run and the sender's
  CPU seconds. The fake SES must have received exactly N distinct addresses each time.

The figure is the cost: (off - on) / off of the median throughput; the target is < 5 %.
On a shared machine the run-to-run noise is larger than that, so a third figure measures
the instrumentation itself in this process, where noise does not reach it: the CPU time of
what the drain loop does per committed transaction and the sender per provider call (and
per record), and of one scrape of each registry, set against the per-token and per-email
cost of the off runs.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.common import Children, Figure, bench_database, program_env, script, seed_accounts, wait_with_rusage
from bench.fake_ses import start_child
from bench.sender_rate import _stats, write_input
from collector.metrics import build_registry as collector_registry
from collector.stats import CollectorStats
from mailroom.metrics_http import new_registry
from sender.metrics import CallMetrics

SCRAPE_EVERY_S = 1.0
SENDER_RATE = 100_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scraper:
    """GET /metrics every `every` seconds until stopped; counts the scrapes that answered."""

    def __init__(self, port: int, every: float = SCRAPE_EVERY_S) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.every = every
        self.ok = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    answer.read()
                self.ok += 1
            except OSError:
                pass  # not listening yet, or gone

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.ok


def _drain_once(tokens: int, on: bool) -> tuple[float, int]:
    """tokens/s of one `collector --drain`, and how many scrapes answered."""
    with bench_database(f"mo{'on' if on else 'off'}") as url, tempfile.TemporaryDirectory() as tmp, Children() as kids:
        seed_accounts(url, tokens)
        port = _free_port()
        env = program_env(MAILROOM_DATABASE_URL=url, MAILROOM_BATCH_LIMIT=50)
        if on:
            env["MAILROOM_COLLECTOR_METRICS_ADDR"] = f"127.0.0.1:{port}"
        with open(Path(tmp) / "out", "wb") as sink:
            scraper = Scraper(port) if on else None
            started = time.monotonic()
            proc = kids.start([script("collector"), "--drain"], env=env, stdout=sink)
            status, _ = wait_with_rusage(proc, 600)
            wall = time.monotonic() - started
            scrapes = scraper.stop() if scraper else 0
        if status != 0:
            raise RuntimeError(f"collector --drain exited with status {status}")
        lines = (Path(tmp) / "out").read_bytes().count(b"\n")
        if lines < tokens // 50:
            raise RuntimeError(f"collector wrote {lines} lines for {tokens} tokens")
    return tokens / wall, scrapes


def _sender_once(records: int, concurrency: int, on: bool, lines: Path) -> tuple[float, float, int]:
    """emails/s over the whole run, sender CPU seconds, scrapes answered."""
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp, Children() as kids:
        fake = start_child(kids, 0, SENDER_RATE)
        port = _free_port()
        env = program_env(
            **fake.env,
            MAILROOM_SES_MAX_SEND_RATE=SENDER_RATE,
            MAILROOM_SES_CONCURRENCY=concurrency,
            MAILROOM_SES_OUTPUT_PATH=str(Path(tmp) / "out"),
        )
        if on:
            env["MAILROOM_SENDER_METRICS_ADDR"] = f"127.0.0.1:{port}"
        with lines.open("rb") as stdin:
            scraper = Scraper(port) if on else None
            started = time.monotonic()
            sender = kids.start([script("sender")], env=env, stdin=stdin, stdout=subprocess.DEVNULL)
            status, cpu_s = wait_with_rusage(sender, records / 100 + 120)
            wall = time.monotonic() - started
            scrapes = scraper.stop() if scraper else 0
        stats = _stats(fake.port)
        if status != 0:
            raise RuntimeError(f"sender exited with status {status}")
        if stats["destinations"] != records or stats["distinct"] != records:
            raise RuntimeError(
                f"fake SES received {stats['destinations']} ({stats['distinct']} distinct), not {records}"
            )
    return records / wall, cpu_s, scrapes


def _per_op_s(fn, n: int = 100_000) -> float:
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n


def in_process_costs() -> dict[str, float]:
    """CPU seconds of each piece of instrumentation, measured in this process."""
    from collections import Counter as Tally

    from prometheus_client import generate_latest

    stats = CollectorStats()
    calls = CallMetrics(new_registry(), "ses")
    outcomes: Tally[tuple[str, str]] = Tally()
    registry = collector_registry(CollectorStats(), lambda: (0, None), "q", "c")
    return {
        # a committed transaction of the drain (CHUNKS_PER_COMMIT chunks of 50)
        "collector_per_transaction": _per_op_s(lambda: stats.committed(500, 10, 60_000, None)),
        # one provider call observed (counter, two histograms, rate-limiter wait)
        "sender_per_call": _per_op_s(lambda: calls(50, 0.001, 0.05, "answered")),
        # one record's outcome counted (done in both modes: the counts exist for the logs too)
        "sender_per_record": _per_op_s(lambda: outcomes.update({("delivered", "activation"): 1})),
        "scrape": _per_op_s(lambda: generate_latest(registry), 200),
    }


def _cost(off: list[float], on: list[float]) -> float:
    return 100.0 * (statistics.median(off) - statistics.median(on)) / statistics.median(off)


def run(tokens: int, records: int, rounds: int, concurrency: int = 8) -> list[Figure]:
    command = f".venv/bin/python -m bench metrics --tokens {tokens} --records {records} --rounds {rounds}"
    drain: dict[bool, list[float]] = {False: [], True: []}
    drain_scrapes = 0
    for _ in range(rounds):
        for on in (False, True):
            rate, scrapes = _drain_once(tokens, on)
            drain[on].append(rate)
            drain_scrapes += scrapes
    send: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    send_scrapes = 0
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp:
        lines = Path(tmp) / "input.lines"
        write_input(lines, records, 50)
        for _ in range(rounds):
            for on in (False, True):
                rate, cpu_s, scrapes = _sender_once(records, concurrency, on, lines)
                send[on].append(rate)
                cpu[on].append(cpu_s)
                send_scrapes += scrapes

    def shown(values: list[float]) -> str:
        return ", ".join(f"{v:,.0f}" for v in values)

    drain_cost, send_cost = _cost(drain[False], drain[True]), _cost(send[False], send[True])
    costs = in_process_costs()
    per_token_s = 1 / statistics.median(drain[False])
    per_email_s = 1 / statistics.median(send[False])
    collector_share = costs["collector_per_transaction"] / 500 / per_token_s
    sender_share = (costs["sender_per_call"] / 50 + costs["sender_per_record"]) / per_email_s
    return [
        Figure(
            "8 metrics cost",
            "instrumentation CPU as a share of the work it measures, in-process (largest of collector and sender)",
            100 * max(collector_share, sender_share),
            "%",
            command,
            target="< 5 %",
            met=max(collector_share, sender_share) < 0.05,
            note=f"collector: {costs['collector_per_transaction'] * 1e6:.2f} µs per committed transaction of up to "
            f"500 tokens = {100 * collector_share:.4f} % of the {per_token_s * 1e6:.1f} µs a token costs; sender: "
            f"{costs['sender_per_call'] * 1e6:.2f} µs per call of up to 50 + {costs['sender_per_record'] * 1e6:.2f} "
            f"µs per record = {100 * sender_share:.3f} % of the {per_email_s * 1e6:.0f} µs an email costs; one "
            f"scrape: {costs['scrape'] * 1e3:.2f} ms of CPU (+ the backlog query, at most every 5 s)",
            details={f"{k}_us": round(v * 1e6, 3) for k, v in costs.items()},
        ),
        Figure(
            "8 metrics cost",
            f"collector --drain of {tokens:,} tokens (BATCH_LIMIT=50): throughput lost with metrics on",
            drain_cost,
            "%",
            command,
            target="< 5 %",
            met=drain_cost < 5,
            note=f"median of {rounds} interleaved runs: off {statistics.median(drain[False]):,.0f} tokens/s "
            f"[{shown(drain[False])}], on {statistics.median(drain[True]):,.0f} tokens/s [{shown(drain[True])}]; "
            f"scraped every {SCRAPE_EVERY_S:g} s ({drain_scrapes} scrapes answered); negative: on was faster (noise)",
        ),
        Figure(
            "8 metrics cost",
            f"sender, {records:,} emails to a fake SES answering at once, concurrency {concurrency}: "
            "throughput lost with metrics on",
            send_cost,
            "%",
            command,
            target="< 5 %",
            met=send_cost < 5,
            note=f"median of {rounds} interleaved runs: off {statistics.median(send[False]):,.0f} emails/s "
            f"[{shown(send[False])}], on {statistics.median(send[True]):,.0f} emails/s [{shown(send[True])}]; "
            f"sender CPU off {statistics.median(cpu[False]):.2f} s, on {statistics.median(cpu[True]):.2f} s "
            f"(median); scraped every {SCRAPE_EVERY_S:g} s ({send_scrapes} scrapes answered)",
        ),
    ]
