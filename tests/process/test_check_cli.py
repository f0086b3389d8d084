"""`mailroom check` as a process: one ✓/✗ line per check, exit 0 only when all pass."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import psycopg
import pytest
from conftest import pg_connect, script

from mailroom import migrate

KEY_HEX = "5f" * 32


def _check(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("mailroom"), "check", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _line(done: subprocess.CompletedProcess[str], name: str) -> str:
    found = [line for line in done.stdout.splitlines() if line[2:].startswith(name + ":")]
    assert len(found) == 1, f"no single {name!r} line in:\n{done.stdout}\n{done.stderr}"
    return found[0]


@pytest.fixture
def env(base_env: dict[str, str], database_url: str) -> dict[str, str]:
    # debug mode: the provider half is `sender --check` in debug mode (one ✓ line); the SES
    # half is tested below against the fake SES
    return {**base_env, "MAILROOM_DATABASE_URL": database_url, "MAILROOM_SECRET_KEY": KEY_HEX, "MAILROOM_DEBUG": "true"}


@pytest.fixture
def registered(db: psycopg.Connection) -> psycopg.Connection:
    db.execute("SELECT mailroom_register_queue('mailroom', 'token_insert')")
    return db


def test_a_migrated_database_with_its_queue_registered_passes_every_check(
    env: dict[str, str], registered: psycopg.Connection, tmp_path: Path
) -> None:
    done = _check(env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line[2:].split(":")[0] for line in lines] == [
        "database",
        "schema",
        "queue",
        "backlog",
        "secret key",
        "collector settings",
        "templates",
        "provider",
    ]
    assert all(line.startswith("✓ ") for line in lines)
    assert _line(done, "schema") == f"✓ schema: all {len(migrate.shipped())} migrations applied (latest " + (
        migrate.shipped()[-1] + ")"
    )
    assert _line(done, "backlog") == "✓ backlog: nothing queued on 'mailroom'"


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAILROOM_BATCH_TIMEOUT", "abc"), ("MAILROOM_RECOVERY_COOLDOWN", "xyz"), ("MAILROOM_BATCH_LIMIT", "50  # x")],
)
def test_a_collector_setting_the_collector_refuses_fails_the_check(
    env: dict[str, str], registered: psycopg.Connection, tmp_path: Path, name: str, value: str
) -> None:
    done = _check({**env, name: value}, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    line = _line(done, "collector settings")
    assert line.startswith(f"✗ collector settings: {name}: ") and f"fix: fix {name}" in line, line
    collector = subprocess.run(
        [script("collector")], env={**env, name: value}, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert collector.returncode == 2 and name in collector.stderr  # what the check foretold


def test_an_unreachable_database_is_a_failed_line_not_a_traceback(base_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        **base_env,
        "MAILROOM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
        "MAILROOM_SECRET_KEY": KEY_HEX,
    }
    done = _check(env, tmp_path)
    assert done.returncode == 1
    assert _line(done, "database").startswith("✗ database: cannot connect to 127.0.0.1:1/nothing: ")
    assert "fix: check MAILROOM_DATABASE_URL" in _line(done, "database")
    assert _line(done, "secret key").startswith("✓")  # the checks that need no database still run
    assert "Traceback" not in done.stderr


def test_a_database_that_was_never_migrated_names_the_missing_migrations(
    base_env: dict[str, str], empty_database_url: str, tmp_path: Path
) -> None:
    env = {**base_env, "MAILROOM_DATABASE_URL": empty_database_url, "MAILROOM_SECRET_KEY": KEY_HEX}
    done = _check(env, tmp_path)
    assert done.returncode == 1
    shipped = migrate.shipped()
    assert _line(done, "schema") == (
        f"✗ schema: {len(shipped)} of {len(shipped)} migrations not applied: {', '.join(shipped)}"
        " — fix: run `mailroom migrate`"
    )
    assert _line(done, "queue") == "✗ queue: the database has no mailroom tables — fix: run `mailroom migrate`"
    with pg_connect(empty_database_url) as conn:  # it only looked: no yoyo table, nothing created
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_a_database_behind_by_one_migration_names_it(
    env: dict[str, str], registered: psycopg.Connection, tmp_path: Path
) -> None:
    rolled = subprocess.run(
        [script("mailroom"), "migrate", "--rollback"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rolled.returncode == 0, rolled.stderr
    done = _check(env, tmp_path)
    assert done.returncode == 1
    shipped = migrate.shipped()
    assert _line(done, "schema") == (
        f"✗ schema: 1 of {len(shipped)} migrations not applied: {shipped[-1]} — fix: run `mailroom migrate`"
    )


def test_a_queue_that_is_not_registered_fails_with_how_to_register_it(
    env: dict[str, str], db: psycopg.Connection, tmp_path: Path
) -> None:
    done = _check(env, tmp_path)
    assert done.returncode == 1
    line = _line(done, "queue")
    assert line.startswith(
        "✗ queue: queue 'mailroom' (MAILROOM_QUEUE_NAME) is not registered — fix: start the collector"
    )
    assert "SELECT mailroom_register_queue('mailroom', 'token_insert')" in line
    assert "backlog" not in done.stdout


def test_a_queue_registered_with_another_channel_fails(
    env: dict[str, str], registered: psycopg.Connection, tmp_path: Path
) -> None:
    done = _check({**env, "MAILROOM_CHANNEL_NAME": "elsewhere"}, tmp_path)
    assert done.returncode == 1
    assert _line(done, "queue").startswith(
        "✗ queue: queue 'mailroom' is registered with channel 'token_insert', but MAILROOM_CHANNEL_NAME is 'elsewhere'"
    )


def test_a_fresh_backlog_is_reported_and_passes(
    env: dict[str, str], registered: psycopg.Connection, tmp_path: Path
) -> None:
    registered.execute(
        "INSERT INTO accounts (email, login) SELECT 'u' || i || '@x.org', 'u' || i FROM generate_series(1, 3) i"
    )
    done = _check(env, tmp_path)
    assert done.returncode == 0, done.stdout
    assert _line(done, "backlog").startswith("✓ backlog: 3 token(s) queued on 'mailroom', the oldest created ")


def test_a_backlog_older_than_the_limit_fails(
    env: dict[str, str], registered: psycopg.Connection, tmp_path: Path
) -> None:
    registered.execute("INSERT INTO accounts (email, login) VALUES ('old@x.org', 'old'), ('new@x.org', 'new')")
    registered.execute(
        "UPDATE tokens SET created_at = now() - interval '20 minutes', expires_at = now() - interval '5 minutes' "
        "WHERE account = (SELECT id FROM accounts WHERE login = 'old')"
    )
    done = _check(env, tmp_path)
    assert done.returncode == 1
    line = _line(done, "backlog")
    assert line.startswith("✗ backlog: 2 token(s) queued on 'mailroom', the oldest created 20 min ago; 1 expired")
    assert "fix: make sure a collector is running on queue 'mailroom'" in line
    # The limit is an option: with an hour, the same backlog passes.
    assert _check(env, tmp_path, "--max-backlog-age", "1h").returncode == 0


@pytest.mark.parametrize("key", [None, "zz" * 32, "5f" * 31])
def test_a_missing_or_invalid_key_fails_without_showing_it(
    env: dict[str, str], registered: psycopg.Connection, tmp_path: Path, key: str | None
) -> None:
    env = {k: v for k, v in env.items() if k != "MAILROOM_SECRET_KEY"}
    if key is not None:
        env["MAILROOM_SECRET_KEY"] = key
    done = _check(env, tmp_path)
    assert done.returncode == 1
    line = _line(done, "secret key")
    assert line.startswith("✗ secret key: MAILROOM_SECRET_KEY: ") and "fix: set MAILROOM_SECRET_KEY" in line
    if key is not None:
        assert key not in done.stdout + done.stderr
    assert [line[0] for line in done.stdout.splitlines()].count("✗") == 1


def test_the_ses_checks_are_the_senders_preflight_and_a_failing_one_names_its_fix(
    env: dict[str, str], registered: psycopg.Connection, tmp_path: Path
) -> None:
    from conftest import FAKE_AWS_ENV

    from bench.fake_ses import Faults, serve

    server, _ = serve(0, 0.0, faults=Faults(templates={"activationv1"}))
    try:
        ses_env = {
            **env,
            **FAKE_AWS_ENV,
            "MAILROOM_DEBUG": "false",
            "MAILROOM_SES_SOURCE": "noreply@example.com",
            "AWS_ENDPOINT_URL_SES": f"http://127.0.0.1:{server.server_address[1]}",
        }
        done = _check(ses_env, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1, done.stdout + done.stderr
    names = [line[2:].split(":")[0] for line in done.stdout.splitlines()]
    assert names == [
        "database",
        "schema",
        "queue",
        "backlog",
        "secret key",
        "collector settings",
        "templates",
        "source identity",
        "template activation",
        "template password_recovery",
        # then every other action and locale of the templates folder (the sender's preflight's)
        "template activation (pt)",
        "template email_change",
        "template email_change (pt)",
        "template invitation",
        "template invitation (pt)",
        "template magic_link",
        "template magic_link (pt)",
        "template password_recovery (pt)",
        "template welcome",
        "template welcome (pt)",
        "configuration set",
        "account sending",
        "send quota",
    ]
    assert _line(done, "template activation").startswith("✓ ")
    assert _line(done, "template password_recovery") == (
        "✗ template password_recovery: template 'passwordrecoveryv1' does not exist in us-east-1 — fix: run "
        "`mailroom templates push`"
    )


def test_an_smtp_port_where_nothing_listens_says_so(
    env: dict[str, str], registered: psycopg.Connection, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp_env = {
        **env,
        "MAILROOM_DEBUG": "false",
        "MAILROOM_PROVIDER": "smtp",
        "MAILROOM_SMTP_HOST": "127.0.0.1",
        "MAILROOM_SMTP_PORT": str(port),
        "MAILROOM_SMTP_TLS": "none",
        "MAILROOM_SOURCE": "noreply@example.com",
    }
    done = _check(smtp_env, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("✗ ")]
    assert line == (
        f"✗ SMTP connect: nothing is listening at 127.0.0.1:{port} (connection refused) — fix: start the SMTP "
        "server there, or set MAILROOM_SMTP_HOST and MAILROOM_SMTP_PORT to where it listens"
    )
    assert "no reply" not in done.stdout and "does not accept mail from us" not in done.stdout


def test_the_help_lists_the_senders_variables_the_provider_checks_read(env: dict[str, str], tmp_path: Path) -> None:
    done = _check(env, tmp_path, "--help")
    assert done.returncode == 0
    for name in (
        "MAILROOM_DATABASE_URL",
        "MAILROOM_PROVIDER",
        "MAILROOM_SOURCE",
        "MAILROOM_SMTP_HOST",
        "MAILROOM_DEBUG",
    ):
        assert f"  {name}  [default: " in done.stdout, name
    assert "AWS_" in done.stdout
