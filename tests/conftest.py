"""Shared fixtures: a real PostgreSQL, a migrated database per test, the installed programs.

PostgreSQL is found in this order, and the first that works is used for the whole run:
1. MAILROOM_TEST_DATABASE_URL (any libpq URL or key=value string; the role needs CREATEDB);
2. a PostgreSQL container through testcontainers, when a Docker engine answers;
3. a local server: libpq defaults (PG* variables, the socket), then
   postgresql://postgres@127.0.0.1:5432/postgres;
4. an embedded throwaway server from the `pgserver` package.
If none works the database tests fail with a message saying how to provide one; they are
never skipped.

The migrations are applied once to a template database, into mailroom's schema (SCHEMA);
each test gets its own clone (CREATE DATABASE ... TEMPLATE), so tests are isolated, NOTIFY
channels included. The databases keep PostgreSQL's default search_path: the programs set
their own, and the tests' connections (the `db` fixture, `pg_connect`) set it to SCHEMA so
that the tests' unqualified SQL names mailroom's objects.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from mailroom import migrate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOW_TO_PROVIDE = (
    "No PostgreSQL server could be found for the tests. Provide one of:\n"
    "  - MAILROOM_TEST_DATABASE_URL=postgresql://user@host:port/db (a role that may CREATE DATABASE);\n"
    "  - a Docker engine (the tests then start postgres:15 with testcontainers);\n"
    "  - a local server reachable with libpq defaults or at postgresql://postgres@127.0.0.1:5432/postgres;\n"
    "  - the `pgserver` package (pip install -e '.[test]' installs it) for an embedded server."
)
TEST_KEY_HEX = "5f" * 32
SCHEMA = migrate.DEFAULT_SCHEMA


def pg_connect(conninfo: str, **kwargs: object) -> psycopg.Connection:
    """A test's own connection, with search_path = mailroom's schema (as the programs' are)."""
    return psycopg.connect(make_conninfo(conninfo, options=f"-c search_path={SCHEMA}"), **kwargs)  # type: ignore[arg-type]


def _usable(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=3, autocommit=True) as conn:
            row = conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return False


def _docker_answers() -> bool:
    try:
        import docker  # installed with testcontainers

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A conninfo for a server where the tests may create databases."""
    explicit = os.environ.get("MAILROOM_TEST_DATABASE_URL")
    if explicit:
        if not _usable(explicit):
            pytest.fail(
                f"MAILROOM_TEST_DATABASE_URL is set but does not connect with CREATEDB rights.\n{HOW_TO_PROVIDE}",
                pytrace=False,
            )
        yield explicit
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver=None) as container:
            yield container.get_connection_url()
        return
    for candidate in ("", "postgresql://postgres@127.0.0.1:5432/postgres"):
        if _usable(candidate):
            yield candidate
            return
    from mailroom.commands.embedded import EmbeddedUnavailable, embedded_postgres  # the demo's, stopped on the way out

    try:
        server_cm = embedded_postgres(prefix="mailroom-test-pg-")
        server = server_cm.__enter__()
    except EmbeddedUnavailable as exc:
        pytest.fail(f"{HOW_TO_PROVIDE}\n({exc})", pytrace=False)
    try:
        yield server.url
    finally:
        server_cm.__exit__(None, None, None)


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A migrated template database, created once per run."""
    name = f"mailroom_tpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    try:
        migrate.apply(make_conninfo(pg_admin_url, dbname=name))
        yield name
    finally:
        _drop(pg_admin_url, name)


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database (no schema), dropped after the test."""
    name = f"mailroom_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    try:
        yield make_conninfo(pg_admin_url, dbname=name)
    finally:
        _drop(pg_admin_url, name)


@pytest.fixture
def database_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A migrated database of this test's own, dropped after the test."""
    name = f"mailroom_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Identifier(template_db)
            )
        )
    try:
        yield make_conninfo(pg_admin_url, dbname=name)
    finally:
        _drop(pg_admin_url, name)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this test's database, search_path = mailroom's schema."""
    with pg_connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def secret_key_hex() -> str:
    return TEST_KEY_HEX


def script(name: str) -> str:
    """Path of an installed console script (collector, sender, mailroom, moto_server)."""
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            pytest.fail(
                f"console script {name!r} is not installed; run `make test` (it installs the project)", pytrace=False
            )
        return found
    return str(path)


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """An environment for the real programs: no inherited MAILROOM_* or AWS_* surprises."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "AWS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# -- moto_server: an SES emulator in its own process, for tests that run the real programs ----

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


SES_SOURCE = "noreply@example.com"


class FakeProvider:
    """What every provider has besides send_bulk, for the tests' scripted providers."""

    name = "fake"

    def address(self, email: str) -> str:
        return email

    def preflight(self) -> list[object]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """FAKE_AWS_ENV in this process, and no other AWS_* variable from the developer's shell."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def moto_ses(fake_aws: None) -> Iterator[object]:
    """In-process moto SES (mock_aws) with SES_SOURCE verified and both templates created;
    yields the sender's own boto3 client (mailroom.aws.make_client)."""
    from moto import mock_aws
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    from mailroom.aws import make_client

    with mock_aws():
        client = make_client()
        ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages.clear()
        client.verify_email_identity(EmailAddress=SES_SOURCE)
        for name in ("activationv1", "passwordrecoveryv1"):
            client.create_template(
                Template={
                    "TemplateName": name,
                    "SubjectPart": "s {{login}}",
                    "TextPart": "t {{login}} {{secret}}",
                    "HtmlPart": "h {{{login_html}}}",
                }
            )
        yield client


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_server(tmp_path: Path) -> Iterator[str]:
    """The endpoint URL of a fresh `moto_server` on a free 127.0.0.1 port (stopped afterwards).

    Point a program at it with AWS_ENDPOINT_URL_SES (or AWS_ENDPOINT_URL) plus FAKE_AWS_ENV.
    """
    import subprocess
    import time
    import urllib.error
    import urllib.request

    port = _free_port()
    log_path = tmp_path / "moto_server.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [script("moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log_file, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto_server did not start:\n" + log_path.read_text(errors="replace"), pytrace=False)
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prepare_moto_ses(env: dict[str, str], moto_server: str, workdir: Path, source: str):  # -> SES client
    """Make moto_server ready for the real sender: verify `source` and push both templates
    with the real `mailroom templates push`; return a boto3 SES client on moto_server."""
    import subprocess

    import boto3

    ses = boto3.client(
        "ses",
        endpoint_url=moto_server,
        region_name=FAKE_AWS_ENV["AWS_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ses.verify_email_identity(EmailAddress=source)
    pushed = subprocess.run(
        [script("mailroom"), "templates", "push"], env=env, cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert pushed.returncode == 0, pushed.stderr
    return ses


def two_action_templates(parent: Path) -> Path:
    """A templates folder holding only activation and password_recovery in the default locale:
    for the tests of SES faults that stage exactly those two templates on a fake SES (the
    sender's preflight checks one SES template per local action and locale)."""
    from mailroom import templates

    folder = parent / "two-action-templates"
    for name in ("activation", "password_recovery"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for part in templates.FILES.values():
            shutil.copy(templates.template_dir() / name / part, folder / name / part)
        fixtures = templates.template_dir() / name / "fixtures.json"
        if fixtures.exists():
            shutil.copy(fixtures, folder / name / "fixtures.json")
    return folder
