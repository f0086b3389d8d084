"""migrations/0007_deliverability.sql against a real PostgreSQL: the suppression list and
its key, the delivery status of tokens and the view the app reads it through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import idna
import psycopg
import pytest
from address_table import ACCEPTED, ADDRESSES
from conftest import pg_connect

from mailroom import migrate
from mailroom.signing import secret_ref
from mailroom.suppressions import NotAnAddress, address_key

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _account(db: psycopg.Connection, email: str, login: str) -> tuple[int, int, str]:
    """A provisioned account: its id, its activation token's id and token_ref."""
    account = db.execute("INSERT INTO accounts (email, login) VALUES (%s, %s) RETURNING id", (email, login)).fetchone()
    assert account
    token, secret = db.execute("SELECT id, secret FROM tokens WHERE account = %s", (account[0],)).fetchone()
    return int(account[0]), int(token), secret_ref(bytes(secret))


# Beyond the address table: the spellings the review checked against `idna`, and texts the rule
# refuses whose domain is ASCII (they are keyed by lowering, in both).
KEYED_TOO = [
    "Ada@Example.COM",
    "a@b@XN--BCHER-KVA.DE",
    "x.y+tag@Sub.Example.ORG",
    "a@Under_Score.example",
    "İ@EXAMPLE.COM",
    "zoë@bücher.de",
    "Zoë@Bücher.DE",
    "a@straße.de",
    "user@ドメイン名例.JP",
    "user@παράδειγμα.δοκιμή",
    "user@例子.广告",
    "a@b@bücher.de",
    "zoë@BÜCHER.de",  # a capital the rule refuses: no key
    "a@ｅｘａｍｐｌｅ．ｃｏｍ",  # full-width, refused: no key
    "nope",
]


def _python_key(address: str) -> str | None:
    try:
        return address_key(address)
    except NotAnAddress:
        return None


def test_sql_gives_python_s_key_for_every_address_of_the_table(db: psycopg.Connection) -> None:
    texts = [c.address for c in ADDRESSES] + KEYED_TOO
    rows = db.execute("SELECT t, mailroom_address_key(t) FROM unnest(%s::text[]) AS t", (texts,)).fetchall()
    assert [key for _, key in rows] == [_python_key(t) for t in texts]
    keyed = dict(rows)
    # every address the rule admits has a key, an internationalised domain in idna's A-labels
    assert all(keyed[c.address] is not None for c in ACCEPTED)
    for address in ("zoë@bücher.de", "Zoë@Bücher.DE", "a@straße.de", "user@ドメイン名例.JP", "user@παράδειγμα.δοκιμή"):
        local, _, domain = address.rpartition("@")
        assert keyed[address] == f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


def test_sql_gives_no_key_for_a_text_without_at_or_a_non_ascii_domain_the_rule_refuses(
    db: psycopg.Connection,
) -> None:
    assert db.execute("SELECT mailroom_address_key('zoë@BÜCHER.de'), mailroom_address_key('nope')").fetchone() == (
        None,
        None,
    )


def test_the_key_is_inlined_into_a_query_for_an_ascii_and_a_unicode_domain(db: psycopg.Connection) -> None:
    # the collector's claim calls it per token: the planner must inline it (no function call
    # per row for the ASCII fast path); only a non-ASCII domain reaches mailroom_ascii_domain.
    plan = db.execute("EXPLAIN (VERBOSE) SELECT mailroom_address_key(email::text) FROM accounts").fetchall()
    text = "\n".join(r[0] for r in plan)
    assert "mailroom_address_key" not in text and "mailroom_ascii_domain" in text


def test_the_sql_key_lowers_ascii_whatever_the_locale_says_of_i(db: psycopg.Connection) -> None:
    # lower() follows the collation (a Turkish one maps I to dotless ı); the key must not.
    turkish = db.execute("SELECT lower('IBM' COLLATE \"tr-TR-x-icu\")").fetchone()
    assert turkish == ("\u0131bm",)  # the trap is real on this server (PostgreSQL built with ICU)
    row = db.execute("SELECT mailroom_address_key('a@IBM.COM' COLLATE \"tr-TR-x-icu\")").fetchone()
    assert row == ("a@ibm.com",)


