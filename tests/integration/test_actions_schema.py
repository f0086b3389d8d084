"""Migration 0008: the actions registry, request() and consume(), the recipients view, the
account key, and the collector's claim query reading through the view."""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest
from conftest import pg_connect
from psycopg.types.numeric import Int8

from mailroom import migrate
from mailroom.db import queries

SHIPPED = [
    ("activation", 1, "/activate", False, True, ["provisioned"]),
    ("password_recovery", 2, "/recover", True, True, ["active"]),
    ("email_change", 3, "/email-change", False, True, ["active"]),
    ("magic_link", 4, "/magic-link", False, True, ["active"]),
    ("invitation", 5, "/invitation", False, True, None),
    ("welcome", 6, "/welcome", False, False, ["active"]),
]


def claim(conn: psycopg.Connection, queue: str = "q", cooldown: timedelta = timedelta(0)) -> list[tuple]:
    """Every row of the collector's claim query for `queue` (rolled back: the queue keeps them)."""
    with conn.transaction(force_rollback=True):
        return conn.execute(
            queries("collector.sql")["claim_chunk"],
            {"queue": queue, "after": Int8(0), "limit": Int8(1000), "cooldown": cooldown},
        ).fetchall()


def account(conn: psycopg.Connection, login: str, status: str = "active", locale: str | None = None) -> int:
    row = conn.execute(
        "INSERT INTO accounts (email, login, status, locale) VALUES (%s, %s, %s, %s) RETURNING id",
        (f"{login}@example.com", login, status, locale),
    ).fetchone()
    assert row
    return int(row[0])


def test_the_registry_ships_six_actions_and_the_collector_reads_it_in_number_order(db: psycopg.Connection) -> None:
    rows = db.execute(queries("collector.sql")["action_registry"]).fetchall()
    assert [(n, num, p, code, link, st) for n, num, p, code, link, _life, _cool, st in rows] == SHIPPED
    assert {name: life for name, _n, _p, _c, _l, life, _cool, _s in rows}["activation"] == timedelta(minutes=15)
    assert all(cool is None for *_rest, cool, _st in rows)


def test_request_creates_a_token_of_each_action_and_the_claim_query_says_what_to_send(db: psycopg.Connection) -> None:
    db.execute("SELECT mailroom_register_queue('q', 'q')")
    new = account(db, "newbie", "provisioned", locale="pt-BR")
    db.execute("DELETE FROM job_tokens")  # the provisioned account's own activation token
    ada = account(db, "ada", locale="pt")
    made = {
        "activation": db.execute("SELECT request('activation', %s)", (new,)).fetchone(),
        "password_recovery": db.execute("SELECT request('password_recovery', %s)", (ada,)).fetchone(),
        "email_change": db.execute("SELECT request('email_change', %s, 'ada.new@example.com')", (ada,)).fetchone(),
        "magic_link": db.execute("SELECT request('magic_link', %s, locale => 'en')", (ada,)).fetchone(),
        "invitation": db.execute("SELECT request('invitation', email => 'guest@example.com')").fetchone(),
        "welcome": db.execute("SELECT request('welcome', %s)", (ada,)).fetchone(),
    }
    rows = {row[2]: row for row in claim(db)}
    assert set(rows) == set(made)
    for name, (token,) in made.items():
        assert rows[name][0] == token and rows[name][1] is None, rows[name]  # the token's id, sendable
    # token, skip, action_name, email, login, secret, code, account, created_at, locale
    assert rows["activation"][3:5] == ("newbie@example.com", "newbie") and rows["activation"][9] == "pt-BR"
    assert rows["email_change"][3] == "ada.new@example.com" and rows["email_change"][9] == "pt"
    assert rows["magic_link"][9] == "en"
    assert rows["invitation"][3:5] == ("guest@example.com", "") and rows["invitation"][7] is None
    assert len(rows["welcome"]) == 10
    lifetimes = dict(
        db.execute(
            "SELECT action, expires_at - created_at FROM tokens WHERE id = ANY(%s)", ([t for (t,) in made.values()],)
        )
    )
    assert lifetimes["invitation"] == timedelta(days=7) and lifetimes["magic_link"] == timedelta(minutes=15)


