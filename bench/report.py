"""The results: a table on stdout, and BENCHMARKS.md."""

from __future__ import annotations

import datetime
from pathlib import Path

from bench.common import Figure

QUIET_LOAD = 0.5  # a 1-minute load average above this on start means other work was running


def _met(figure: Figure) -> str:
    return {True: "yes", False: "NO", None: ""}[figure.met]


def print_table(figures: list[Figure]) -> None:
    rows = [("benchmark", "figure", "value", "target", "met")]
    rows += [(f.benchmark, f.name, f.shown(), f.target, _met(f)) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for f in figures:
        if f.note:
            print(f"{f.benchmark} / {f.name}:\n    {f.note}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def write_markdown(
    path: Path, figures: list[Figure], machine: dict[str, str], load_start: str, load_end: str, quick: bool = False
) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    noisy = float(load_start.split()[0]) > QUIET_LOAD
    out = [
        "# mailroom benchmarks",
        "",
        f"Written by `make bench` (`.venv/bin/python -m bench`) on {now}. Each figure below names the",
        "command that reproduces it alone (run from the repository root after `make bench` or",
        "`make test` has built `.venv`). Benchmarks are not tests: nothing in the test suite asserts a time.",
        "",
    ]
    if quick:
        out += ["> **Quick run** (`python -m bench all --quick`): reduced sizes, to check the harness only.", ""]
    if noisy:
        out += [
            (
                f"> **Noisy run.** The 1-minute load average was {load_start.split()[0]} when the run started "
                f"(and {load_end.split()[0]} at the end) on a {machine['nproc']}-core machine: other work was "
                "running, so these numbers are lower and more scattered than on a quiet machine. Each "
                "figure's `load average before` shows what it competed with. Re-run `make bench` on a quiet "
                "machine for figures to quote."
            ),
            "",
        ]
    out += [
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPUs (nproc) | {machine['nproc']} |",
        f"| CPU model | {_cell(machine['cpu'])} |",
        f"| memory | {machine['memory']} |",
        f"| kernel | {machine['kernel']} |",
        f"| Python | {machine['python']} |",
        f"| PostgreSQL | {_cell(machine['postgresql'])} (same server as the tests, loopback) |",
        f"| PostgreSQL settings | {_cell(machine['postgresql_settings'])} |",
        f"| load average (1, 5, 15 min) | start: {load_start}; end: {load_end} |",
        "",
        "## Summary",
        "",
        "| benchmark | figure | value | target | met |",
        "|---|---|---|---|---|",
    ]
    out += [f"| {f.benchmark} | {_cell(f.name)} | {f.shown()} | {_cell(f.target)} | {_met(f)} |" for f in figures]
    out += ["", "## Figures and how to reproduce them", ""]
    for f in figures:
        out += [
            f"### {f.benchmark}: {f.name}",
            "",
            f"**{f.shown()}**"
            + (f" (target {f.target}: {'met' if f.met else 'NOT met'})" if f.target and f.met is not None else ""),
            "",
            "```sh",
            f.command,
            "```",
            "",
        ]
        if f.note:
            out += [f.note, ""]
        if f.details:
            out += ["<details><summary>raw</summary>", "", "```"]
            out += [f"{k}: {v}" for k, v in f.details.items()]
            out += ["```", "</details>", ""]
    out += [
        "## How each benchmark measures",
        "",
        (
            "1. **Drain** (`bench/drain.py`): N accounts committed in one `INSERT ... SELECT FROM "
            "generate_series` (the triggers queue N activation tokens), `VACUUM ANALYZE`, then "
            "`collector --drain` with stdout redirected to a file. Timed from process start to exit and to "
            "the last growth of the file (polled every 2 ms); the file is decoded and must hold N valid "
            "records for N distinct accounts."
        ),
        (
            "2. **Live** (`bench/live.py`): writer threads (one connection each, one account per "
            "transaction) for a fixed time, `collector | sender` running (sender in debug mode, "
            "MAILROOM_SES_MAX_SEND_RATE raised so the debug rate cap does not throttle it). The harness "
            "reads the collector's stdout itself, timestamps each line on arrival and forwards it to the "
            "sender. Latency = arrival of a token's line - the moment its INSERT returned (committed). "
            "Throughput = emails printed by the sender between 10 % and 90 % of the writers' window, per "
            "second: when the pipeline keeps up it equals the writers' commit rate, which is then the limit "
            "(Python writers with synchronous commits), not mailroom. The last tokens of a run wait up to "
            "BATCH_TIMEOUT, since fewer than BATCH_LIMIT notifications follow them: that is the max at light "
            "load, and with few tokens it can be the p99. The harness (one Python process) shares the CPUs "
            "with PostgreSQL and both programs."
        ),
        (
            "3. **Insert cost** (`bench/insert_cost.py`): `pgbench -n -M prepared -c 4 -j 2` with one "
            "`INSERT INTO accounts` per transaction, on a fresh database per variant: the schema as "
            "migrated with a collector running; the same with the NOTIFY loop removed from "
            "`mailroom_tokens_inserted` (tokens still queued); the schema as migrated without a "
            "collector (every insert NOTIFYs); and the schema as migrated, no collector, with a session "
            "holding the awake lock throughout (no insert NOTIFYs, each checks the lock: the ceiling of an "
            "awake collector). Whether the collector held its awake advisory lock is sampled from "
            "`pg_locks` every 100 ms. The variants run interleaved, round after round; the median is shown."
        ),
        (
            "4. **Sender** (`bench/sender_rate.py`): N signed records in lines of 50 fed from a file to "
            "`sender` pointed at `bench/fake_ses.py` (AWS Query protocol on loopback; "
            "SendBulkTemplatedEmail answered after 50 ms), MAILROOM_SES_MAX_SEND_RATE=5000. The rate is "
            "counted by the fake server between 10 % and 90 % of the total; it must receive N distinct "
            "addresses. With 50 destinations per call and 50 ms per answer, C calls in flight can carry "
            "at most C x 1,000 emails/s."
        ),
        (
            "5. **Memory**: the peak RSS of the collector (in 1) and the sender (in 4) is the kernel's "
            "high-water mark `VmHWM` from `/proc/<pid>/status`, read every 20 ms until the program exits "
            "(`ru_maxrss` from `wait4` is not used: Linux counts the parent's resident set at spawn time "
            "into it). VmRSS at 0/25/50/75/100 % of the run shows whether it grows with the backlog. "
            "MB = 10^6 bytes."
        ),
        "",
    ]
    path.write_text("\n".join(out))
