"""Observability without a database: the settings, the JSON log lines, the HTTP endpoints,
the dashboard's metric names, and `mailroom status`'s reading of the sender's files."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import FakeProvider

from collector.metrics import build_registry as collector_registry
from collector.stats import CollectorStats
from mailroom import settings
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, Action
from mailroom.commands import status
from mailroom.heartbeat import Heartbeat
from mailroom.logs import JsonFormatter, setup_logging
from mailroom.metrics_http import serve
from mailroom.wire import Record
from sender.dispatch import Fault, SendConfig, Sender
from sender.journal import Journal
from sender.metrics import SenderMonitor
from sender.metrics import build_registry as sender_registry
from sender.outputs import Outputs

DASHBOARD = Path(__file__).parents[2] / "docs" / "dashboards" / "mailroom.json"


# -- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", None),
        ("127.0.0.1:9101", ("127.0.0.1", 9101)),
        ("[::1]:9102", ("::1", 9102)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_a_metrics_address_is_host_port_or_empty_for_off(raw, parsed):
    env = {"MAILROOM_SENDER_METRICS_ADDR": raw}
    assert settings.read(env, "MAILROOM_SENDER_METRICS_ADDR")["MAILROOM_SENDER_METRICS_ADDR"] == parsed


@pytest.mark.parametrize(
    "raw", ["9101", "localhost", "127.0.0.1:0", "127.0.0.1:70000", "http://127.0.0.1:9101", "a b:1"]
)
def test_a_bad_metrics_address_is_a_configuration_error_naming_the_variable(raw):
    with pytest.raises(settings.ConfigError, match="^MAILROOM_COLLECTOR_METRICS_ADDR: .*host:port"):
        settings.read({"MAILROOM_COLLECTOR_METRICS_ADDR": raw}, "MAILROOM_COLLECTOR_METRICS_ADDR")


def test_metrics_are_off_and_logs_are_text_by_default():
    v = settings.read({}, "MAILROOM_COLLECTOR_METRICS_ADDR", "MAILROOM_SENDER_METRICS_ADDR", "MAILROOM_LOG_FORMAT")
    assert v == {
        "MAILROOM_COLLECTOR_METRICS_ADDR": None,
        "MAILROOM_SENDER_METRICS_ADDR": None,
        "MAILROOM_LOG_FORMAT": "text",
    }
    with pytest.raises(
        settings.ConfigError, match="^MAILROOM_LOG_FORMAT: 'yaml' is invalid; expected one of text, json"
    ):
        settings.read({"MAILROOM_LOG_FORMAT": "yaml"}, "MAILROOM_LOG_FORMAT")


# -- JSON logs -----------------------------------------------------------------------------------
def test_json_logs_are_one_object_per_line_with_the_events_fields():
    record = logging.LogRecord("sender", logging.WARNING, __file__, 1, "rejected %s\nsecond line", ("x",), None)
    record.queue = "mailroom"  # as passed with extra=
    line = JsonFormatter("sender").format(record)
    assert "\n" not in line
    event = json.loads(line)
    assert event["level"] == "WARNING" and event["program"] == "sender" and event["logger"] == "sender"
    assert event["message"] == "rejected x\nsecond line"
    assert event["queue"] == "mailroom"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])


def test_json_logs_carry_the_traceback_as_a_field(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("collector", "info", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("collector").exception("failed")
    setup_logging("collector", "info", "text")
    event = json.loads(stream.getvalue().splitlines()[0])
    assert event["message"] == "failed" and "ValueError: boom" in event["exception"]


# -- the HTTP endpoints --------------------------------------------------------------------------
def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_one_address_serves_metrics_healthz_and_readyz():
    stats = CollectorStats()
    registry = collector_registry(stats, lambda: (7, 12.5), "mailroom", "token_insert")
    server = serve(("127.0.0.1", 0), registry, stats.heartbeat.verdict, stats.ready)
    base = f"http://127.0.0.1:{server.address[1]}"
    try:
        code, body = _get(base + "/metrics")
        assert code == 200
        assert "mailroom_collector_queue_backlog 7.0" in body
        assert "mailroom_collector_queue_oldest_age_seconds 12.5" in body
        assert "process_cpu_seconds_total" in body  # the process collector is on the program's registry
        assert _get(base + "/healthz") == (200, "ok: starting\n")
        code, body = _get(base + "/readyz")
        assert code == 503 and body.startswith("not ok: connecting")
        stats.connected = stats.listening = True
        stats.role = "active"
        assert _get(base + "/readyz")[0] == 200
        stats.disconnected()
        stats.role = "standby"
        assert _get(base + "/readyz") == (200, "ok: standing by: another collector is active on the queue\n")
        assert _get(base + "/nothing")[0] == 404
    finally:
        server.close()


def test_healthz_fails_once_the_loop_stops_turning():
    now = [100.0]
    beat = Heartbeat(clock=lambda: now[0])
    assert beat.verdict()[0]
    beat.beat()
    now[0] += 119
    assert beat.verdict()[0]
    now[0] += 2
    ok, detail = beat.verdict()
    assert not ok and "has not turned for 121 s" in detail


def _sender(tmp_path: Path) -> Sender:
    config = SendConfig(
        templates={"activation": "a", "password_recovery": "r"},
        source="noreply@example.com",
        config_set="",
        app_url="http://x",
        deadline_s=600,
        concurrency=1,
        max_send_rate=14.0,
    )
    return Sender(config, FakeProvider(), Outputs(tmp_path / "out"), Journal(tmp_path / "out" / "journal"))


def test_the_sender_is_ready_after_preflight_and_not_while_stopped_on_an_operator_fault(tmp_path):
    sender = _sender(tmp_path)
    monitor = SenderMonitor(sender)
    assert monitor.ready() == (False, "preflight has not passed")
    monitor.preflight_passed = True
    assert monitor.ready()[0]
    sender.fault = Fault("AccessDenied", "not authorized", "grant the actions")
    ok, detail = monitor.ready()
    assert not ok and "AccessDenied" in detail and "grant the actions" in detail
    registry, _ = sender_registry(sender)
    assert registry.get_sample_value("mailroom_sender_stopped", {"fault": "AccessDenied"}) == 1


# -- the dashboard -------------------------------------------------------------------------------
def _sample_names() -> set[str]:
    """Every sample name the two programs' registries can export."""
    stats = CollectorStats()
    names = {s.name for m in collector_registry(stats, lambda: (1, 1.0), "q", "c").collect() for s in m.samples}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sender = _sender(Path(tmp))
        registry, calls = sender_registry(sender)
        calls(10, 0.1, 0.05, "answered")
        names |= {s.name for m in registry.collect() for s in m.samples}
    names |= _events_sample_names()
    return names


