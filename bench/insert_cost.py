"""Benchmark 3: what mailroom's triggers cost the app's own inserts, with pgbench.

The app's transaction is one `INSERT INTO accounts` (its BEFORE trigger creates the
activation token; the statement trigger on tokens queues it and, unless the collector is
awake, NOTIFYs). pgbench runs it with 4 clients for a fixed time against a fresh database
in each variant:

- `collector`:     the mailroom schema as migrated, with `collector` running on the database
                   (the realistic setting; whether it held its awake lock is sampled from
                   pg_locks every 100 ms and reported);
- `no-notify+collector`: the same schema with the NOTIFY loop removed from
                   mailroom_tokens_inserted (tokens are still queued) and the same collector
                   running (it reads on its own schedule while tokens keep coming, and on a
                   health check): everything equal but the NOTIFY;
- `no-notify`:     the NOTIFY removed, no collector: the bare cost of the queue;
- `notify-always`: the mailroom schema, no collector: every insert NOTIFYs;
- `awake-held`:    the mailroom schema, no collector, but a session holds the awake lock
                   for the whole run, so every insert takes the skip-the-NOTIFY path: the
                   best an always-awake collector could do (the cost of the lock check).

The figure is tps(collector) / tps(no-notify+collector): on a 2-core machine the collector
and its backend share the cores with pgbench, and that cost of *consuming* is the same
with or without the NOTIFY, so both sides carry it. tps(awake-held) / tps(no-notify) is the
trigger's own cost with nobody consuming.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from bench.common import QUEUE, Children, Figure, bench_database, program_env, script, stop_with_rusage

PGBENCH = "pgbench"
TRANSACTION = (
    "INSERT INTO accounts (email, login) VALUES (gen_random_uuid()::text || '@example.com', gen_random_uuid()::text);\n"
)

# The migrated function minus its NOTIFY loop: tokens are still queued in job_tokens.
WITHOUT_NOTIFY = """
CREATE OR REPLACE FUNCTION mailroom_tokens_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_tokens (job, token)
        SELECT j.name, i.id FROM jobs j CROSS JOIN inserted i;
    RETURN NULL;
END
$$;
"""

AWAKE_HELD = """
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND mode = 'ExclusiveLock'
   AND ((classid::bigint << 32) | objid::bigint) = mailroom_awake_lock(%s)
"""

VARIANTS = ("no-notify+collector", "collector", "no-notify", "notify-always", "awake-held")
# Both collector variants: a health check within the run, so the collector also starts
# reading when the schema sends no NOTIFY at all.
COLLECTOR_ENV = {"MAILROOM_BATCH_TIMEOUT": 1000, "MAILROOM_HEALTHCHECK_INTERVAL": 1000}


def _pgbench(url: str, clients: int, seconds: float, script_path: Path) -> float:
    args = [
        PGBENCH,
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
        "-T",
        str(int(seconds)),
        "-f",
        str(script_path),
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if not match:
        raise RuntimeError(f"no tps in pgbench output: {done.stdout[-500:]}")
    return float(match.group(1))


def _sample_awake(url: str, stop: threading.Event, samples: list[bool]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(0.1):
            samples.append(conn.execute(AWAKE_HELD, (QUEUE,)).fetchone()[0] > 0)


def _wait_until_consuming(url: str, collector: subprocess.Popen, timeout: float = 30.0) -> None:
    """Return once the collector has read a probe token: it is connected, active and reading."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts (email, login) VALUES ('probe@example.com', 'probe')")
        deadline = time.monotonic() + timeout
        while conn.execute("SELECT count(*) FROM job_tokens").fetchone()[0]:
            if collector.poll() is not None:
                raise RuntimeError(f"collector exited with {collector.returncode} before pgbench started")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the collector did not read a probe token within {timeout:.0f} s")
            time.sleep(0.02)