def test_request_refuses_an_unknown_action_a_missing_recipient_and_a_status_the_action_is_not_for(
    db: psycopg.Connection,
) -> None:
    ada = account(db, "ada")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown action 'nope'"):
        db.execute("SELECT request('nope', %s)", (ada,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="action magic_link: no recipient 999"):
        db.execute("SELECT request('magic_link', 999)")
    with pytest.raises(psycopg.errors.CheckViolation, match="action activation is not sent to recipient .* 'active'"):
        db.execute("SELECT request('activation', %s)", (ada,))
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="invitation is sent to an address"):
        db.execute("SELECT request('invitation')")
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="magic_link is sent to an account"):
        db.execute("SELECT request('magic_link', email => 'x@example.com')")
    with pytest.raises(psycopg.errors.CheckViolation, match="tokens_email_is_sendable"):
        db.execute("SELECT request('invitation', email => 'not an address')")


def test_a_plain_insert_still_works_and_gets_its_action_lifetime_and_checks(db: psycopg.Connection) -> None:
    ada = account(db, "ada")
    row = db.execute(
        "INSERT INTO tokens (action, account) VALUES ('password_recovery', %s) RETURNING expires_at - created_at",
        (ada,),
    ).fetchone()
    assert row == (timedelta(minutes=15),)
    with pytest.raises(psycopg.errors.NotNullViolation, match="invitation is sent to an address"):
        db.execute("INSERT INTO tokens (action) VALUES ('invitation')")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="unknown action 'nope'"):
        db.execute("INSERT INTO tokens (action, account) VALUES ('nope', %s)", (ada,))


@pytest.mark.parametrize("locale", ["abcd", "pt_BR", "", "p", "pt-" + "x" * 40])
def test_a_locale_the_wire_cannot_carry_is_refused_when_it_is_stored(db: psycopg.Connection, locale: str) -> None:
    ada = account(db, "ada")
    with pytest.raises(psycopg.errors.CheckViolation, match="tokens_locale_is_a_tag"):
        db.execute("SELECT request('password_recovery', %s, NULL, %s)", (ada, locale))
    with pytest.raises(psycopg.errors.CheckViolation, match="accounts_locale_is_a_tag"):
        db.execute("UPDATE accounts SET locale = %s WHERE id = %s", (locale, ada))
    for fine in ("pt", "pt-BR", "zh-Hant-TW"):
        db.execute("SELECT request('password_recovery', %s, NULL, %s)", (ada, fine))


def test_request_within_the_action_cooldown_returns_the_earlier_unconsumed_token(db: psycopg.Connection) -> None:
    ada = account(db, "ada")
    first = db.execute("SELECT request('magic_link', %s)", (ada,)).fetchone()
    assert db.execute("SELECT request('magic_link', %s)", (ada,)).fetchone() != first  # no cooldown of its own
    db.execute("UPDATE actions SET cooldown = interval '1 minute' WHERE name IN ('magic_link', 'email_change')")
    latest = db.execute("SELECT request('magic_link', %s)", (ada,)).fetchone()
    assert db.execute("SELECT request('magic_link', %s)", (ada,)).fetchone() == latest
    change = db.execute("SELECT request('email_change', %s, 'one@example.com')", (ada,)).fetchone()
    assert db.execute("SELECT request('email_change', %s, 'one@example.com')", (ada,)).fetchone() == change
    assert db.execute("SELECT request('email_change', %s, 'two@example.com')", (ada,)).fetchone() != change
    db.execute("UPDATE tokens SET consumed_at = now() WHERE id = %s", latest)
    assert db.execute("SELECT request('magic_link', %s)", (ada,)).fetchone() != latest  # consumed: a new one


