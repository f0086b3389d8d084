"""The address rule in the database (migrations/0006_email_rule.sql) against a real PostgreSQL:
the same table as the sender's check (tests/address_table.py), the same verdicts, the same
reasons."""

from __future__ import annotations

import random
import re

import psycopg
import pytest
from address_table import ACCEPTED, ADDRESSES, REFUSED
from conftest import pg_connect

from mailroom import address_chars, addresses, migrate

CONSTRAINT = "accounts_email_is_sendable"


def test_the_database_gives_every_address_of_the_table_the_senders_verdict_and_reason(db: psycopg.Connection) -> None:
    emails = [c.address for c in ADDRESSES]
    rows = db.execute(
        "SELECT e, mailroom_email_problem(e) FROM unnest(%s::text[]) WITH ORDINALITY AS t(e, i) ORDER BY i", (emails,)
    ).fetchall()
    assert [(e, addresses.problem(e)) for e in emails] == rows
    for case, (_, reason) in zip(ADDRESSES, rows, strict=True):
        assert (reason is None) if case.refused is None else (case.refused in reason), case.why


def test_every_accepted_address_goes_into_accounts_with_its_activation_token(db: psycopg.Connection) -> None:
    with db.transaction():
        for i, case in enumerate(ACCEPTED):
            db.execute("INSERT INTO accounts (email, login) VALUES (%s, %s)", (case.address, f"ok{i}"))
    assert db.execute("SELECT count(*) FROM accounts JOIN tokens ON tokens.account = accounts.id").fetchone() == (
        len(ACCEPTED),
    )


def test_an_insert_of_a_refused_address_fails_naming_the_rule_and_leaves_no_token(db: psycopg.Connection) -> None:
    for case in REFUSED:
        with pytest.raises((psycopg.errors.IntegrityError, psycopg.errors.DataError)) as failed:
            db.execute("INSERT INTO accounts (email, login) VALUES (%s, 'x')", (case.address,))
        error = failed.value
        if len(case.address) > 254:  # the column's own limit speaks first
            assert isinstance(error, psycopg.errors.StringDataRightTruncation), case.id
        elif any(0x01 <= ord(ch) <= 0x1F or 0x7F <= ord(ch) <= 0x9F for ch in case.address):
            # 0005's constraint or this one, whichever PostgreSQL checks first
            assert error.diag.constraint_name in (CONSTRAINT, "accounts_email_has_no_control_chars"), case.id
        else:
            assert isinstance(error, psycopg.errors.CheckViolation), case.id
            assert error.sqlstate == "23514" and error.diag.constraint_name == CONSTRAINT, case.id
            assert f'violates check constraint "{CONSTRAINT}"' in str(error), case.id
    assert db.execute("SELECT count(*) FROM accounts").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM tokens").fetchone() == (0,)


def test_an_update_to_a_refused_address_fails_and_the_account_keeps_its_address(db: psycopg.Connection) -> None:
    db.execute("INSERT INTO accounts (email, login) VALUES ('ada@example.com', 'ada')")
    with pytest.raises(psycopg.errors.CheckViolation, match=CONSTRAINT):
        db.execute("UPDATE accounts SET email = 'ada@example..com' WHERE login = 'ada'")
    assert db.execute("SELECT email FROM accounts").fetchone() == ("ada@example.com",)


# Pieces that make the rule's every branch likely: separators, quotes, specials, IDN characters,
# a right-to-left letter, spaces and invisibles, capitals, digits, long runs.
_PIECES = [
    *"@..--__ ,\"'\\[]()<>;:+!#~`",
    "a",
    "Z",
    "0",
    "9",
    "x" * 30,
    "ü",
    "Ü",
    "u\u0308",
    "\u0308",
    "例",
    "广告",
    "δ",
    "ß",
    "ς",
    "\u00b7",
    "מ",
    "ع",
    "\u00a0",
    "\u200b",
    "\u202e",
    "\ue000",
    "☃",
    "é" * 20,
    "xn--",
    "com",
    "example",
    ".com",
    "@example.com",
]


_LOCAL_PIECES = ["a", "b", "c", "b.c", "ü", "用户", '"q.q"', '"x y"', "+", "é" * 20, ".", "a" * 30, "\u200b"]
_LABEL_PIECES = [
    "a",
    "b",
    "c",
    "d",
    "ü",
    "例",
    "δ",
    "Z",
    "0",
    "-",
    "ü",
    "Ü",
    "u\u0308",
    "\u0308",
    "例",
    "δ",
    "ß",
    "מ",
    "☃",
    "x" * 20,
    "xn--",
    "é" * 12,
    "123",
]