def measure(variant: str, clients: int, seconds: float, script_path: Path) -> tuple[float, str]:
    """tps of one variant on a fresh database, and a note."""
    with bench_database(variant.replace("-", "").replace("+", "_")) as url, Children() as kids:
        note = ""
        if variant.startswith("no-notify"):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(WITHOUT_NOTIFY)
        if variant == "no-notify":
            return _pgbench(url, clients, seconds, script_path), "NOTIFY removed from the trigger, no collector"
        if variant == "notify-always":
            return _pgbench(url, clients, seconds, script_path), "no collector: every insert NOTIFYs"
        if variant == "awake-held":
            with psycopg.connect(url, autocommit=True) as holder:
                holder.execute("SELECT pg_advisory_lock(mailroom_awake_lock(%s))", (QUEUE,))
                return (
                    _pgbench(url, clients, seconds, script_path),
                    (
                        "no collector; a session holds the awake lock throughout, so no insert NOTIFYs "
                        "(each checks the lock)"
                    ),
                )
        collector = kids.start(
            [script("collector")],
            stdout=subprocess.DEVNULL,
            env=program_env(MAILROOM_DATABASE_URL=url, **COLLECTOR_ENV),
        )
        _wait_until_consuming(url, collector)
        stop, samples = threading.Event(), []
        sampler = threading.Thread(target=_sample_awake, args=(url, stop, samples), daemon=True)
        sampler.start()
        try:
            tps = _pgbench(url, clients, seconds, script_path)
        finally:
            stop.set()
            sampler.join()
        if collector.poll() is not None:
            raise RuntimeError(f"collector exited with {collector.returncode} during pgbench")
        with psycopg.connect(url, autocommit=True) as conn:
            # the collector keeps up: what it had not read yet when pgbench stopped
            backlog = conn.execute("SELECT count(*) FROM job_tokens").fetchone()[0]
        _, cpu_s = stop_with_rusage(collector)
        awake = sum(samples) / len(samples) if samples else 0.0
        note = (
            f"{'NOTIFY removed, ' if variant.startswith('no-notify') else ''}collector running; awake lock held in {awake:.0%} of {len(samples)} samples"
            "; "
            f"{backlog:,} tokens unread when pgbench stopped; the collector process used {cpu_s:.1f} s of "
            f"CPU (its PostgreSQL backend's work is not counted)"
        )
        return tps, note


def run(clients: int, seconds: float, rounds: int) -> list[Figure]:
    if shutil.which(PGBENCH) is None:
        raise RuntimeError(
            "pgbench is not on PATH; install PostgreSQL's client programs (Debian: apt-get install postgresql-client)"
        )
    command = f".venv/bin/python -m bench insert --clients {clients} --seconds {seconds:g} --rounds {rounds}"
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp:
        script_path = Path(tmp) / "insert_account.sql"
        script_path.write_text(TRANSACTION)
        for _ in range(rounds):
            for variant in VARIANTS:  # interleaved, so drift in the machine's load hits all alike
                tps, notes[variant] = measure(variant, clients, seconds, script_path)
                results[variant].append(tps)
    best = {v: sorted(r)[len(r) // 2] for v, r in results.items()}  # median
    bare = best["no-notify"]
    consumed = best["no-notify+collector"]
    figures = [
        Figure(
            "3 insert cost",
            f"pgbench tps, {clients} clients, {seconds:g} s: {v}",
            best[v],
            "tps",
            command,
            note=notes[v] + (f"; rounds: {', '.join(f'{x:,.0f}' for x in results[v])}" if rounds > 1 else ""),
        )
        for v in VARIANTS
    ]
    figures.append(
        Figure(
            "3 insert cost",
            "ratio collector / no-notify+collector",
            100 * best["collector"] / consumed,
            "%",
            command,
            target=">= 85 %",
            met=best["collector"] / consumed >= 0.85,
            note="both with the collector consuming on the same 2 cores; only the NOTIFY differs",
        )
    )
    figures.append(
        Figure(
            "3 insert cost",
            "ratio collector / no-notify",
            100 * best["collector"] / bare,
            "%",
            command,
            note="for context: includes the consuming collector's share of the 2 cores",
        )
    )
    figures.append(
        Figure(
            "3 insert cost",
            "ratio notify-always / no-notify",
            100 * best["notify-always"] / bare,
            "%",
            command,
            note="for context: the cost of a NOTIFY per insert",
        )
    )
    figures.append(
        Figure(
            "3 insert cost",
            "ratio awake-held / no-notify",
            100 * best["awake-held"] / bare,
            "%",
            command,
            note="for context: the ceiling of the awake mode (the lock check only)",
        )
    )
    return figures
