"""`mailroom status`: one screen that says whether mail flows, how far behind it is, and why not.

It reads, and changes nothing:
- the database: each queue's backlog and the age of its oldest entry; which collector is
  active on each queue (the session holding its standby lock in pg_locks, with its backend
  pid and client address from pg_stat_activity), whether it is awake, and the standbys;
- the sender's output folder (MAILROOM_SES_OUTPUT_PATH): the last delivery and the last
  reject, the outcomes of the last hour (read from the ends of deliveries.jsonl and
  rejects.jsonl, never the whole files), and the journal's unfinished records.

The journal is read here, not through sender/journal.py: the shared layer does not import
the sender, and the sender's Journal is a writer (opening it compacts and deletes
segments). Reading needs only the four entry kinds documented at the top of
sender/journal.py, replayed the same way; tests/unit/test_monitoring_parts.py checks that this
reading agrees with the sender's own Journal. Secrets in the journal are never kept or shown.

`--json` prints the same data as one JSON object, for scripts. Exit status: 0, or 1 when
the database could not be read (the sender's part is still shown).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg

from mailroom import rates, settings
from mailroom.db import DEFAULT_SCHEMA, connect, describe, queries

STATUS_VARIABLES = (
    "MAILROOM_DATABASE_URL",
    "MAILROOM_SCHEMA",
    "MAILROOM_SES_OUTPUT_PATH",
    "MAILROOM_LOG_LEVEL",
    "MAILROOM_LOG_FORMAT",
)
WINDOW_S = 3600.0  # "the last hour"
BLOCK = 1 << 16
MAX_SCAN_BYTES = 32 << 20  # how far back from the end of a file to look, at most
CLASSES = ("delivered", "recipient_refused", "deadline_passed", "duplicate_skipped", "input_rejected")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the same data as one JSON object, for scripts")


# -- the database ------------------------------------------------------------------------------
def database_status(url: str, schema: str = DEFAULT_SCHEMA) -> dict[str, Any]:
    """Queues, active collectors and collector sessions; raises psycopg.Error."""
    q = queries("monitoring.sql")
    with connect(url, application_name="mailroom-status", connect_timeout=5, schema=schema) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        queues = cur.execute(q["queues"]).fetchall()
        active = cur.execute(q["collectors"]).fetchall()
        sessions = cur.execute(q["collector_sessions"]).fetchall()
    active_pids = {row["pid"] for row in active}
    for row in queues:
        row["backlog"] = int(row["backlog"])
        row["oldest_age_s"] = None if row["oldest_age_s"] is None else round(max(0.0, row["oldest_age_s"]), 3)
    for row in (*active, *sessions):
        row["backend_start"] = _iso(row["backend_start"])
    return {
        "queues": queues,
        "active_collectors": active,
        "standby_collectors": [s for s in sessions if s["pid"] not in active_pids],
    }


# -- deliveries.jsonl and rejects.jsonl ----------------------------------------------------------
def tail_lines(path: Path, max_bytes: int = MAX_SCAN_BYTES) -> Iterator[bytes]:
    """The lines of `path`, last first, reading backwards in blocks (at most `max_bytes`)."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        start_limit = max(0, end - max_bytes)
        pos, rest = end, b""
        while pos > start_limit:
            size = min(BLOCK, pos - start_limit)
            pos -= size
            f.seek(pos)
            chunk = f.read(size) + rest
            lines = chunk.split(b"\n")
            rest = lines.pop(0)  # may be the end of a line that starts in the block before
            for line in reversed(lines):
                if line.strip():
                    yield line
        if rest.strip() and start_limit == 0:
            yield rest


def _parse_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def outcome_class(row: Mapping[str, Any]) -> str:
    """The outcome class of a deliveries.jsonl row (what the sender finished it as)."""
    status = row.get("status")
    if status == "Success":
        return "delivered"
    if status == "Duplicate":
        return "duplicate_skipped"
    if status == "DeadlinePassed" or str(row.get("error", "")).startswith("deadline passed"):
        return "deadline_passed"
    return "recipient_refused"


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """What to show of a row: never its record (redacted anyway) or anything secret."""
    keep = ("time", "action", "recipient", "sent_to", "status", "reason", "error", "attempts", "token_ref")
    return {k: row[k] for k in keep if k in row}


def tail_rows(path: Path) -> Iterator[tuple[dict[str, Any], dt.datetime | None]]:
    """The JSON rows of an output file, last first, with their time; unreadable lines skipped."""
    for raw in tail_lines(path):
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        yield row, _parse_time(row.get("time"))