def test_random_addresses_get_the_same_verdict_and_reason_in_the_database_and_in_python(
    db: psycopg.Connection,
) -> None:
    rng = random.Random(17)  # fixed: the same strings on every run

    def some(pieces: list[str], most: int) -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(1, most)))

    emails = [some(_PIECES, 14) for _ in range(4000)]  # anything
    for _ in range(4000):  # shaped like an address, so that more of them get to the domain's rules
        labels = [some(_LABEL_PIECES, 3) for _ in range(rng.randint(1, 4))]
        emails.append(some(_LOCAL_PIECES, 3) + "@" + ".".join(labels))
    rows = db.execute(
        "SELECT e, mailroom_email_problem(e) FROM unnest(%s::text[]) WITH ORDINALITY AS t(e, i) ORDER BY i", (emails,)
    ).fetchall()
    differ = [(e, db_reason, addresses.problem(e)) for e, db_reason in rows if db_reason != addresses.problem(e)]
    assert differ == []
    assert sum(1 for _, reason in rows if reason is None) > 200  # both verdicts, many reasons exercised
    kinds = {re.sub(r"'.*'", "'…'", reason) for _, reason in rows if reason}
    assert len(kinds) >= 18, kinds


def test_the_database_punycode_is_the_one_python_and_idna_send(db: psycopg.Connection) -> None:
    rng = random.Random(3492)
    chars = [chr(cp) for cp in range(0x80, 0x3000)]
    chars = [c for c in chars if addresses.problem(f"a@a{c}.example") is None] + list("abcxyz0189-")
    assert len(chars) > 1000
    labels = ["bücher", "例子", "ü" * 57, "a-ü-b", "παράδειγμα"]
    labels += ["".join(rng.choice(chars) for _ in range(rng.randint(1, 40))) for _ in range(500)]
    rows = db.execute(
        "SELECT mailroom_punycode(l) FROM unnest(%s::text[]) WITH ORDINALITY AS t(l, i) ORDER BY i", (labels,)
    )
    assert [r[0] for r in rows.fetchall()] == [label.encode("punycode").decode("ascii") for label in labels]


def test_the_migration_holds_the_same_character_classes_as_the_sender(db: psycopg.Connection) -> None:
    (body,) = db.execute("SELECT prosrc FROM pg_proc WHERE proname = 'mailroom_email_problem'").fetchone()
    for name in ("DOMAIN_CHARS", "DOMAIN_MARKS", "LOCAL_REFUSED"):
        assert getattr(address_chars, name) in body, name


def test_the_rule_keeps_old_accounts_checks_every_new_write_and_validates_once_they_are_fixed(
    empty_database_url: str,
) -> None:
    migrate.apply(empty_database_url)
    undone: list[str] = []
    while "0006_email_rule" not in undone:  # back to just before it (and what came after)
        rolled = migrate.rollback_last(empty_database_url).rolled_back
        assert rolled, undone
        undone += rolled
    with pg_connect(empty_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO accounts (email, login, status) VALUES ('ok@example.com', 'ok', 'active'), "
            "('dot@example..com', 'dot', 'active'), ('bad@@example.com', 'bad', 'provisioned')"
        )
        assert migrate.apply(empty_database_url).applied == list(reversed(undone))  # old rows do not stop it
        listed = conn.execute(
            "SELECT login, mailroom_email_problem(email) FROM accounts "
            "WHERE mailroom_email_problem(email) IS NOT NULL ORDER BY login"
        ).fetchall()
        assert [login for login, _ in listed] == ["bad", "dot"]
        assert "more than one @" in listed[0][1] and "empty label" in listed[1][1]
        # new rows are checked; an old offender cannot be updated until its email is fixed
        with pytest.raises(psycopg.errors.CheckViolation, match=CONSTRAINT):
            conn.execute("INSERT INTO accounts (email, login) VALUES ('new@example..com', 'new')")
        with pytest.raises(psycopg.errors.CheckViolation, match=CONSTRAINT):
            conn.execute("UPDATE accounts SET status = 'suspended' WHERE login = 'dot'")
        with pytest.raises(psycopg.errors.CheckViolation, match=CONSTRAINT):
            conn.execute(f"ALTER TABLE accounts VALIDATE CONSTRAINT {CONSTRAINT}")
        conn.execute("UPDATE accounts SET email = 'dot@example.com', status = 'suspended' WHERE login = 'dot'")
        conn.execute("DELETE FROM accounts WHERE login = 'bad'")
        conn.execute(f"ALTER TABLE accounts VALIDATE CONSTRAINT {CONSTRAINT}")
        assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = %s", (CONSTRAINT,)).fetchone() == (
            True,
        )