def test_consume_takes_each_action_once_with_the_code_where_it_is_signed(db: psycopg.Connection) -> None:
    new = account(db, "newbie", "provisioned")
    ada = account(db, "ada")
    tokens = {}
    for name, who, email in (
        ("password_recovery", ada, None),
        ("email_change", ada, "ada.new@example.com"),
        ("magic_link", ada, None),
        ("invitation", None, "guest@example.com"),
        ("welcome", ada, None),
    ):
        (token,) = db.execute("SELECT request(%s, %s, %s)", (name, who, email)).fetchone() or ()
        tokens[name] = db.execute("SELECT id, secret, code FROM tokens WHERE id = %s", (token,)).fetchone()
    tokens["activation"] = db.execute("SELECT id, secret, code FROM tokens WHERE account = %s", (new,)).fetchone()

    def consume(action: str, secret: bytes, code: str | None = None) -> list[tuple]:
        return db.execute("SELECT * FROM consume(%s, %s, %s)", (action, secret, code)).fetchall()

    token_id, secret, code = tokens["password_recovery"]
    wrong = "00000" if code != "00000" else "11111"
    assert consume("password_recovery", secret, wrong) == []
    assert consume("password_recovery", secret) == []
    assert consume("magic_link", secret, code) == []  # another action's token
    assert consume("password_recovery", secret, code) == [(token_id, ada, "ada@example.com")]
    assert consume("password_recovery", secret, code) == []  # once
    assert consume("email_change", tokens["email_change"][1]) == [
        (tokens["email_change"][0], ada, "ada.new@example.com")
    ]
    assert consume("invitation", tokens["invitation"][1]) == [(tokens["invitation"][0], None, "guest@example.com")]
    assert consume("magic_link", tokens["magic_link"][1])[0][1] == ada
    assert consume("welcome", tokens["welcome"][1])[0][1] == ada
    assert consume("activation", tokens["activation"][1]) == [(tokens["activation"][0], new, "newbie@example.com")]
    assert db.execute("SELECT status::text FROM accounts WHERE id = %s", (new,)).fetchone() == ("active",)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown action 'nope'"):
        consume("nope", secret)


def test_mailroom_consume_token_still_works_on_a_bigint_installation(db: psycopg.Connection) -> None:
    new = account(db, "newbie", "provisioned")
    (secret,) = db.execute("SELECT secret FROM tokens WHERE account = %s", (new,)).fetchone() or ()
    assert db.execute("SELECT mailroom_consume_token(%s)", (secret,)).fetchone() == (new,)
    assert db.execute("SELECT status::text FROM accounts WHERE id = %s", (new,)).fetchone() == ("active",)


def test_consume_refuses_a_recipient_in_a_status_the_action_is_not_for(db: psycopg.Connection) -> None:
    ada = account(db, "ada")
    (token,) = db.execute("SELECT request('magic_link', %s)", (ada,)).fetchone() or ()
    db.execute("UPDATE accounts SET status = 'suspended' WHERE id = %s", (ada,))
    (secret,) = db.execute("SELECT secret FROM tokens WHERE id = %s", (token,)).fetchone() or ()
    assert db.execute("SELECT * FROM consume('magic_link', %s)", (secret,)).fetchall() == []


def test_deleting_a_built_in_account_deletes_its_tokens(db: psycopg.Connection) -> None:
    ada = account(db, "ada")
    db.execute("SELECT request('magic_link', %s)", (ada,))
    db.execute("DELETE FROM accounts WHERE id = %s", (ada,))
    assert db.execute("SELECT count(*) FROM tokens WHERE account = %s", (ada,)).fetchone() == (0,)


def test_the_claim_query_skips_a_recipient_in_the_wrong_status_or_gone(db: psycopg.Connection) -> None:
    db.execute("SELECT mailroom_register_queue('q', 'q')")
    ada, bob = account(db, "ada"), account(db, "bob")
    db.execute("SELECT request('magic_link', %s), request('welcome', %s)", (ada, bob))
    db.execute("UPDATE accounts SET status = 'suspended' WHERE id = %s", (ada,))
    db.execute("INSERT INTO tokens (action, account) VALUES ('magic_link', 424242)")  # no such recipient
    assert sorted((row[2], row[1]) for row in claim(db)) == [
        ("magic_link", "account_status"),
        ("magic_link", "account_status"),
        ("welcome", None),
    ]


def test_the_action_cooldown_overrides_the_collector_cooldown_in_the_claim_query(db: psycopg.Connection) -> None:
    db.execute("SELECT mailroom_register_queue('q', 'q')")
    ada = account(db, "ada")
    db.execute("SELECT request('magic_link', %s)", (ada,))
    db.execute("DELETE FROM job_tokens")  # read earlier: an email went out
    db.execute("SELECT request('magic_link', %s)", (ada,))
    assert [row[1] for row in claim(db, cooldown=timedelta(0))] == [None]
    db.execute("UPDATE actions SET cooldown = interval '1 hour' WHERE name = 'magic_link'")
    assert [row[1] for row in claim(db, cooldown=timedelta(0))] == ["cooldown"]


