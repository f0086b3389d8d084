"""The `collector` console script as a process, against a real PostgreSQL."""

from __future__ import annotations

import array
import fcntl
import signal
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from collector_helpers import (
    CollectorProcess,
    add_accounts,
    backlog,
    collector_env,
    terminate_collector_backends,
    wait_for_empty_backlog,
)
from conftest import pg_connect, script

from mailroom import settings
from mailroom.actions import ACTIVATION
from mailroom.signing import verify
from mailroom.wire import decode_line

StartCollector = Callable[..., CollectorProcess]


@pytest.fixture
def start_collector(
    tmp_path: Path, base_env: dict[str, str], database_url: str, secret_key_hex: str
) -> Iterator[StartCollector]:
    """Start collectors (env overrides as keywords); every one is stopped at teardown."""
    started: list[CollectorProcess] = []

    def start(*args: str, read_stdout: bool = True, **overrides: str) -> CollectorProcess:
        env = collector_env(base_env, database_url, secret_key_hex, **overrides)
        proc = CollectorProcess(
            script("collector"), env, tmp_path / f"collector{len(started)}.log", *args, read_stdout=read_stdout
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def _active(proc: CollectorProcess) -> CollectorProcess:
    """Wait until it is active and its start drain is done: what the test inserts next is
    read on a notification (or the health check), never by the start drain."""
    proc.wait_until_ready()
    return proc


def test_a_transaction_of_2000_accounts_is_fully_emitted_shortly_after_the_batch_timeout(
    start_collector: StartCollector, db: psycopg.Connection
) -> None:
    collector = _active(start_collector(MAILROOM_BATCH_TIMEOUT="500", MAILROOM_BATCH_LIMIT="10"))
    with db.transaction():
        logins = add_accounts(db, "bulk", 2000)
    records = collector.records(2000, timeout=0.5 + 5.0)
    assert sorted(r.login for r in records) == sorted(logins)
    wait_for_empty_backlog(db)
    assert collector.lines_after_stop() == []  # each token once


def test_a_token_committed_after_a_higher_one_was_emitted_is_emitted_too(
    start_collector: StartCollector, database_url: str, db: psycopg.Connection
) -> None:
    collector = _active(start_collector())
    with pg_connect(database_url) as a, pg_connect(database_url) as b:
        a.execute("INSERT INTO accounts (email, login) VALUES ('early@example.com', 'early')")  # lower id, open
        b.execute("INSERT INTO accounts (email, login) VALUES ('late@example.com', 'late')")
        b.commit()
        assert [r.login for r in collector.records(1, timeout=10)] == ["late"]
        ids = db.execute("SELECT login FROM accounts").fetchall()
        assert ids == [("late",)]  # A's row is not visible yet
        a.commit()
        assert [r.login for r in collector.records(1, timeout=10)] == ["early"]
    early_id, late_id = (
        db.execute(
            "SELECT t.id FROM tokens t JOIN accounts a ON a.id = t.account WHERE a.login = %s", (login,)
        ).fetchone()[0]
        for login in ("early", "late")
    )
    assert early_id < late_id  # the case an id cursor gets wrong


def test_lines_hold_at_most_batch_limit_records_one_line_per_chunk(
    start_collector: StartCollector, db: psycopg.Connection
) -> None:
    collector = _active(start_collector(MAILROOM_BATCH_LIMIT="7"))
    logins = add_accounts(db, "chunk", 50)
    lines = [collector.next_line(10) for _ in range(8)]  # ceil(50 / 7)
    assert all(line is not None for line in lines)
    counts = [len(decode_line(line)[0]) for line in lines if line is not None]
    assert counts == [7] * 7 + [1]
    wait_for_empty_backlog(db)
    assert collector.lines_after_stop() == []
    assert len(logins) == sum(counts)


def test_one_notification_waits_for_the_batch_timeout(start_collector: StartCollector, db: psycopg.Connection) -> None:
    collector = _active(start_collector(MAILROOM_BATCH_TIMEOUT="1500", MAILROOM_BATCH_LIMIT="100"))
    add_accounts(db, "lone", 1)
    assert [r.login for r in collector.records(1, timeout=10)] == ["lone1"]
    # Read because the batch timeout ran out (one notification of 100), not for another reason.
    assert collector.reads(1) == [(1, "1 notification, the batch timeout")]


def test_batch_limit_notifications_trigger_a_read_before_the_timeout(
    start_collector: StartCollector, db: psycopg.Connection
) -> None:
    collector = _active(
        start_collector(MAILROOM_BATCH_TIMEOUT="60000", MAILROOM_HEALTHCHECK_INTERVAL="60000", MAILROOM_BATCH_LIMIT="3")
    )
    add_accounts(db, "one", 1)
    add_accounts(db, "two", 1)
    add_accounts(db, "three", 1)
    records = collector.records(3, timeout=10)  # well before the 60 s timeout
    assert sorted(r.login for r in records) == ["one1", "three1", "two1"]
    # One read, made when the third notification arrived: not after two, not on the timeout.
    assert collector.reads(1) == [(3, "3 notifications, the batch limit")]


def test_logins_and_emails_with_commas_quotes_and_unicode_round_trip(
    start_collector: StartCollector, db: psycopg.Connection, secret_key_hex: str
) -> None:
    collector = _active(start_collector())
    awkward = [
        ('"a,b"@example.com', "comma,login"),  # a quoted local part: quotes and a comma on the wire
        ("q@example.com", 'say "hi"'),
        ("sep@example.com", "line\u2028separator,\u2029"),  # not control characters: allowed
        ("ü@exämple.com", "Zoë 山田 🙂"),
        ("plain@example.com", '"quoted"'),
    ]
    with db.transaction():
        for email, login in awkward:
            db.execute("INSERT INTO accounts (email, login) VALUES (%s, %s)", (email, login))
    records = collector.records(len(awkward), timeout=10)
    assert [(r.email, r.login) for r in records] == awkward
    key = bytes.fromhex(secret_key_hex)
    for record in records:
        assert record.action is ACTIVATION
        verify(key, record.secret, ACTIVATION)


def test_an_account_with_a_line_break_is_never_written_into_a_line_and_its_neighbours_are(
    start_collector: StartCollector, db: psycopg.Connection
) -> None:
    # Only possible where the schema's constraint was bypassed (here: dropped).
    db.execute("ALTER TABLE accounts DROP CONSTRAINT accounts_login_has_no_control_chars")
    collector = _active(start_collector())
    with db.transaction():
        for login in ("before", "line\nbreak", "after"):
            db.execute("INSERT INTO accounts (email, login) VALUES (%s, %s)", (f"{login[:4]}@example.com", login))
    records = collector.records(2, timeout=10)  # each line decodes with no reject (checked there)
    assert [r.login for r in records] == ["before", "after"]
    bad_token = db.execute("SELECT t.id FROM tokens t JOIN accounts a ON a.id = t.account WHERE a.login LIKE 'line%'")
    collector.wait_for_log(
        f"token {bad_token.fetchone()[0]} not emitted: the account's login holds a control character"
    )
    assert "Traceback" not in collector.log()


def test_a_closed_stdout_exits_non_zero_and_the_next_collector_emits_every_token(
    start_collector: StartCollector, db: psycopg.Connection
) -> None:
    gone = start_collector(read_stdout=False)
    gone.wait_until_ready()
    gone.close_stdout()
    logins = add_accounts(db, "kept", 25)
    status = gone.wait(timeout=15)
    log = gone.log()
    assert status != 0
    assert "the reader of stdout is gone" in log
    assert "Exception ignored" not in log and "Traceback" not in log
    assert backlog(db) == 25  # rolled back: nothing claimed was lost
    successor = start_collector("--drain")
    records = successor.records(25, timeout=15)
    assert sorted(r.login for r in records) == sorted(logins)
    assert successor.wait(timeout=10) == 0


def test_a_terminated_backend_makes_it_reconnect_and_go_on(
    start_collector: StartCollector, db: psycopg.Connection
) -> None:
    collector = _active(start_collector())
    add_accounts(db, "before", 3)
    assert len(collector.records(3, timeout=10)) == 3
    # Read is not committed yet: cut the connection only once the chunk's commit has emptied
    # the queue, or the "before" records come again after the reconnect (at-least-once).
    wait_for_empty_backlog(db)
    assert terminate_collector_backends(db) == 1
    collector.wait_until_ready(count=2)
    assert "reconnecting to" in collector.log()
    logins = add_accounts(db, "after", 5)
    assert sorted(r.login for r in collector.records(5, timeout=10)) == sorted(logins)
    assert collector.proc.poll() is None


def test_tokens_committed_while_it_is_disconnected_are_drained_on_reconnect(
    start_collector: StartCollector, db: psycopg.Connection, pg_admin_url: str
) -> None:
    # Batch timeout and health check of a minute: within the test's deadline the tokens can
    # only come from the drain that follows every (re)connect, not from a notification.
    collector = _active(start_collector(MAILROOM_BATCH_TIMEOUT="60000", MAILROOM_HEALTHCHECK_INTERVAL="60000"))
    name = db.info.dbname
    admin = psycopg.connect(pg_admin_url, autocommit=True)
    admin.execute(
        psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(psycopg.sql.Identifier(name))
    )
    try:
        assert terminate_collector_backends(db) == 1
        collector.wait_for_log("reconnecting to")
        logins = add_accounts(db, "gap", 4)  # its NOTIFY reaches nobody
    finally:
        admin.execute(
            psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(psycopg.sql.Identifier(name))
        )
        admin.close()
    assert sorted(r.login for r in collector.records(4, timeout=20)) == sorted(logins)
    assert collector.reads(1) == [(4, "start")]  # read by the drain that follows the reconnect


def test_the_health_check_reads_the_queue_when_no_notification_comes(
    start_collector: StartCollector, db: psycopg.Connection
) -> None:
    collector = _active(start_collector(MAILROOM_HEALTHCHECK_INTERVAL="1000"))
    with db.transaction():  # a queued token without a NOTIFY (triggers off for this transaction)
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("INSERT INTO accounts (email, login) VALUES ('silent@example.com', 'silent')")
        db.execute(  # no trigger: no expiry from the action's lifetime either
            "INSERT INTO tokens (account, action, expires_at) SELECT id, 'activation', now() + interval '15 minutes' "
            "FROM accounts"
        )
        db.execute("INSERT INTO job_tokens (job, token) SELECT 'mailroom', id FROM tokens")
    assert [r.login for r in collector.records(1, timeout=10)] == ["silent"]
    assert collector.reads(1) == [(1, "health check")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_exits_0_promptly(start_collector: StartCollector, signum: int) -> None:
    collector = _active(start_collector(MAILROOM_BATCH_TIMEOUT="60000", MAILROOM_HEALTHCHECK_INTERVAL="60000"))
    collector.signal(signum)
    assert collector.wait(timeout=3) == 0
    assert "stopped by" in collector.log()


def test_a_database_that_is_down_at_start_is_retried_until_stopped(start_collector: StartCollector) -> None:
    collector = start_collector(MAILROOM_DATABASE_URL="postgresql://postgres:hunter2@127.0.0.1:1/nowhere")
    log = collector.wait_for_log("attempt 3 in", timeout=30)
    assert collector.proc.poll() is None
    assert "127.0.0.1:1/nowhere" in log and "hunter2" not in log
    collector.signal(signal.SIGTERM)
    assert collector.wait(timeout=3) == 0


def test_it_starts_emitting_once_the_database_accepts_connections(
    start_collector: StartCollector, pg_admin_url: str, db: psycopg.Connection
) -> None:
    # The database refuses connections at start (as during a restore or maintenance): the
    # collector keeps retrying, then drains what accumulated. (A database that does not
    # exist at all exits 2 instead: tests/process/test_configuration_errors.py.)
    logins = add_accounts(db, "up", 3)
    name = psycopg.sql.Identifier(db.info.dbname)
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(name))
        try:
            collector = start_collector()
            collector.wait_for_log("attempt 1 in", timeout=15)
            assert "not currently accepting connections" in collector.log()
        finally:
            admin.execute(psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(name))
    assert sorted(r.login for r in collector.records(3, timeout=40)) == sorted(logins)
    assert collector.reads(1) == [(3, "start")]


def test_stdout_carries_only_batch_lines_and_the_log_no_secrets(
    start_collector: StartCollector, db: psycopg.Connection, secret_key_hex: str
) -> None:
    collector = _active(start_collector(MAILROOM_LOG_LEVEL="debug"))
    add_accounts(db, "quiet", 3)
    records = collector.records(3, timeout=10)
    collector.signal(signal.SIGTERM)
    assert collector.wait(timeout=3) == 0
    log = collector.log()
    assert secret_key_hex not in log and secret_key_hex.upper() not in log
    for record in records:
        assert record.secret not in log and record.secret[:20] not in log


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILROOM_SECRET_KEY", "abc123"),
        ("MAILROOM_SECRET_KEY", "zz" * 32),
        ("MAILROOM_BATCH_LIMIT", "0"),
        ("MAILROOM_BATCH_LIMIT", "ten"),
        ("MAILROOM_BATCH_TIMEOUT", "-5"),
        ("MAILROOM_HEALTHCHECK_INTERVAL", "100"),  # less than MAILROOM_BATCH_TIMEOUT (200 in these tests)
        ("MAILROOM_HEALTHCHECK_INTERVAL", "0"),
        ("MAILROOM_CHANNEL_NAME", "bad channel; DROP TABLE tokens"),
        ("MAILROOM_QUEUE_NAME", ""),
        ("MAILROOM_LOG_LEVEL", "loud"),
    ],
)
def test_invalid_settings_exit_2_naming_the_variable(
    base_env: dict[str, str], database_url: str, secret_key_hex: str, variable: str, value: str
) -> None:
    env = collector_env(base_env, database_url, secret_key_hex, **{variable: value})
    done = subprocess.run([script("collector")], env=env, capture_output=True, timeout=30, check=False)
    assert done.returncode == settings.CONFIG_EXIT_STATUS
    assert done.stdout == b""
    assert variable in done.stderr.decode()
    if variable == "MAILROOM_SECRET_KEY":
        assert value not in done.stderr.decode()