def output_status(output: Path, now: dt.datetime) -> dict[str, Any]:
    since = now - dt.timedelta(seconds=WINDOW_S)
    counts: Counter[str] = Counter()
    last_delivery: dict[str, Any] | None = None
    for row, at in tail_rows(output / "deliveries.jsonl"):
        recent = at is not None and at >= since
        cls = outcome_class(row)
        if recent:
            counts[cls] += 1
        if last_delivery is None and cls == "delivered":
            last_delivery = _summary(row)
        if not recent and last_delivery is not None:
            break
    last_reject: dict[str, Any] | None = None
    for row, at in tail_rows(output / "rejects.jsonl"):
        if last_reject is None:
            last_reject = _summary(row)
        if at is None or at < since:
            break
        if "recipient" not in row:  # a malformed input line: no record, so not in deliveries.jsonl
            counts["input_rejected"] += 1
    return {
        "output_path": str(output),
        # False: nothing below was read, rather than "none found" (a wrong folder, or another host's)
        "output_path_exists": output.is_dir(),
        "last_delivery": last_delivery,
        "last_reject": last_reject,
        "last_hour": {c: counts.get(c, 0) for c in CLASSES},
        "journal": journal_status(output / "journal"),
    }


# -- the journal, read-only (format: sender/journal.py) --------------------------------------------
def journal_status(directory: Path) -> dict[str, Any]:
    """Unfinished records by action and the oldest one's read time, replaying every segment."""
    pending: dict[str, tuple[float, dict[int, int]]] = {}  # line id -> (read at, index -> action)
    if not directory.is_dir():
        return {"unfinished": 0, "by_action": {}, "oldest_read_at": None, "segments": 0}
    if not os.access(directory, os.R_OK | os.X_OK):
        return {"unfinished": None, "error": f"cannot read {directory} (it is private to the sender's user)"}
    segments = sorted(directory.glob("seg-*.jsonl"))
    for path in segments:
        try:
            with open(path, "rb") as f:
                for raw in f:
                    try:
                        _replay(json.loads(raw), pending)
                    except (ValueError, KeyError, TypeError, IndexError):
                        continue  # a torn last line
        except FileNotFoundError:
            continue  # compacted away meanwhile: its entries are in the newer segment
        except OSError as exc:
            return {"unfinished": None, "error": f"cannot read {path}: {exc.strerror or exc}"}
    by_action: Counter[str] = Counter()
    oldest: float | None = None
    for at, records in pending.values():
        for action in records.values():
            by_action[_ACTION_NAMES.get(action, str(action))] += 1
        oldest = at if oldest is None else min(oldest, at)
    return {
        "unfinished": sum(by_action.values()),
        "by_action": dict(sorted(by_action.items())),
        "oldest_read_at": None if oldest is None else _iso(dt.datetime.fromtimestamp(oldest, dt.UTC)),
        "segments": len(segments),
    }


_ACTION_NAMES = {1: "activation", 2: "password_recovery"}


def _replay(e: dict[str, Any], pending: dict[str, tuple[float, dict[int, int]]]) -> None:
    kind = e["k"]
    if kind == "L":
        rows = e["r"]
        indices = e.get("n") or range(len(rows))
        _, records = pending.setdefault(e["id"], (float(e["at"]), {}))
        for i, row in zip(indices, rows, strict=False):
            records[int(i)] = int(row[0])
    elif kind in ("D", "R"):
        line = pending.get(e["id"])
        if line is not None:
            for i in e["n"]:
                line[1].pop(int(i), None)
            if not line[1]:
                del pending[e["id"]]