def _events_sample_names() -> set[str]:
    """`mailroom events`' metrics, with every labelled series present and the rates (read from
    the database on scrape) given."""
    from mailroom.commands.events import EventsStats, RatesCollector
    from mailroom.rates import Rates

    stats = EventsStats()
    for outcome in ("recorded", "duplicate", "not_recorded", "unparseable"):
        stats.messages.labels(outcome).inc()
    stats.events.labels("Bounce").inc()
    stats.suppressions.labels("bounce").inc()
    rates = RatesCollector("", clock=lambda: 0.0)
    rates._cached = (0.0, [Rates("24h", 10, 9, 1, 1, 0), Rates("7d", 10, 9, 1, 1, 0)])
    stats.registry.register(rates)
    return {s.name for m in stats.registry.collect() for s in m.samples}


def test_the_dashboard_is_valid_json_and_uses_only_metrics_the_programs_export():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    used = {name for e in exprs for name in re.findall(r"\bmailroom_[a-z_]+", e)}
    exported = _sample_names()
    assert used, "the dashboard uses no mailroom metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    titles = " ".join(p["title"] for p in dashboard["panels"])
    for question in ("flowing", "behind", "stopped", "throttled"):
        assert question in titles


def test_every_metric_name_follows_the_conventions():
    for name in _sample_names():
        if name.startswith(("process_", "python_")):
            continue
        assert name.startswith(("mailroom_collector_", "mailroom_sender_", "mailroom_events_")), name
        assert not name.endswith(("_ms", "_milliseconds", "_kb")), name


