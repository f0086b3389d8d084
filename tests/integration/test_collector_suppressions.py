"""The collector never mails a suppressed address (sql/collector.sql claim_chunk, collector/queue.py),
against a real PostgreSQL: the whole loop, from a hard bounce recorded by mailroom/recorder.py
to the next recovery token of that account skipped as `suppressed`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from conftest import pg_connect
from test_cooldown import QUEUE, Captured
from test_recorder import ses_event

from collector.connection import register_and_listen, try_lock
from collector.queue import Queue
from collector.signals import StopFlag
from collector.stats import CollectorStats
from mailroom.recorder import record
from mailroom.settings import CollectorSettings
from mailroom.signing import token_ref


@pytest.fixture
def make_queue(database_url: str, secret_key_hex: str) -> Iterator[Callable[..., Queue]]:
    conns: list[psycopg.Connection] = []

    def make(cooldown_s: float = 0.0, limit: int = 10) -> Queue:
        settings = CollectorSettings.from_environ(
            {"MAILROOM_DATABASE_URL": database_url, "MAILROOM_SECRET_KEY": secret_key_hex}
        )
        conn = pg_connect(database_url, autocommit=True)
        conns.append(conn)
        assert try_lock(conn, QUEUE)
        register_and_listen(conn, settings)
        return Queue(conn, QUEUE, limit, settings.secret_key, cooldown_s)

    yield make
    for conn in conns:
        conn.close()


def _drain(queue: Queue) -> list[str]:
    out = Captured()
    queue.drain(out, StopFlag())
    return [r.email for r in out.records()]


def _recovery_for_all(db: psycopg.Connection) -> None:
    db.execute("INSERT INTO tokens (account, action) SELECT id, 'password_recovery' FROM accounts")


def test_a_hard_bounce_for_one_of_100_skips_that_account_s_next_token_and_no_other(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue(cooldown_s=0, limit=50)
    stats = queue.stats = CollectorStats()
    db.execute(
        "INSERT INTO accounts (email, login, status) "
        "SELECT 'user' || i || '@example.com', 'user' || i, 'active' FROM generate_series(1, 100) i"
    )
    _recovery_for_all(db)
    out = Captured()
    queue.drain(out, StopFlag())
    first = out.records()
    assert len(first) == 100
    bounced = first[41]
    record(
        db,
        ses_event(
            "Bounce",
            bounced.email,
            message_id="m41",
            token_ref=token_ref(bounced.secret),
            diagnostic="smtp; 550 5.1.1 user unknown",
        ),
    )
    assert db.execute("SELECT status, diagnostic FROM token_deliveries").fetchall() == [
        ("bounced", "smtp; 550 5.1.1 user unknown")
    ]
    _recovery_for_all(db)  # everyone asks again
    second = _drain(queue)
    assert sorted(second) == sorted(r.email for r in first if r.email != bounced.email)  # the other 99
    assert stats.skipped["suppressed"] == 1
    row = db.execute(
        "SELECT d.status, d.suppressed_reason, t.suppressed FROM delivery_status d JOIN tokens t ON t.id = d.token_id "
        "WHERE d.address = %s ORDER BY d.token_id DESC LIMIT 1",
        (bounced.email,),
    ).fetchone()
    assert row == ("suppressed", "bounce", True)


def test_a_suppressed_address_with_a_unicode_domain_is_skipped_in_either_spelling(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue(cooldown_s=0)
    db.execute(
        "INSERT INTO accounts (email, login, status) VALUES "
        "('zoë@Bücher.de', 'zoe', 'active'), ('ana@xn--bcher-kva.de', 'ana', 'active'), ('ok@bücher.de', 'ok', 'active')"
    )
    record(db, ses_event("Bounce", "zoë@xn--bcher-kva.de", message_id="z"))  # SES reports the A-label spelling
    record(db, ses_event("Complaint", "ana@bücher.de", message_id="a"))
    _recovery_for_all(db)
    assert _drain(queue) == ["ok@bücher.de"]


def test_taking_an_address_off_the_list_lets_its_next_token_through(
    make_queue: Callable[..., Queue], db: psycopg.Connection
) -> None:
    queue = make_queue(cooldown_s=0)
    db.execute("INSERT INTO accounts (email, login, status) VALUES ('Back@Example.com', 'back', 'active')")
    db.execute("SELECT mailroom_suppress('Back@example.COM')")
    _recovery_for_all(db)
    assert _drain(queue) == []
    db.execute("SELECT mailroom_unsuppress('Back@EXAMPLE.com')")
    _recovery_for_all(db)
    assert _drain(queue) == ["Back@Example.com"]