def test_a_missing_secret_key_exits_2(base_env: dict[str, str], database_url: str) -> None:
    env = dict(base_env, MAILROOM_DATABASE_URL=database_url)
    done = subprocess.run([script("collector")], env=env, capture_output=True, timeout=30, check=False)
    assert done.returncode == settings.CONFIG_EXIT_STATUS
    assert "MAILROOM_SECRET_KEY" in done.stderr.decode()


def test_help_lists_every_setting_and_the_drain_flag(base_env: dict[str, str]) -> None:
    done = subprocess.run([script("collector"), "--help"], env=base_env, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0
    text = done.stdout.decode()
    for name in settings.COLLECTOR_VARIABLES:
        assert name in text
    assert "--drain" in text


def test_sigterm_while_the_reader_holds_back_rolls_the_chunk_back_and_exits_0(
    start_collector: StartCollector, db: psycopg.Connection
) -> None:
    # The reader keeps the pipe open but takes nothing: the collector may not commit the
    # line it wrote, and a stop signal must still end it promptly, with the chunk rolled back.
    collector = _active(start_collector(read_stdout=False))
    add_accounts(db, "held", 3)
    deadline = time.monotonic() + 10
    assert collector.proc.stdout is not None
    queued = array.array("i", [0])
    while queued[0] == 0:  # wait until its line is in the pipe
        assert time.monotonic() < deadline, "the collector never wrote its line"
        time.sleep(0.05)
        fcntl.ioctl(collector.proc.stdout.fileno(), termios.FIONREAD, queued, True)
    assert backlog(db) == 3  # written, not committed
    collector.proc.send_signal(signal.SIGTERM)
    assert collector.proc.wait(timeout=5) == 0
    assert backlog(db) == 3  # never committed, rolled back: the next collector emits them
    assert "rolled back its chunk" in collector.log()