@pytest.fixture
def uuid_app(empty_database_url: str) -> str:
    """An app database with its own users (uuid keys) and a public.accounts of its own,
    migrated with --account-key uuid and the recipients view over its users."""
    with pg_connect(empty_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, note text)")  # the app's: untouched
        conn.execute("INSERT INTO public.accounts VALUES (1, 'mine')")
        conn.execute(
            "CREATE TABLE public.users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text, "
            "username text NOT NULL, lang text, is_active boolean NOT NULL DEFAULT false)"
        )
    migrate.apply(empty_database_url, account_key_type="uuid")
    with pg_connect(empty_database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE VIEW recipients AS SELECT id AS account, email, username AS login, lang AS locale, "
            "CASE WHEN is_active THEN 'active' ELSE 'provisioned' END AS status FROM public.users"
        )
    return empty_database_url


def test_an_app_with_uuid_users_gets_tokens_through_its_own_recipients_view(uuid_app: str) -> None:
    with pg_connect(uuid_app, autocommit=True) as db:
        db.execute("SELECT mailroom_register_queue('q', 'q')")
        ada = uuid.uuid4()
        db.execute(
            "INSERT INTO public.users (id, email, username, lang, is_active) VALUES (%s, 'ada@app.example', 'Ada', 'pt-BR', true)",
            (ada,),
        )
        made = {}
        for name, email in (
            ("password_recovery", None),
            ("email_change", "ada2@app.example"),
            ("magic_link", None),
            ("welcome", None),
        ):
            made[name] = db.execute("SELECT request(%s, %s, %s)", (name, ada, email)).fetchone()
        made["invitation"] = db.execute("SELECT request('invitation', email => 'guest@app.example')").fetchone()
        rows = {row[2]: row for row in claim(db)}
        assert set(rows) == set(made) and all(row[1] is None for row in rows.values())
        assert rows["magic_link"][3:5] == ("ada@app.example", "Ada") and rows["magic_link"][7] == ada
        assert rows["magic_link"][9] == "pt-BR"
        assert rows["email_change"][3] == "ada2@app.example"
        with pytest.raises(psycopg.errors.CheckViolation, match="activation is not sent"):
            db.execute("SELECT request('activation', %s)", (ada,))
        (secret,) = db.execute("SELECT secret FROM tokens WHERE id = %s", made["magic_link"]).fetchone() or ()
        assert db.execute("SELECT * FROM consume('magic_link', %s)", (secret,)).fetchall() == [
            (made["magic_link"][0], ada, "ada@app.example")
        ]
        assert db.execute("SELECT to_regprocedure('mailroom_consume_token(bytea, text)')").fetchone() == (None,)
        assert db.execute("SELECT * FROM public.accounts").fetchall() == [(1, "mine")]


def test_asking_an_installation_for_the_other_account_key_is_an_error(uuid_app: str, database_url: str) -> None:
    with pytest.raises(migrate.MigrateRefused, match="account key is uuid.*cannot become bigint"):
        migrate.apply(uuid_app, account_key_type="bigint")
    assert migrate.apply(uuid_app, account_key_type="uuid").applied == []
    with pytest.raises(migrate.MigrateRefused, match="account key is bigint.*cannot become uuid"):
        migrate.apply(database_url, account_key_type="uuid")
    assert migrate.apply(database_url).applied == []


def test_functions_work_for_an_app_whose_search_path_is_public(database_url: str) -> None:
    """The app inserts with qualified names and its default search_path: the triggers and
    functions find mailroom's objects through their pinned search_path."""
    with psycopg.connect(database_url, autocommit=True) as app:
        assert app.execute("SHOW search_path").fetchone() == ('"$user", public',)
        app.execute("SELECT mailroom.mailroom_register_queue('q', 'q')")
        row = app.execute(
            "INSERT INTO mailroom.accounts (email, login, status) VALUES ('zoë@bücher.example', 'zoe', 'active') RETURNING id"
        ).fetchone()
        assert row
        (token,) = app.execute("SELECT mailroom.request('magic_link', %s)", row).fetchone() or ()
        app.execute("SELECT mailroom.mailroom_suppress('zoë@bücher.EXAMPLE')")
        status = app.execute(
            "SELECT suppressed_reason FROM mailroom.delivery_status WHERE token_id = %s", (token,)
        ).fetchone()
        assert status == ("manual",)
        assert app.execute("SELECT count(*) FROM mailroom.job_tokens").fetchone() == (1,)
        unpinned = app.execute(
            "SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc "
            "WHERE pronamespace = 'mailroom'::regnamespace AND proconfig IS NULL"
        ).fetchone()
        assert unpinned == (sorted(migrate.NOT_PINNED),)
