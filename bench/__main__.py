"""`python -m bench`: run mailroom's benchmarks, print a table, write BENCHMARKS.md.

    python -m bench                 # everything (what `make bench` runs), writes BENCHMARKS.md
    python -m bench drain --tokens 100000 --batch-limit 50
    python -m bench live --writers 4 --seconds 20
    python -m bench live --writers 1 --rate 10 --seconds 20 --batch-timeout 100
    python -m bench insert --clients 4 --seconds 15
    python -m bench sender --records 100000 --concurrency 8
    python -m bench debug --records 2000
    python -m bench smtp --records 10000 --connections 4
    python -m bench metrics --tokens 50000 --records 20000 --rounds 3

Every figure in BENCHMARKS.md names the single command that reproduces it. Benchmarks use
a fresh database per measurement on the tests' PostgreSQL (MAILROOM_BENCH_DATABASE_URL,
else MAILROOM_TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/postgres),
only loopback traffic, and stop every process they start.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import debug_rate, drain, insert_cost, live, metrics_overhead, sender_rate, smtp_rate
from bench.common import ROOT, Figure, load_average, machine
from bench.report import print_table, write_markdown


def _guard(name: str, command: str, fn: Callable[[], list[Figure]]) -> list[Figure]:
    """Run one benchmark; a failure becomes a figure that says so, and the others still run."""
    load = load_average()
    print(f"bench: {name} (load average {load}) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        figures = fn()
    except Exception as exc:  # reported in the table and BENCHMARKS.md, never hidden
        traceback.print_exc()
        figures = [Figure(name, "FAILED", None, "", command, met=False, note=f"{type(exc).__name__}: {exc}")]
    for figure in figures:
        figure.details.setdefault("load_average_before", load)
    print(f"bench: {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    for figure in figures:
        print(f"  {figure.name}: {figure.shown()}", file=sys.stderr, flush=True)
    return figures


def suite(quick: bool) -> list[Figure]:
    big, small = (20_000, 2_000) if quick else (100_000, 10_000)
    seconds = 5 if quick else 20
    figures: list[Figure] = []
    for tokens, limit in ((big, 50), (big, 10), (small, 50), (small, 10)):
        figures += _guard(
            "1 drain", f"drain --tokens {tokens} --batch-limit {limit}", lambda t=tokens, l=limit: drain.run(t, l)
        )
    figures += _guard(
        "2 live", "live --writers 4", lambda: live.run(4, seconds, None, 10, 5000, "4 writers, full speed")
    )
    for timeout in (5000, 100):
        figures += _guard(
            "2 live",
            f"live --rate 10 --batch-timeout {timeout}",
            lambda t=timeout: live.run(1, seconds, 10, 10, t, f"light load 10 tokens/s, BATCH_TIMEOUT={t}"),
        )
    figures += _guard("3 insert cost", "insert", lambda: insert_cost.run(4, 5 if quick else 15, 1 if quick else 5))
    for records, concurrency in ((big, 4), (big, 8), (small, 4), (small, 8)):
        figures += _guard(
            "4 sender",
            f"sender --records {records} --concurrency {concurrency}",
            lambda r=records, c=concurrency: sender_rate.run(r, c),
        )
    for connections in (1, 4, 8):
        figures += _guard(
            "6 smtp",
            f"smtp --records {small} --connections {connections}",
            lambda c=connections: smtp_rate.run(small, c),
        )
    figures += _guard("7 debug", "debug --records 2000", lambda: debug_rate.run(2000))
    tokens, records, rounds = (10_000, 5_000, 1) if quick else (50_000, 20_000, 3)
    figures += _guard(
        "8 metrics cost",
        f"metrics --tokens {tokens} --records {records} --rounds {rounds}",
        lambda: metrics_overhead.run(tokens, records, rounds),
    )
    return figures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("all", help="every benchmark; writes BENCHMARKS.md (the default command)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes, to check the harness (writes nothing unless --output is given)",
    )
    p.add_argument("--output", type=Path, default=None, help="where to write the report [BENCHMARKS.md]")
    p = sub.add_parser("drain", help="1: collector --drain of a committed backlog (and its peak RSS)")
    p.add_argument("--tokens", type=int, default=100_000)
    p.add_argument("--batch-limit", type=int, default=50)
    p.add_argument(
        "--suppressed",
        type=int,
        default=0,
        help="addresses on the suppression list first (none of them a drained account's) [0]",
    )
    p.add_argument(
        "--cooldown",
        default=None,
        help="MAILROOM_RECOVERY_COOLDOWN for the collector (0 turns the cooldown and its probe off) [the default]",
    )
    p = sub.add_parser("live", help="2: writers + collector | sender: throughput and commit-to-line latency")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--rate", type=float, default=None, help="total tokens/s (default: as fast as possible)")
    p.add_argument("--batch-limit", type=int, default=10)
    p.add_argument("--batch-timeout", type=int, default=5000, help="MAILROOM_BATCH_TIMEOUT in ms")
    p = sub.add_parser("insert", help="3: pgbench inserts with and without the NOTIFY, with the collector running")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the median is reported")
    p = sub.add_parser("sender", help="4: sender against bench/fake_ses.py (and its peak RSS)")
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--concurrency", type=int, default=4)
    p = sub.add_parser("smtp", help="6: sender with MAILROOM_PROVIDER=smtp against a local aiosmtpd sink")
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--connections", type=int, default=4)
    p = sub.add_parser("debug", help="7: sender in debug mode (not paced): sending time of N printed emails")
    p.add_argument("--records", type=int, default=2000)
    p = sub.add_parser("metrics", help="8: what the metrics cost: drain and sender throughput, metrics on vs off")
    p.add_argument("--tokens", type=int, default=50_000)
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3, help="interleaved off/on rounds; medians are compared")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "all"
    started_load = load_average()
    if command == "all":
        figures = suite(args.quick if args.command else False)
    elif command == "drain":
        figures = _guard(
            "1 drain", "drain", lambda: drain.run(args.tokens, args.batch_limit, args.suppressed, args.cooldown)
        )
    elif command == "live":
        label = (
            f"{args.writers} writers, "
            + (f"{args.rate:g} tokens/s" if args.rate else "full speed")
            + f", BATCH_TIMEOUT={args.batch_timeout}"
        )
        figures = _guard(
            "2 live",
            "live",
            lambda: live.run(args.writers, args.seconds, args.rate, args.batch_limit, args.batch_timeout, label),
        )
    elif command == "insert":
        figures = _guard("3 insert cost", "insert", lambda: insert_cost.run(args.clients, args.seconds, args.rounds))
    elif command == "debug":
        figures = _guard("7 debug", "debug", lambda: debug_rate.run(args.records))
    elif command == "smtp":
        figures = _guard("6 smtp", "smtp", lambda: smtp_rate.run(args.records, args.connections))
    elif command == "metrics":
        figures = _guard(
            "8 metrics cost", "metrics", lambda: metrics_overhead.run(args.tokens, args.records, args.rounds)
        )
    else:
        figures = _guard("4 sender", "sender", lambda: sender_rate.run(args.records, args.concurrency))
    print_table(figures)
    output = getattr(args, "output", None)
    if command == "all" and output is None and not (args.command and args.quick):
        output = ROOT / "BENCHMARKS.md"
    if output is not None:
        write_markdown(
            output, figures, machine(), started_load, load_average(), quick=bool(args.command and args.quick)
        )
        print(f"bench: wrote {output}", file=sys.stderr)
    return 1 if any(f.value is None for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