def test_spellings_of_one_address_collide_on_one_suppression(db: psycopg.Connection) -> None:
    db.execute("SELECT mailroom_suppress('Ada@Example.COM', 'bounce', at => %s)", (T0,))
    db.execute("SELECT mailroom_suppress('Ada@example.com', 'complaint', at => %s)", (T0 + timedelta(hours=1),))
    db.execute("SELECT mailroom_suppress('Ada@EXAMPLE.com', 'manual', at => %s)", (T0 - timedelta(hours=1),))
    rows = db.execute("SELECT address_key, address, reason, first_at, last_at FROM suppressions").fetchall()
    # One row; the first spelling stays; the reason is the latest word; first/last span all three.
    assert rows == [("Ada@example.com", "Ada@Example.COM", "manual", T0 - timedelta(hours=1), T0 + timedelta(hours=1))]


def test_a_local_part_in_another_case_is_another_mailbox(db: psycopg.Connection) -> None:
    db.execute("SELECT mailroom_suppress('Ada@example.com')")
    assert db.execute("SELECT mailroom_is_suppressed('ada@example.com')").fetchone() == (False,)
    assert db.execute("SELECT mailroom_is_suppressed('Ada@EXAMPLE.COM')").fetchone() == (True,)


def test_a_unicode_domain_is_keyed_in_sql_and_matches_its_punycode_spelling(db: psycopg.Connection) -> None:
    assert db.execute("SELECT mailroom_suppress('zoë@bücher.de')").fetchone() == ("zoë@xn--bcher-kva.de",)
    assert db.execute("SELECT mailroom_is_suppressed('zoë@XN--BCHER-KVA.DE')").fetchone() == (True,)
    assert db.execute("SELECT mailroom_is_suppressed('zoë@Bücher.De')").fetchone() == (True,)
    assert db.execute("SELECT address FROM suppressions").fetchone() == ("zoë@bücher.de",)
    assert db.execute("SELECT mailroom_unsuppress('zoë@bücher.DE')").fetchone() == (True,)


def test_a_unicode_domain_the_rule_refuses_is_refused_with_the_rule_s_reason(db: psycopg.Connection) -> None:
    for call in ("mailroom_suppress", "mailroom_is_suppressed", "mailroom_unsuppress"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="holds a character the rule refuses"):
            db.execute(f"SELECT {call}('zoë@BÜCHER.de')")
    assert db.execute("SELECT count(*) FROM suppressions").fetchone() == (0,)


def test_unsuppress_takes_any_spelling_off_the_list_and_says_whether_it_was_on_it(db: psycopg.Connection) -> None:
    db.execute("SELECT mailroom_suppress('Bob@Example.org', 'bounce', 'smtp; 550 5.1.1 user unknown')")
    assert db.execute("SELECT mailroom_unsuppress('Bob@example.ORG')").fetchone() == (True,)
    assert db.execute("SELECT mailroom_unsuppress('Bob@example.ORG')").fetchone() == (False,)
    assert db.execute("SELECT mailroom_is_suppressed('Bob@Example.org')").fetchone() == (False,)


def test_an_unknown_reason_is_refused(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="suppressions_reason_is_known"):
        db.execute("SELECT mailroom_suppress('a@example.com', 'spam')")