# -- `mailroom status`: the sender's files -------------------------------------------------------
def _at(now: dt.datetime, seconds_ago: float) -> str:
    return (now - dt.timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_status_counts_the_last_hour_by_outcome_class_reading_only_the_end_of_the_files(tmp_path, monkeypatch):
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    out = tmp_path / "out"
    out.mkdir()
    old = [
        {"time": _at(now, 9000 - i), "action": "activation", "recipient": f"old{i}@x", "status": "Success"}
        for i in range(3000)
    ]
    rows = old + [
        {"time": _at(now, 3000), "action": "activation", "recipient": "a@x", "status": "Success"},
        {"time": _at(now, 2000), "action": "activation", "recipient": "b@x", "status": "MessageRejected"},
        {"time": _at(now, 1500), "action": "activation", "recipient": "c@x", "status": "Duplicate"},
        {"time": _at(now, 1000), "action": "password_recovery", "recipient": "d@x", "status": "DeadlinePassed"},
        {
            "time": _at(now, 900),
            "action": "activation",
            "recipient": "e@x",
            "status": "Throttling",
            "error": "deadline passed while retrying: Rate exceeded",
        },
        {"time": _at(now, 60), "action": "password_recovery", "recipient": "f@x", "status": "Success"},
        {"time": _at(now, 30), "action": "activation", "recipient": "g@x", "status": "InvalidAddress"},
    ]
    (out / "deliveries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rejects = [
        {"time": _at(now, 4000), "reason": "old", "action": "activation", "recipient": "z@x", "record": {}},
        {"time": _at(now, 500), "reason": "a line with 4 fields", "record": ["a", "b"]},
        {
            "time": _at(now, 30),
            "reason": "the address cannot be sent",
            "action": "activation",
            "recipient": "g@x",
            "status": "InvalidAddress",
            "token_ref": "abcd",
            "record": {"secret": "[redacted]"},
        },
    ]
    (out / "rejects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejects))
    monkeypatch.setattr(status, "BLOCK", 512)  # many blocks: lines cut across block ends
    read = []

    class Counting(io.FileIO):
        def read(self, size: int = -1) -> bytes:
            data = super().read(size)
            read.append(len(data))
            return data

    monkeypatch.setattr(status, "open", lambda path, mode: Counting(path, "r"), raising=False)
    got = status.output_status(out, now)
    assert 0 < sum(read) < (out / "deliveries.jsonl").stat().st_size / 10, "read more than the end of the files"
    assert got["last_hour"] == {
        "delivered": 2,
        "recipient_refused": 2,
        "deadline_passed": 2,
        "duplicate_skipped": 1,
        "input_rejected": 1,
    }
    assert got["last_delivery"]["recipient"] == "f@x"
    assert got["last_reject"]["recipient"] == "g@x" and got["last_reject"]["token_ref"] == "abcd"
    assert "record" not in got["last_reject"]
    assert got["journal"] == {"unfinished": 0, "by_action": {}, "oldest_read_at": None, "segments": 0}


def test_tail_lines_reads_every_line_backwards_whatever_the_block_size(tmp_path, monkeypatch):
    path = tmp_path / "f.jsonl"
    lines = [f'{{"n": {i}, "pad": "{"x" * (i % 37)}"}}' for i in range(500)]
    path.write_text("\n".join(lines) + "\n")
    for block in (7, 64, 1000, 1 << 16):
        monkeypatch.setattr(status, "BLOCK", block)
        assert [raw.decode() for raw in status.tail_lines(path)] == lines[::-1]


def _record(i: int, action: Action = ACTIVATION) -> Record:
    return Record(action, f"u{i}@example.com", f"u{i}", f"signed-secret-{i}", "12345")


def test_status_reads_the_journal_as_the_sender_does_without_changing_it(tmp_path):
    directory = tmp_path / "journal"
    journal = Journal(directory, rotate_bytes=2000)  # compacts often: several generations of segments
    journal.recover()
    lines = []
    for n in range(30):
        line_id = journal.new_line_id()
        records = [_record(10 * n + i, (ACTIVATION, PASSWORD_RECOVERY)[(n + i) % 2]) for i in range(5)]
        lines.append((line_id, records))
        journal.append_lines([(line_id, 1_000_000.0 + n, records)])
    for n, (line_id, records) in enumerate(lines):
        if n % 3 == 0:
            journal.finished([(line_id, i, r.secret) for i, r in enumerate(records)], [])
        elif n % 3 == 1:
            journal.finished([(line_id, 0, records[0].secret)], [(line_id, 4)])
    expected = journal.unfinished_count()
    journal.close()
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    with open(max(directory.glob("seg-*.jsonl")), "ab") as f:
        f.write(b'{"k":"D","id":"torn')  # a crash mid-write
    got = status.journal_status(directory)
    assert got["unfinished"] == expected == 10 * 3 + 10 * 5
    assert sum(got["by_action"].values()) == expected
    assert got["oldest_read_at"] == "1970-01-12T13:46:41.000Z"  # line 1 (line 0 is finished)
    assert {p.name for p in directory.iterdir()} == set(before), "status changed the journal"
    assert "signed-secret" not in json.dumps(got)