# -- the command ----------------------------------------------------------------------------------
def collect(url: str, output: Path, now: dt.datetime | None = None, schema: str = DEFAULT_SCHEMA) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    status: dict[str, Any] = {"time": _iso(now), "database": {"where": describe(url), "error": None}}
    try:
        status.update(database_status(url, schema))
    except psycopg.Error as exc:
        status["database"]["error"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        status.update(queues=[], active_collectors=[], standby_collectors=[])
    status["sender"] = output_status(output, now)
    status["deliverability"] = deliverability_status(url, schema) if not status["database"]["error"] else None
    return status


def deliverability_status(url: str, schema: str = DEFAULT_SCHEMA) -> list[dict[str, Any]] | None:
    """The bounce and complaint rates over 24 h and 7 days (mailroom/rates.py); None before
    migration 0007."""
    try:
        with connect(url, application_name="mailroom-status", connect_timeout=5, schema=schema) as conn:
            found = rates.read(conn)
    except psycopg.errors.UndefinedTable:
        return None
    return [
        {
            **dataclasses.asdict(r),
            "bounce_rate": r.bounce_rate,
            "complaint_rate": r.complaint_rate,
            "bounce_mark": rates.mark(r.bounce_rate, rates.BOUNCE_REVIEW, rates.BOUNCE_PAUSE),
            "complaint_mark": rates.mark(r.complaint_rate, rates.COMPLAINT_REVIEW, rates.COMPLAINT_PAUSE),
            "line": rates.describe(r),
        }
        for r in found
    ]


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    v = settings.read(environ, "MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA", "MAILROOM_SES_OUTPUT_PATH")
    status = collect(v["MAILROOM_DATABASE_URL"], v["MAILROOM_SES_OUTPUT_PATH"], schema=v["MAILROOM_SCHEMA"])
    print(json.dumps(status, indent=2, ensure_ascii=False) if args.json else render(status))
    return 1 if status["database"]["error"] else 0


def render(status: Mapping[str, Any]) -> str:
    """The screen for a person."""
    db = status["database"]
    out = [f"mailroom status at {status['time']} (database {db['where']})", ""]
    out.append("Queues")
    if db["error"]:
        out.append(f"  ✗ cannot read the database: {db['error']}")
    elif not status["queues"]:
        out.append("  (no queue registered: no collector has run on this database)")
    for q in status["queues"]:
        age = "" if q["oldest_age_s"] is None else f", oldest queued {_duration(q['oldest_age_s'])} ago"
        by_action = q.get("by_action") or {}
        split = " (" + ", ".join(f"{n} {a}" for a, n in sorted(by_action.items())) + ")" if by_action else ""
        out.append(f"  {q['name']} (channel {q['channel']}): {q['backlog']} queued{split}{age}")
    out += ["", "Collectors"]
    actives = {c["queue"]: c for c in status["active_collectors"]}
    for q in status["queues"]:
        c = actives.get(q["name"])
        if c is None:
            out.append(f"  {q['name']}: ✗ no active collector")
        else:
            awake = ", awake" if c["awake"] else ""
            out.append(
                f"  {q['name']}: active pid {c['pid']} from {_client(c)}, connected since {c['backend_start']}{awake}"
            )
    for s in status["standby_collectors"]:
        out.append(f"  standby pid {s['pid']} from {_client(s)}, connected since {s['backend_start']}")
    if not db["error"] and not status["queues"] and not status["standby_collectors"]:
        out.append("  (none)")
    sender = status["sender"]
    out += ["", f"Sender output ({sender['output_path']})"]
    if not sender["output_path_exists"]:
        where = Path(sender["output_path"])
        shown = f"{where} ({where.absolute()})" if not where.is_absolute() else str(where)
        out.append(
            f"  ✗ the folder {shown} does not exist: MAILROOM_SES_OUTPUT_PATH sets it; run `mailroom status` "
            "with the sender's MAILROOM_SES_OUTPUT_PATH, on the host where the sender runs"
        )
        return "\n".join(out)
    d = sender["last_delivery"]
    out.append(
        "  last delivery: "
        + (f"{d['time']} {d.get('action', '?')} to {d.get('recipient', '?')}" if d else "none found")
    )
    r = sender["last_reject"]
    if r:
        what = f"{r.get('action', 'input')} to {r['recipient']}" if "recipient" in r else "an input line"
        why = r.get("reason", "")
        if r.get("status"):
            why += f" ({r['status']})"
        out.append(f"  last reject:   {r['time']} {what}: {why}")
    else:
        out.append("  last reject:   none")
    hour = sender["last_hour"]
    out.append("  last hour:     " + ", ".join(f"{c.replace('_', ' ')} {hour[c]}" for c in CLASSES))
    j = sender["journal"]
    if j.get("unfinished") is None:
        out.append(f"  journal:       ✗ {j.get('error')}")
    elif j["unfinished"]:
        actions = ", ".join(f"{a} {n}" for a, n in j["by_action"].items())
        out.append(f"  journal:       {j['unfinished']} unfinished ({actions}), oldest read at {j['oldest_read_at']}")
    else:
        out.append("  journal:       nothing unfinished")
    if status.get("deliverability"):
        out += ["", "Deliverability (SES events recorded by `mailroom events`)"]
        out += [f"  {r['line']}" for r in status["deliverability"]]
    return "\n".join(out)


def _client(session: Mapping[str, Any]) -> str:
    if session.get("client_addr") is None:
        return "a local socket (or not visible: grant pg_monitor)"
    return f"{session['client_addr']}:{session['client_port']}"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)
