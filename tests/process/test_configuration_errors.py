"""Configuration mistakes fail fast with one line naming the variable (exit 2), everywhere;
connection failures that retrying cannot fix exit 2 too, the others are retried."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from collector_helpers import CollectorProcess, collector_env
from conftest import script
from fake_postgres import fake_postgres
from psycopg.conninfo import make_conninfo

from mailroom import __version__, settings

PASSWORD = "hunter2"
# A URL that parses and is never connected to: the tests that use it fail at start-up.
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"
UNPARSABLE = [
    "garbage",
    f"postgresql://app:{PASSWORD}@127.0.0.1:abc/app",  # a port that is not a number
    f"host=127.0.0.1 port=5432 password={PASSWORD} dbname=app   # the app's database",
]


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, input="", capture_output=True, text=True, timeout=timeout, check=False
    )


def _one_line_naming_the_url(stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "MAILROOM_DATABASE_URL" in lines[0] and PASSWORD not in lines[0] and "Traceback" not in stderr


@pytest.fixture
def env(base_env: dict[str, str], secret_key_hex: str, tmp_path: Path) -> dict[str, str]:
    return {
        **base_env,
        "MAILROOM_SECRET_KEY": secret_key_hex,
        "MAILROOM_DEBUG": "true",
        "MAILROOM_SES_OUTPUT_PATH": str(tmp_path / "output"),
    }


# -- an unparsable MAILROOM_DATABASE_URL -----------------------------------------------------


@pytest.mark.parametrize("url", UNPARSABLE)
@pytest.mark.parametrize(
    "command",
    [["collector"], ["mailroom", "migrate"], ["mailroom", "prune"], ["mailroom", "run"], ["mailroom", "demo"]],
    ids=lambda c: " ".join(c),
)
def test_an_unparsable_database_url_exits_2_with_one_line_naming_it(
    env: dict[str, str], tmp_path: Path, command: list[str], url: str
) -> None:
    done = _run([script(command[0]), *command[1:]], dict(env, MAILROOM_DATABASE_URL=url), tmp_path)
    assert done.returncode == settings.CONFIG_EXIT_STATUS, done.stderr
    assert done.stdout == ""
    _one_line_naming_the_url(done.stderr)


# -- no MAILROOM_DATABASE_URL: required everywhere but the demo ----------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["collector"],
        ["mailroom", "migrate"],
        ["mailroom", "prune"],
        ["mailroom", "run"],
        ["mailroom", "check"],
        ["mailroom", "status"],
        ["mailroom", "requeue", "--since", "1h", "--dry-run"],
    ],
    ids=lambda c: " ".join(c),
)
def test_without_a_database_url_every_command_but_the_demo_exits_2_with_one_line_saying_what_to_set(
    env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    # Before, an unset URL silently meant postgres@127.0.0.1:5432/postgres, the maintenance database.
    assert "MAILROOM_DATABASE_URL" not in env
    done = _run([script(command[0]), *command[1:]], env, tmp_path)
    assert done.returncode == settings.CONFIG_EXIT_STATUS, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        (
            f"{command[0]}: invalid configuration: MAILROOM_DATABASE_URL: is required but not set; set it to your "
            "app's database, e.g. postgresql://user@db.internal:5432/app or 'host=db.internal dbname=app user=mailroom'"
        )
    ]


def test_a_missing_key_says_how_to_generate_one(env: dict[str, str], tmp_path: Path) -> None:
    environ = {k: v for k, v in env.items() if k != "MAILROOM_SECRET_KEY"}
    done = _run([script("collector")], dict(environ, MAILROOM_DATABASE_URL=NOWHERE), tmp_path)
    assert done.returncode == settings.CONFIG_EXIT_STATUS
    (line,) = done.stderr.splitlines()
    assert line.startswith("collector: invalid configuration: MAILROOM_SECRET_KEY: is required but not set; ")
    assert line.endswith("(generate one with: openssl rand -hex 32)")


# -- MAILROOM_APP_URL goes into every link: no control character --------------------------


@pytest.mark.parametrize(
    "url", ["https://app.example.com/\x01", "https://app.example.com/a\x7fb", "https://app\x1b.example.com"]
)
@pytest.mark.parametrize("command", [["sender"], ["mailroom", "run"]], ids=lambda c: " ".join(c))
def test_an_app_url_with_a_control_character_exits_2_with_one_line_naming_it(
    env: dict[str, str], tmp_path: Path, command: list[str], url: str
) -> None:
    done = _run(
        [script(command[0]), *command[1:]], dict(env, MAILROOM_DATABASE_URL=NOWHERE, MAILROOM_APP_URL=url), tmp_path
    )
    assert done.returncode == settings.CONFIG_EXIT_STATUS, done.stderr
    assert done.stderr.splitlines() == [
        f"{command[0]}: invalid configuration: MAILROOM_APP_URL: {url!r} is invalid; expected an http:// or https:// URL"
    ]


# -- durations take units ---------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [("10m", "deadline 600s"), ("90", "deadline 90s"), ("1h", "deadline 3600s")])
def test_the_send_deadline_takes_a_unit_and_a_plain_number_is_seconds(
    env: dict[str, str], tmp_path: Path, raw: str, shown: str
) -> None:
    done = _run([script("sender")], dict(env, MAILROOM_SEND_DEADLINE=raw), tmp_path)
    assert done.returncode == 0, done.stderr
    assert shown in done.stderr


def test_an_inline_comment_is_named_as_the_likely_cause(env: dict[str, str], tmp_path: Path) -> None:
    done = _run(
        [script("collector")],
        dict(env, MAILROOM_DATABASE_URL=NOWHERE, MAILROOM_BATCH_LIMIT="10   # records per line"),
        tmp_path,
    )
    assert done.returncode == settings.CONFIG_EXIT_STATUS
    assert done.stderr.startswith("collector: invalid configuration: MAILROOM_BATCH_LIMIT: ")
    assert "inline comment" in done.stderr and "on their own line" in done.stderr


# -- connections that retrying cannot fix ---------------------------------------------------


def _unhealable_urls(database_url: str) -> dict[str, tuple[str, str]]:
    return {
        "database": (make_conninfo(database_url, dbname="mailroom_no_such_database"), "the database does not exist"),
        "role": (make_conninfo(database_url, user="mailroom_no_such_role"), "the role does not exist"),
    }


@pytest.mark.parametrize("missing", ["database", "role"])
def test_the_collector_exits_2_when_the_database_or_role_does_not_exist(
    env: dict[str, str], tmp_path: Path, database_url: str, missing: str
) -> None:
    url, reason = _unhealable_urls(database_url)[missing]
    proc = CollectorProcess(script("collector"), dict(env, MAILROOM_DATABASE_URL=url), tmp_path / "collector.log")
    try:
        assert proc.wait(timeout=30) == settings.CONFIG_EXIT_STATUS
    finally:
        proc.stop()
    errors = [line for line in proc.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and reason in errors[0] and "retrying cannot fix this" in errors[0], proc.log()
    assert "MAILROOM_DATABASE_URL" in errors[0]
    assert "reconnecting" not in proc.log()


@pytest.mark.parametrize("missing", ["database", "role"])
@pytest.mark.parametrize("command", ["migrate", "prune"])
def test_admin_commands_exit_2_when_the_database_or_role_does_not_exist(
    env: dict[str, str], tmp_path: Path, database_url: str, command: str, missing: str
) -> None:
    url, reason = _unhealable_urls(database_url)[missing]
    done = _run([script("mailroom"), command], dict(env, MAILROOM_DATABASE_URL=url), tmp_path)
    assert done.returncode == settings.CONFIG_EXIT_STATUS
    _one_line_naming_the_url(done.stderr)
    assert reason in done.stderr


def test_mailroom_run_exits_2_when_the_collector_cannot_ever_connect(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    url, reason = _unhealable_urls(database_url)["database"]
    done = _run([script("mailroom"), "run"], dict(env, MAILROOM_DATABASE_URL=url), tmp_path)
    assert done.returncode == settings.CONFIG_EXIT_STATUS, done.stderr
    assert reason in done.stderr and "collector exited with status 2" in done.stderr


def test_the_collector_exits_2_when_authentication_fails(env: dict[str, str], tmp_path: Path) -> None:
    # The local server trusts 127.0.0.1; this one answers every connection as PostgreSQL
    # does to a wrong password (FATAL 28P01).
    with fake_postgres("28P01", 'password authentication failed for user "app"') as server:
        env = dict(env, MAILROOM_DATABASE_URL=server.url(password=PASSWORD))
        proc = CollectorProcess(script("collector"), env, tmp_path / "collector.log")
        try:
            assert proc.wait(timeout=30) == settings.CONFIG_EXIT_STATUS
        finally:
            proc.stop()
        assert server.connections == 1
    log = proc.log()
    assert "authentication failed" in log and "retrying cannot fix this" in log and PASSWORD not in log


def test_mailroom_migrate_exits_2_when_authentication_fails(env: dict[str, str], tmp_path: Path) -> None:
    with fake_postgres("28P01", 'password authentication failed for user "app"') as server:
        done = _run([script("mailroom"), "migrate"], dict(env, MAILROOM_DATABASE_URL=server.url()), tmp_path)
    assert done.returncode == settings.CONFIG_EXIT_STATUS
    _one_line_naming_the_url(done.stderr)
    assert "authentication failed" in done.stderr


def test_a_server_that_is_starting_up_is_retried_until_stopped(env: dict[str, str], tmp_path: Path) -> None:
    with fake_postgres("57P03", "the database system is starting up") as server:
        proc = CollectorProcess(
            script("collector"), dict(env, MAILROOM_DATABASE_URL=server.url()), tmp_path / "collector.log"
        )
        try:
            proc.wait_for_log("attempt 2 in", timeout=30)
            assert proc.proc.poll() is None
            assert server.connections >= 2
            proc.signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.stop()
    assert "the database system is starting up" in proc.log() and " ERROR " not in proc.log()


# -- misspelled variables, start-up line -----------------------------------------------------


def test_a_misspelled_variable_in_dotenv_is_warned_about_by_every_program(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    (tmp_path / ".env").write_text("MAILROOM_BATCH_LIMT=5\n")
    warning = "MAILROOM_BATCH_LIMT is not a mailroom setting; did you mean MAILROOM_BATCH_LIMIT?"
    collector_environ = collector_env(env, database_url, env["MAILROOM_SECRET_KEY"])
    del collector_environ["MAILROOM_BATCH_LIMIT"]  # the misspelled one does not set it: the default stays
    collector = CollectorProcess(script("collector"), collector_environ, tmp_path / "collector.log", cwd=tmp_path)
    try:
        log = collector.wait_until_ready()
    finally:
        collector.stop()
    assert log.count(warning) == 1
    assert "batch limit 10 " in log and "batch timeout 200 ms" in log  # the effective values
    sender = _run([script("sender")], env, tmp_path)
    assert sender.returncode == 0 and sender.stderr.count(warning) == 1
    prune = _run([script("mailroom"), "prune"], dict(env, MAILROOM_DATABASE_URL=database_url), tmp_path)
    assert prune.returncode == 0 and prune.stderr.count(warning) == 1


def test_a_batch_timeout_too_long_for_the_default_health_check_names_the_batch_timeout(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = _run(
        [script("collector")], dict(env, MAILROOM_DATABASE_URL=NOWHERE, MAILROOM_BATCH_TIMEOUT="300000"), tmp_path
    )
    assert done.returncode == settings.CONFIG_EXIT_STATUS
    assert done.stderr.startswith("collector: invalid configuration: MAILROOM_BATCH_TIMEOUT: '300000' is invalid")


def test_a_huge_batch_limit_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    done = _run(
        [script("collector")],
        dict(env, MAILROOM_DATABASE_URL=NOWHERE, MAILROOM_BATCH_LIMIT="99999999999999999999"),
        tmp_path,
    )
    assert done.returncode == settings.CONFIG_EXIT_STATUS
    assert "MAILROOM_BATCH_LIMIT" in done.stderr and "Traceback" not in done.stderr


# -- CLI details ------------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["mailroom", "collector", "sender"])
def test_version_prints_the_package_version(env: dict[str, str], tmp_path: Path, program: str) -> None:
    done = _run([script(program), "--version"], env, tmp_path)
    assert (done.returncode, done.stdout) == (0, f"{program} {__version__}\n")


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["prune", "--bogus"], "usage: mailroom prune "),
        (["migrate", "extra"], "usage: mailroom migrate "),
        (["templates", "push", "--bogus"], "usage: mailroom templates push "),
        (["verify"], "usage: mailroom verify "),
    ],
)
def test_a_subcommand_usage_error_prints_that_subcommands_usage(
    env: dict[str, str], tmp_path: Path, args: list[str], usage: str
) -> None:
    done = _run([script("mailroom"), *args], env, tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(usage), done.stderr


def test_prune_says_1_batch_not_1_batches(env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    done = _run([script("mailroom"), "prune"], dict(env, MAILROOM_DATABASE_URL=database_url), tmp_path)
    assert done.returncode == 0
    assert done.stdout == "deleted 0 tokens consumed or expired more than 604800 s ago in 1 batch\n"