def test_a_text_without_at_cannot_be_suppressed(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not an email address"):
        db.execute("SELECT mailroom_suppress('example.com')")


def _status(db: psycopg.Connection, ref: str) -> tuple[str, datetime] | None:
    return db.execute("SELECT status, status_at FROM token_deliveries WHERE token_ref = %s", (ref,)).fetchone()


def test_a_later_stage_wins_whatever_order_the_events_arrive_in(db: psycopg.Connection) -> None:
    ref = "00112233445566aa"
    record = "SELECT mailroom_record_delivery(%s, %s, %s)"
    assert db.execute(record, (ref, "delivered", T0 + timedelta(seconds=2))).fetchone() == (True,)
    assert db.execute(record, (ref, "sent", T0)).fetchone() == (False,)  # the Send came in late
    assert db.execute(record, (ref, "delayed", T0 + timedelta(seconds=1))).fetchone() == (False,)
    assert _status(db, ref) == ("delivered", T0 + timedelta(seconds=2))
    assert db.execute(record, (ref, "complained", T0 + timedelta(days=1))).fetchone() == (True,)
    assert db.execute(record, (ref, "bounced", T0 + timedelta(days=2))).fetchone() == (False,)
    assert _status(db, ref) == ("complained", T0 + timedelta(days=1))


def test_within_a_stage_the_later_event_wins(db: psycopg.Connection) -> None:
    ref = "00112233445566bb"
    db.execute("SELECT mailroom_record_delivery(%s, 'delayed', %s, diagnostic => 'first')", (ref, T0))
    db.execute("SELECT mailroom_record_delivery(%s, 'delayed', %s, diagnostic => 'old')", (ref, T0 - timedelta(1)))
    assert db.execute("SELECT diagnostic FROM token_deliveries").fetchone() == ("first",)


def test_a_token_ref_is_stored_in_lower_case_and_must_be_16_hex_digits(db: psycopg.Connection) -> None:
    db.execute("SELECT mailroom_record_delivery('ABCDEF0123456789', 'sent', now())")
    assert _status(db, "abcdef0123456789") is not None
    with pytest.raises(psycopg.errors.CheckViolation, match="token_deliveries_ref_is_16_hex"):
        db.execute("SELECT mailroom_record_delivery('abc', 'sent', now())")
    with pytest.raises(psycopg.errors.CheckViolation, match="token_deliveries_status_is_known"):
        db.execute("SELECT mailroom_record_delivery('abcdef0123456789', 'lost', now())")


def test_the_view_answers_for_a_token_and_for_an_account_in_one_query(db: psycopg.Connection) -> None:
    account, token, ref = _account(db, "Carol@Example.com", "carol")
    other_account, _, _ = _account(db, "dan@example.com", "dan")
    view = "SELECT token_ref, status, diagnostic, address, suppressed_reason FROM delivery_status"
    assert db.execute(view + " WHERE token_id = %s", (token,)).fetchall() == [
        (ref, None, None, "Carol@Example.com", None)
    ]
    db.execute(
        "SELECT mailroom_record_delivery(%s, 'bounced', now(), 'Carol@Example.com', 'smtp; 550 5.1.1 user unknown')",
        (ref,),
    )
    db.execute("SELECT mailroom_suppress('carol@example.com')")  # another mailbox: not Carol's
    assert db.execute(view + " WHERE account_id = %s", (account,)).fetchall() == [
        (ref, "bounced", "smtp; 550 5.1.1 user unknown", "Carol@Example.com", None)
    ]
    db.execute("SELECT mailroom_suppress('Carol@EXAMPLE.COM', 'bounce')")
    assert db.execute(view + " WHERE account_id = %s", (account,)).fetchone()[4] == "bounce"
    assert db.execute(
        "SELECT status, suppressed_reason FROM delivery_status WHERE account_id = %s", (other_account,)
    ).fetchall() == [(None, None)]


def test_the_view_gives_the_suppression_of_an_address_with_a_unicode_domain(db: psycopg.Connection) -> None:
    account, _, _ = _account(db, "zoë@bücher.de", "zoe")
    db.execute("SELECT mailroom_suppress('zoë@XN--BCHER-KVA.de', 'complaint')")
    assert db.execute("SELECT suppressed_reason FROM delivery_status WHERE account_id = %s", (account,)).fetchall() == [
        ("complaint",)
    ]


def test_the_view_reads_an_account_s_tokens_through_an_index(db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO accounts (email, login) SELECT 'u' || i || '@x.org', 'u' || i FROM generate_series(1, 2000) i"
    )
    db.execute("ANALYZE")
    plan = "\n".join(r[0] for r in db.execute("EXPLAIN SELECT * FROM delivery_status WHERE account_id = 7").fetchall())
    assert "Seq Scan on tokens" not in plan and "tokens_account_action_created_idx" in plan, plan


def test_rolling_back_0007_leaves_nothing_of_it_and_it_applies_again(empty_database_url: str) -> None:
    applied = migrate.apply(empty_database_url).applied
    undone: list[str] = []
    while "0007_deliverability" not in undone:
        rolled = migrate.rollback_last(empty_database_url).rolled_back
        assert rolled, undone
        undone += rolled
    with pg_connect(empty_database_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname IN "
            "('suppressions', 'delivery_events', 'token_deliveries', 'delivery_status')"
        ).fetchone()
        functions = conn.execute(
            "SELECT array_agg(proname ORDER BY proname) FROM pg_proc WHERE proname IN ('mailroom_address_key', "
            "'mailroom_suppress', 'mailroom_unsuppress', 'mailroom_is_suppressed', 'mailroom_record_delivery', "
            "'mailroom_delivery_rank', 'mailroom_checked_address_key')"
        ).fetchone()
    assert left == (0,) and functions == (None,)
    assert sorted(migrate.apply(empty_database_url).applied) == sorted(undone)
    assert "0007_deliverability" in applied
