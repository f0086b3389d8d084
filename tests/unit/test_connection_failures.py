"""Which connection failures are worth retrying: the collector retries those, and exits 2
(like invalid configuration) on those that only a change of configuration can fix."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from mailroom.db import permanent_failure

PREFIX = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '


@pytest.mark.parametrize(
    ("sqlstate", "reason"),
    [
        ("3D000", "the database does not exist"),
        ("28000", "the role does not exist or may not connect"),
        ("28P01", "authentication failed"),
        ("42501", "the role lacks the CONNECT privilege on the database"),
    ],
)
def test_errors_that_cannot_heal_are_permanent_by_sqlstate(sqlstate: str, reason: str) -> None:
    assert permanent_failure(errors.lookup(sqlstate)("boom")) == reason


@pytest.mark.parametrize(
    "sqlstate",
    [
        "57P03",  # cannot_connect_now: the database system is starting up
        "57P01",  # admin_shutdown
        "53300",  # too_many_connections
        "55000",  # not accepting connections (ALLOW_CONNECTIONS false)
        "08006",  # connection_failure
    ],
)
def test_errors_that_can_heal_are_retried_by_sqlstate(sqlstate: str) -> None:
    assert permanent_failure(errors.lookup(sqlstate)("boom")) is None


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ('FATAL:  database "nowhere" does not exist', "the database does not exist"),
        ('FATAL:  role "nobody" does not exist', "the role does not exist"),
        ('FATAL:  password authentication failed for user "app"', "authentication failed"),
        ('FATAL:  role "app" is not permitted to log in', "the role may not log in"),
        (
            'FATAL:  no pg_hba.conf entry for host "10.0.0.5", user "app", database "app", no encryption',
            "pg_hba.conf has no entry that lets it in",
        ),
        ('FATAL:  permission denied for database "app"', "the role lacks the CONNECT privilege on the database"),
    ],
)
def test_the_same_failures_are_recognised_by_the_libpq_message(message: str, reason: str) -> None:
    # libpq reports a failed connection as text: psycopg's exception has no SQLSTATE then.
    exc = psycopg.OperationalError(PREFIX + message)
    assert exc.sqlstate is None
    assert permanent_failure(exc) == reason


@pytest.mark.parametrize(
    "message",
    [
        "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
        "FATAL:  the database system is starting up",
        "FATAL:  the database system is shutting down",
        "FATAL:  sorry, too many clients already",
        'FATAL:  database "app" is not currently accepting connections',
        "server closed the connection unexpectedly",
        "timeout expired",
    ],
)
def test_refused_timed_out_and_starting_up_are_retried(message: str) -> None:
    assert permanent_failure(psycopg.OperationalError(PREFIX + message)) is None


def test_a_port_that_is_not_a_number_is_permanent() -> None:
    exc = psycopg.OperationalError('connection is bad: invalid integer value "abc" for connection option "port"')
    assert permanent_failure(exc) == "the port is not a number"


def test_with_several_hosts_it_is_permanent_only_when_every_host_failed_so() -> None:
    mixed = psycopg.OperationalError(
        PREFIX + "Connection refused\nMultiple connection attempts failed. All failures were:\n"
        f"- host: 'a', port: '5432', hostaddr: '10.0.0.1': {PREFIX}FATAL:  database \"x\" does not exist\n"
        f"- host: 'b', port: '5432', hostaddr: '10.0.0.2': {PREFIX}Connection refused\n"
        "\tIs the server running on that host and accepting TCP/IP connections?"
    )
    assert permanent_failure(mixed) is None
    both = psycopg.OperationalError(
        PREFIX + 'FATAL:  database "x" does not exist\nMultiple connection attempts failed. All failures were:\n'
        f"- host: 'a', port: '5432', hostaddr: '10.0.0.1': {PREFIX}FATAL:  database \"x\" does not exist\n"
        f"- host: 'b', port: '5432', hostaddr: '10.0.0.2': {PREFIX}FATAL:  database \"x\" does not exist"
    )
    assert permanent_failure(both) == "the database does not exist"
