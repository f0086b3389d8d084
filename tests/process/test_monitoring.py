"""Observability of the real programs: metrics and health endpoints scraped while `collector |
sender` runs (against moto_server, and against bench/fake_ses.py for an operator fault),
`mailroom status` on a known database and output folder, and logs that never show a secret.

Every wait is on an observable event (a scrape, a row, a log line, an exit), with a generous
overall timeout as a safety net only.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from collector_helpers import CollectorProcess, add_accounts, collector_env
from conftest import FAKE_AWS_ENV, TEST_KEY_HEX, _free_port, pg_connect, prepare_moto_ses, script
from prometheus_client.parser import text_string_to_metric_families
from test_pipeline import RunningPipeline, pipeline_env
from test_sender_process import FakeSes, jsonl, record, sender_env

from bench.fake_ses import Faults
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.wire import Record, encode_line
from sender.journal import Journal
from sender.outputs import utc_now
from sender.retry import EXIT_OPERATOR_FAULT

WAIT_S = 60.0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    code, body = get(base + "/metrics")
    assert code == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of `name` over every label set that includes `labels`."""
    return sum(
        v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == w for k, w in labels.items())
    )


def wait_for(condition, what: str, alive=lambda: True, timeout: float = WAIT_S, logs=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if not alive():
            pytest.fail(f"a process died while waiting for {what}\n{logs()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}")
        time.sleep(0.05)


def scrape_if_up(base: str) -> dict:
    """`scrape`, or nothing while the program has not started serving yet."""
    try:
        return scrape(base)
    except (urllib.error.URLError, ConnectionError, OSError):
        return {}


def ready(base: str) -> bool:
    try:
        return get(base + "/readyz")[0] == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def queued(database_url: str) -> int:
    with pg_connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM job_tokens").fetchone()[0]


# -- the pipeline, scraped during and after a run -------------------------------------------------
def test_metrics_of_a_run_equal_what_deliveries_jsonl_and_the_database_say(
    database_url, db, base_env, tmp_path, moto_server
):
    collector_url = f"http://127.0.0.1:{_free_port()}"
    sender_url = f"http://127.0.0.1:{_free_port()}"
    env = {
        **pipeline_env(base_env, database_url, tmp_path),
        **FAKE_AWS_ENV,
        "MAILROOM_DEBUG": "false",
        "AWS_ENDPOINT_URL_SES": moto_server,
        "MAILROOM_COLLECTOR_METRICS_ADDR": collector_url.removeprefix("http://"),
        "MAILROOM_SENDER_METRICS_ADDR": sender_url.removeprefix("http://"),
    }
    prepare_moto_ses(env, moto_server, tmp_path, "noreply@example.com")
    db.execute("SELECT mailroom_register_queue('mailroom', 'token_insert')")
    add_accounts(db, "before", 40)  # a backlog waiting at start
    pipeline = RunningPipeline(env, tmp_path)
    try:
        wait_for(lambda: ready(collector_url) and ready(sender_url), "both /readyz", pipeline.alive, logs=pipeline.logs)
        during = [(scrape(collector_url), scrape(sender_url))]
        add_accounts(db, "during", 60)  # while it runs
        outputs = tmp_path / "output" / "deliveries.jsonl"

        def all_delivered() -> bool:
            during.append((scrape(collector_url), scrape(sender_url)))
            return total(during[-1][1], "mailroom_sender_outcomes_total", outcome="delivered") >= 100

        wait_for(all_delivered, "100 deliveries in the sender's metrics", pipeline.alive, logs=pipeline.logs)
        wait_for(
            lambda: value(scrape(collector_url), "mailroom_collector_queue_backlog") == 0,
            "the backlog gauge back to 0",
            pipeline.alive,
            logs=pipeline.logs,
        )
        c, s = scrape(collector_url), scrape(sender_url)
        health = (get(collector_url + "/healthz")[0], get(sender_url + "/healthz")[0])
        assert pipeline.sigterm_both() == (0, 0), pipeline.logs()
    finally:
        pipeline.kill()

    rows = jsonl(outputs)
    delivered = [r for r in rows if r["status"] == "Success"]
    assert len(delivered) == len({r["recipient"] for r in delivered}) == 100
    assert queued(database_url) == 0
    assert health == (200, 200)
    # the collector
    assert value(c, "mailroom_collector_tokens_emitted_total") == 100
    assert value(c, "mailroom_collector_queue_backlog") == 0
    assert value(c, "mailroom_collector_queue_oldest_age_seconds") == 0
    assert 10 <= value(c, "mailroom_collector_lines_written_total") <= 100
    assert value(c, "mailroom_collector_output_bytes_total") > 100 * 50
    assert total(c, "mailroom_collector_tokens_skipped_total") == 0
    assert value(c, "mailroom_collector_active") == value(c, "mailroom_collector_connected") == 1
    assert value(c, "mailroom_collector_reconnects_total") == 0
    assert value(c, "mailroom_collector_backpressure_wait_seconds_total") > 0
    # the sender
    assert value(s, "mailroom_sender_records_read_total") == 100
    assert total(s, "mailroom_sender_outcomes_total", outcome="delivered") == 100
    assert value(s, "mailroom_sender_outcomes_total", outcome="delivered", action="activation") == 100
    for other in ("retried", "recipient_refused", "operator_fault", "deadline_passed", "duplicate_skipped"):
        assert total(s, "mailroom_sender_outcomes_total", outcome=other) == 0, other
    calls = value(s, "mailroom_sender_provider_calls_total", provider="ses", result="answered")
    assert calls >= 2 and total(s, "mailroom_sender_provider_calls_total") == calls
    assert value(s, "mailroom_sender_provider_call_duration_seconds_count", provider="ses") == calls
    assert value(s, "mailroom_sender_call_destinations_sum", provider="ses") == 100
    assert value(s, "mailroom_sender_records_in_hand") == 0
    assert value(s, "mailroom_sender_journal_unfinished_records") == 0
    assert value(s, "mailroom_sender_max_send_rate") == 500
    assert value(s, "mailroom_sender_stopped", fault="") == 0
    # scraped during the run: counters only ever grew towards the final values
    counters = [
        (0, "mailroom_collector_tokens_emitted_total"),
        (1, "mailroom_sender_records_read_total"),
    ]
    for which, name in counters:
        seen = [value(pair[which], name) for pair in during] + [value((c, s)[which], name)]
        assert seen == sorted(seen), (name, seen)
        assert seen[0] < 100, f"no scrape saw {name} before the end of the run"


# -- an operator fault --------------------------------------------------------------------------
def test_an_operator_fault_sets_the_stopped_gauge_and_fails_readyz_before_the_sender_exits(base_env, tmp_path):
    out = tmp_path / "out"
    url = f"http://127.0.0.1:{_free_port()}"
    hold = threading.Event()
    faults = Faults(script=[(403, "AccessDenied", "not authorized to perform ses:SendBulkTemplatedEmail")])
    faults.script_after, faults.hold = 2, hold  # the fault comes while another call is still in flight
    records = [record(i) for i in range(200)]
    with FakeSes(0.0, faults) as ses:
        env = sender_env(
            base_env,
            out,
            ses.url,
            MAILROOM_SENDER_METRICS_ADDR=url.removeprefix("http://"),
            MAILROOM_SES_CONCURRENCY="4",
        )
        proc = subprocess.Popen(
            [script("sender")], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        try:
            assert proc.stdin is not None
            proc.stdin.write(b"".join(encode_line(records[i : i + 50]) for i in range(0, 200, 50)))
            proc.stdin.close()
            wait_for(
                lambda: total(scrape_if_up(url), "mailroom_sender_stopped", fault="AccessDenied") == 1,
                "the stopped gauge",
                lambda: proc.poll() is None,
            )
            code, body = get(url + "/readyz")
            still_running = proc.poll() is None
            samples = scrape(url)
        finally:
            hold.set()
        status = proc.wait(timeout=WAIT_S)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert still_running, "the sender had exited before the scrape: the test proved nothing"
    assert code == 503 and "operator fault" in body and "AccessDenied" in body
    assert value(samples, "mailroom_sender_stopped", fault="AccessDenied") == 1
    assert total(samples, "mailroom_sender_outcomes_total", outcome="operator_fault") >= 50
    assert value(samples, "mailroom_sender_provider_calls_total", provider="ses", result="operator_fault") == 1
    assert status == EXIT_OPERATOR_FAULT, stderr
    assert jsonl(out / "rejects.jsonl") == []


# -- standby, and `mailroom status` ----------------------------------------------------------------
def _collector_sessions(db: psycopg.Connection) -> dict[int, str | None]:
    """pid -> client address of every collector session, as pg_stat_activity shows them."""
    rows = db.execute(
        "SELECT pid, host(client_addr) FROM pg_stat_activity "
        "WHERE application_name = 'mailroom-collector' AND datname = current_database()"
    ).fetchall()
    return dict(rows)


def _shown(addr: str | None) -> str:
    """How `mailroom status` shows a client address."""
    return "a local socket" if addr is None else f"{addr}:"


def _write_sender_output(out: Path) -> None:
    """Known deliveries and rejects (in the sender's own row format), and a journal with 3
    unfinished records."""
    out.mkdir(parents=True)
    now = utc_now()
    deliveries = [
        {"time": now, "action": "activation", "recipient": f"d{i}@example.com", "status": "Success", "attempts": 1}
        for i in range(7)
    ]
    deliveries += [
        {"time": now, "action": "activation", "recipient": "dup@example.com", "status": "Duplicate"},
        {"time": now, "action": "password_recovery", "recipient": "late@example.com", "status": "DeadlinePassed"},
        {"time": now, "action": "activation", "recipient": "bad@example.com", "status": "MessageRejected"},
        {"time": "2020-01-01T00:00:00.000Z", "action": "activation", "recipient": "x@example.com", "status": "Success"},
    ]
    deliveries.insert(0, deliveries.pop())  # an older row first: not counted in "last hour"
    (out / "deliveries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in deliveries))
    rejects = [
        {"time": now, "reason": "a line with 4 fields", "record": ["a", "b", "c", "d"]},
        {
            "time": now,
            "reason": "ses refused this recipient",
            "action": "activation",
            "recipient": "bad@example.com",
            "status": "MessageRejected",
            "token_ref": "ab12cd34",
            "record": {"secret": "[redacted]"},
        },
    ]
    (out / "rejects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejects))
    journal = Journal(out / "journal")
    journal.recover()
    line_id = journal.new_line_id()
    records = [
        Record((ACTIVATION, PASSWORD_RECOVERY)[i % 2], f"j{i}@example.com", f"j{i}", f"journal-secret-{i}", "00000")
        for i in range(4)
    ]
    journal.append_lines([(line_id, time.time(), records)])
    journal.finished([(line_id, 0, records[0].secret)], [])
    journal.close()


def test_standby_is_ready_and_mailroom_status_shows_backlog_collectors_and_the_senders_files(
    database_url, db, base_env, tmp_path
):
    db.execute("SELECT mailroom_register_queue('mailroom', 'token_insert')")
    add_accounts(db, "waiting", 25)  # queued for 'mailroom', which no collector reads here
    urls = [f"http://127.0.0.1:{_free_port()}" for _ in range(2)]
    out = tmp_path / "output"
    _write_sender_output(out)
    env = collector_env(base_env, database_url, TEST_KEY_HEX, MAILROOM_QUEUE_NAME="ops")
    active = CollectorProcess(
        script("collector"), {**env, "MAILROOM_COLLECTOR_METRICS_ADDR": urls[0][7:]}, tmp_path / "active.log"
    )
    standby = None
    try:
        active.records(25, timeout=WAIT_S)  # 'ops' is new: registering it backfills the 25 tokens
        wait_for(lambda: ready(urls[0]), "the active collector ready")
        [(active_pid, active_addr)] = _collector_sessions(db).items()
        standby = CollectorProcess(
            script("collector"), {**env, "MAILROOM_COLLECTOR_METRICS_ADDR": urls[1][7:]}, tmp_path / "standby.log"
        )
        standby.wait_for_log("standing by")
        code, body = get(urls[1] + "/readyz")
        assert (code, body) == (200, "ok: standing by: another collector is active on the queue\n")
        assert value(scrape(urls[1]), "mailroom_collector_active") == 0
        assert value(scrape(urls[0]), "mailroom_collector_active") == 1
        [standby_pid] = [p for p in _collector_sessions(db) if p != active_pid]

        status_env = {**base_env, "MAILROOM_DATABASE_URL": database_url, "MAILROOM_SES_OUTPUT_PATH": str(out)}
        as_json = subprocess.run(
            [script("mailroom"), "status", "--json"],
            env=status_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        as_text = subprocess.run(
            [script("mailroom"), "status"], env=status_env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        active.stop()
        if standby is not None:
            standby.stop()
    assert as_json.returncode == 0, as_json.stderr
    got = json.loads(as_json.stdout)
    queues = {q["name"]: q for q in got["queues"]}
    assert queues["mailroom"]["backlog"] == 25 and queues["mailroom"]["oldest_age_s"] >= 0
    assert queues["ops"]["backlog"] == 0 and queues["ops"]["oldest_age_s"] is None
    assert queues["mailroom"]["by_action"] == {"activation": 25} and queues["ops"]["by_action"] == {}
    [collector] = got["active_collectors"]
    assert (collector["queue"], collector["pid"], collector["client_addr"]) == ("ops", active_pid, active_addr)
    assert [s["pid"] for s in got["standby_collectors"]] == [standby_pid]
    sender = got["sender"]
    assert sender["last_hour"] == {
        "delivered": 7,
        "recipient_refused": 1,
        "deadline_passed": 1,
        "duplicate_skipped": 1,
        "input_rejected": 1,
    }
    assert sender["last_delivery"]["recipient"] == "d6@example.com"
    assert sender["last_reject"]["recipient"] == "bad@example.com"
    assert sender["journal"]["unfinished"] == 3
    assert sender["journal"]["by_action"] == {"activation": 1, "password_recovery": 2}
    assert "journal-secret" not in as_json.stdout + as_text.stdout

    assert as_text.returncode == 0, as_text.stderr
    text = as_text.stdout
    assert "mailroom (channel token_insert): 25 queued (25 activation), oldest queued" in text
    assert f"ops: active pid {active_pid} from {_shown(active_addr)}" in text
    assert f"standby pid {standby_pid} from {_shown(active_addr)}" in text
    assert "mailroom: ✗ no active collector" in text
    assert "last delivery: " in text and "d6@example.com" in text
    assert "bad@example.com: ses refused this recipient (MessageRejected)" in text
    assert (
        "last hour:     delivered 7, recipient refused 1, deadline passed 1, duplicate skipped 1, input rejected 1"
        in text
    )
    assert "journal:       3 unfinished (activation 1, password_recovery 2)" in text


def test_mailroom_status_says_when_the_database_cannot_be_read_and_still_shows_the_senders_files(base_env, tmp_path):
    out = tmp_path / "output"
    _write_sender_output(out)
    port = _free_port()  # nothing listens there
    env = {
        **base_env,
        "MAILROOM_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/none",
        "MAILROOM_SES_OUTPUT_PATH": str(out),
    }
    done = subprocess.run(
        [script("mailroom"), "status"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "✗ cannot read the database:" in done.stdout
    assert "journal:       3 unfinished" in done.stdout


# -- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize("program", ["collector", "sender"])
def test_a_bad_or_busy_metrics_address_exits_2_with_one_line_naming_the_variable(program, base_env, tmp_path):
    variable = f"MAILROOM_{program.upper()}_METRICS_ADDR"
    env = {
        **base_env,
        "MAILROOM_SECRET_KEY": TEST_KEY_HEX,
        "MAILROOM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",  # required; never reached
        "MAILROOM_DEBUG": "true",
        "MAILROOM_SES_OUTPUT_PATH": str(tmp_path / "out"),
    }
    bad = subprocess.run(
        [script(program)], env={**env, variable: "localhost"}, capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        (
            f"{program}: invalid configuration: {variable}: 'localhost' is invalid; expected host:port such as "
            "127.0.0.1:9101, 0.0.0.0:9101 or [::]:9101, or empty for off"
        )
    ]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [script(program)],
            env={**env, variable: f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert taken.returncode == 2
    assert taken.stderr.splitlines() == [
        f"{program}: invalid configuration: {variable}: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], taken.stderr


# -- logs never show a secret ----------------------------------------------------------------------
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_signed_token_key_or_password_reaches_the_logs_in_either_format(
    log_format, database_url, db, base_env, tmp_path
):
    password = "hunter2-must-not-be-logged"
    env = {
        **pipeline_env(base_env, database_url, tmp_path),
        "MAILROOM_DATABASE_URL": f"{database_url} password={password}",  # trust auth: accepted, ignored
        "MAILROOM_DEBUG": "true",
        "MAILROOM_LOG_LEVEL": "debug",
        "MAILROOM_LOG_FORMAT": log_format,
    }
    pipeline = RunningPipeline(env, tmp_path)
    try:
        add_accounts(db, "secretive", 30)
        emails = wait_for(
            lambda: (found := pipeline.debug_emails()) and len(found) >= 30 and found,
            "30 emails printed",
            pipeline.alive,
            logs=pipeline.logs,
        )
        assert pipeline.sigterm_both() == (0, 0), pipeline.logs()
    finally:
        pipeline.kill()
    tokens = [data["secret"] for _, _, data in emails]
    assert len(set(tokens)) == 30 and all(len(t) > 40 for t in tokens)
    logs = pipeline.collector_log.read_text() + pipeline.sender_log.read_text()
    assert "queued tokens" in logs and "done: 30 read" in logs, logs  # the logs did say what happened
    for token in tokens:
        assert token not in logs
    assert TEST_KEY_HEX not in logs and TEST_KEY_HEX.upper() not in logs
    assert password not in logs
    raw = {bytes(x) for (x,) in db.execute("SELECT secret FROM tokens WHERE account IN (SELECT id FROM accounts)")}
    for secret in raw:
        assert secret.hex() not in logs
    if log_format == "json":
        events = [json.loads(line) for line in logs.splitlines()]
        assert Counter(e["program"] for e in events).keys() == {"collector", "sender"}
        assert all({"time", "level", "program", "message"} <= e.keys() for e in events)
        drained = [e for e in events if e["message"].startswith("read ") and "queued tokens" in e["message"]]
        assert sum(e["emitted"] for e in drained) == 30  # the event's own fields
        [done] = [e for e in events if e["message"].startswith("done: ")]
        assert (done["read"], done["delivered"]) == (30, 30)
