"""Pruning old tokens (migrations/0003_prune.sql, mailroom/commands/prune.py), against a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from conftest import pg_connect

from mailroom.commands.prune import prune

WEEK = timedelta(days=7)


def _accounts(db: psycopg.Connection, n: int, prefix: str) -> None:
    db.execute(
        "INSERT INTO accounts (email, login) SELECT %s || i || '@x.org', %s || i FROM generate_series(1, %s) i",
        (prefix, prefix, n),
    )


def _age(
    db: psycopg.Connection,
    prefix: str,
    *,
    consumed_days_ago: float | None = None,
    expired_days_ago: float | None = None,
) -> None:
    """Backdate the tokens of the accounts whose login starts with `prefix`."""
    ids = "(SELECT id FROM accounts WHERE login LIKE %s)"
    if consumed_days_ago is not None:
        # Consumed long ago, and created before that (its expiry is still later than consumption).
        db.execute(
            f"UPDATE tokens SET created_at = now() - make_interval(days => %s) - interval '1 minute', "
            f"consumed_at = now() - make_interval(days => %s), "
            f"expires_at = now() - make_interval(days => %s) + interval '14 minutes' WHERE account IN {ids}",
            (consumed_days_ago, consumed_days_ago, consumed_days_ago, prefix + "%"),
        )
    if expired_days_ago is not None:
        db.execute(
            f"UPDATE tokens SET expires_at = now() - make_interval(days => %s) WHERE account IN {ids}",
            (expired_days_ago, prefix + "%"),
        )


def _remaining(db: psycopg.Connection, prefix: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM tokens t JOIN accounts a ON a.id = t.account WHERE a.login LIKE %s", (prefix + "%",)
    ).fetchone()
    assert row
    return int(row[0])


def test_old_consumed_and_expired_tokens_are_deleted_and_recent_ones_kept(db: psycopg.Connection) -> None:
    _accounts(db, 3, "oldconsumed")
    _accounts(db, 4, "oldexpired")
    _accounts(db, 5, "newconsumed")
    _accounts(db, 6, "newexpired")
    _accounts(db, 7, "live")
    _age(db, "oldconsumed", consumed_days_ago=8)
    _age(db, "oldexpired", expired_days_ago=8)
    _age(db, "newconsumed", consumed_days_ago=6)
    _age(db, "newexpired", expired_days_ago=6)
    db.execute(
        "SELECT mailroom_consume_token(secret, NULL) FROM tokens t JOIN accounts a ON a.id = t.account "
        "WHERE a.login LIKE 'live%%' AND a.login <= 'live3'"
    )
    result = prune(db, WEEK.total_seconds(), batch_size=100)
    assert result.deleted == 7
    assert [_remaining(db, p) for p in ("oldconsumed", "oldexpired", "newconsumed", "newexpired", "live")] == [
        0,
        0,
        5,
        6,
        7,
    ]
    # The accounts themselves stay: pruning is about tokens only.
    assert db.execute("SELECT count(*) FROM accounts").fetchone() == (25,)


def test_a_token_still_queued_for_a_collector_is_never_deleted(db: psycopg.Connection) -> None:
    db.execute("SELECT mailroom_register_queue('mailroom', 'token_insert')")
    db.execute("SELECT mailroom_register_queue('standby', 'token_insert')")
    _accounts(db, 4, "queued")
    _age(db, "queued", expired_days_ago=30)
    # The first queue has read two of them; the second queue has read one of those two.
    first_two = (
        "(SELECT t.id FROM tokens t JOIN accounts a ON a.id = t.account WHERE a.login IN ('queued1', 'queued2'))"
    )
    db.execute(f"DELETE FROM job_tokens WHERE job = 'mailroom' AND token IN {first_two}")
    db.execute(
        "DELETE FROM job_tokens WHERE job = 'standby' AND token = "
        "(SELECT t.id FROM tokens t JOIN accounts a ON a.id = t.account WHERE a.login = 'queued1')"
    )
    assert prune(db, WEEK.total_seconds()).deleted == 1  # only queued1 is read by every queue
    remaining = db.execute("SELECT a.login FROM tokens t JOIN accounts a ON a.id = t.account ORDER BY 1").fetchall()
    assert remaining == [("queued2",), ("queued3",), ("queued4",)]
    # Once the queues have read them, they go.
    db.execute("DELETE FROM job_tokens")
    assert prune(db, WEEK.total_seconds()).deleted == 3


def test_batches_are_bounded_and_the_function_reports_each_batch(db: psycopg.Connection) -> None:
    _accounts(db, 35, "bulk")
    _age(db, "bulk", expired_days_ago=8)
    counts = [db.execute("SELECT mailroom_prune(interval '7 days', 10)").fetchone()[0] for _ in range(5)]
    assert counts == [10, 10, 10, 5, 0]


def test_the_prune_loop_commits_batch_by_batch_and_stops_at_a_short_batch(db: psycopg.Connection) -> None:
    _accounts(db, 35, "bulk")
    _age(db, "bulk", expired_days_ago=8)
    result = prune(db, WEEK.total_seconds(), batch_size=10)
    assert (result.deleted, result.batches) == (35, 4)
    assert prune(db, WEEK.total_seconds(), batch_size=10) == type(result)(deleted=0, batches=1)


def test_max_batches_bounds_one_run(db: psycopg.Connection) -> None:
    _accounts(db, 35, "bulk")
    _age(db, "bulk", expired_days_ago=8)
    assert prune(db, WEEK.total_seconds(), batch_size=10, max_batches=2).deleted == 20
    assert _remaining(db, "bulk") == 15


def test_prune_refuses_a_connection_inside_a_transaction(database_url: str) -> None:
    with pg_connect(database_url) as conn, pytest.raises(ValueError, match="autocommit"):
        prune(conn, WEEK.total_seconds())


def test_the_procedure_prunes_everything_committing_between_batches(db: psycopg.Connection) -> None:
    _accounts(db, 35, "bulk")
    _accounts(db, 2, "fresh")
    _age(db, "bulk", expired_days_ago=8)
    db.execute("CALL mailroom_prune_all(interval '7 days', 10)")
    assert _remaining(db, "bulk") == 0 and _remaining(db, "fresh") == 2


def test_a_locked_token_is_skipped_not_waited_for(database_url: str, db: psycopg.Connection) -> None:
    _accounts(db, 3, "lock")
    _age(db, "lock", expired_days_ago=8)
    with pg_connect(database_url) as holder:
        holder.execute(
            "SELECT 1 FROM tokens t JOIN accounts a ON a.id = t.account WHERE a.login = 'lock1' FOR UPDATE OF t"
        )
        assert db.execute("SELECT mailroom_prune(interval '7 days', 10)").fetchone() == (2,)
        holder.rollback()
    assert db.execute("SELECT mailroom_prune(interval '7 days', 10)").fetchone() == (1,)


@pytest.mark.parametrize(
    "call",
    [
        "SELECT mailroom_prune(interval '-1 day', 10)",
        "SELECT mailroom_prune(NULL, 10)",
        "SELECT mailroom_prune(interval '1 day', 0)",
    ],
)
def test_the_function_rejects_a_negative_retention_or_an_empty_batch(db: psycopg.Connection, call: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute(call)


def test_the_prune_query_walks_the_index(db: psycopg.Connection) -> None:
    _accounts(db, 2000, "many")
    db.execute("ANALYZE tokens")
    plan = "\n".join(
        r[0]
        for r in db.execute(
            "EXPLAIN SELECT t.id FROM tokens t WHERE LEAST(t.consumed_at, t.expires_at) < now() - interval '7 days' "
            "ORDER BY LEAST(t.consumed_at, t.expires_at) LIMIT 1000"
        ).fetchall()
    )
    assert "tokens_done_at_idx" in plan
