"""The collector signs by the actions registry: each action's path and code rule, its number and
name and the recipient's locale on the record, the registry read again for an action added
since, `unknown_action` for one still unknown, and the cooldown per action and recipient.

Queue.chunk is given claim rows of the query's shape (token, skip, action_name, email, login,
secret, code, account, created_at, locale) on a real connection whose `actions` table is the
registry, so that any action can be tried whatever the tokens table accepts."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from collector.queue import Queue
from mailroom.actions import (
    ACTIVATION,
    MAGIC_LINK,
    PASSWORD_RECOVERY,
    STANDARD_SPECS,
    Action,
    ActionSpec,
    load_registry,
)
from mailroom.signing import verify
from mailroom.verify import verify_link_token
from mailroom.wire import decode_line, encode_line

KEY = bytes.fromhex("5f" * 32)
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def conn(db: psycopg.Connection) -> psycopg.Connection:
    """The test database's connection, search_path = mailroom's schema (as the collector's)."""
    return db


def _row(
    token: int,
    action: str,
    *,
    account: Any = None,
    email: str | None = None,
    ago_s: float = 0.0,
    locale: str | None = None,
    code: str = "12345",
) -> tuple[Any, ...]:
    email = email or f"user{token}@example.com"
    secret = token.to_bytes(32, "big")
    return (
        token,
        None,
        action,
        email,
        f"user{token}",
        secret,
        code,
        account if account is not None else token,
        NOW - timedelta(seconds=ago_s),
        locale,
    )


def test_the_registry_in_the_database_holds_the_shipped_specs(conn: psycopg.Connection) -> None:
    assert load_registry(conn) == dict(STANDARD_SPECS)


def test_each_action_is_signed_with_its_path_and_carries_its_number_name_and_locale(conn: psycopg.Connection) -> None:
    queue = Queue(conn, "mailroom", 50, KEY, cooldown_s=0)
    rows = [_row(i, name, locale="pt-BR" if i % 2 else None) for i, name in enumerate(STANDARD_SPECS, 1)]
    chunk = queue.chunk(rows)
    assert [(r.action, r.locale) for r in chunk.records] == [
        (spec.action, "pt-BR" if i % 2 else None) for i, spec in enumerate(STANDARD_SPECS.values(), 1)
    ]
    for row, record in zip(rows, chunk.records, strict=True):
        assert verify_link_token(KEY, record.signed_token, record.action.name, record.code) == row[5]
        assert verify(
            KEY,
            record.signed_token,
            STANDARD_SPECS[row[2]].path,
            record.code if row[2] == "password_recovery" else None,
        )


def test_a_recipients_locale_the_wire_cannot_carry_is_spelled_as_a_tag_or_sent_in_the_default_locale(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # The app's recipients view may hold any text: a POSIX spelling, an empty string, a name.
    queue = Queue(conn, "mailroom", 50, KEY, cooldown_s=0)
    read = ["pt_BR", "", " ", "Portuguese (Brazil)", "en", "Portuguese (Brazil)", "zh-Hant-TW"]
    rows = [_row(i, "magic_link", locale=locale) for i, locale in enumerate(read, 1)]
    with caplog.at_level(logging.WARNING, logger="collector.queue"):
        chunk = queue.chunk(rows)
    assert [r.locale for r in chunk.records] == ["pt-BR", None, None, None, "en", None, "zh-Hant-TW"]
    decoded, problems = decode_line(encode_line(chunk.records).rstrip(b"\n"))
    assert problems == [] and [r.locale for r in decoded] == [r.locale for r in chunk.records]
    warned = [r.getMessage() for r in caplog.records if "is not a language tag" in r.getMessage()]
    assert warned == [
        "recipient locale 'Portuguese (Brazil)' is not a language tag (e.g. pt-BR): its emails use the default locale"
    ]


def test_an_action_added_since_the_registry_was_read_is_read_again_and_signed(conn: psycopg.Connection) -> None:
    queue = Queue(conn, "mailroom", 50, KEY, cooldown_s=0)
    conn.execute(
        "INSERT INTO actions (name, number, path, signs_code, link, lifetime, statuses) "
        "VALUES ('team_invite', 7, '/team-invite', true, true, interval '2 days', '{active}')"
    )
    chunk = queue.chunk([_row(1, "activation"), _row(2, "team_invite", code="55555")])
    team = ActionSpec(Action(7, "team_invite"), "/team-invite", signs_code=True, lifetime=timedelta(days=2))
    assert [r.action for r in chunk.records] == [ACTIVATION, team.action]
    assert verify_link_token(KEY, chunk.records[1].signed_token, team, "55555") == (2).to_bytes(32, "big")
    assert not chunk.skipped


def test_a_token_of_an_action_still_unknown_after_the_reload_is_skipped_logged_and_counted(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(conn, "mailroom", 50, KEY, cooldown_s=0)
    reads = []
    real = queue.use_registry

    def counting(registry: Any) -> None:
        reads.append(len(registry))
        real(registry)

    queue.use_registry = counting  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="collector.queue"):
        chunk = queue.chunk([_row(1, "magic_link"), _row(2, "nonesuch"), _row(3, "password_recovery")])
    assert [r.action for r in chunk.records] == [MAGIC_LINK, PASSWORD_RECOVERY]
    assert chunk.skipped == {"unknown_action": 1}
    assert chunk.suppressed == [2]  # read, not emailed: marked like the other unsendable tokens
    assert reads == [6]  # read again once for the chunk
    assert "token 2 not emitted: its action 'nonesuch' is not in the actions registry" in caplog.text


def test_the_cooldown_is_per_action_with_the_setting_as_default(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE actions SET cooldown = interval '0' WHERE name = 'magic_link'")
    conn.execute("UPDATE actions SET cooldown = interval '10 minutes' WHERE name = 'email_change'")
    queue = Queue(conn, "mailroom", 50, KEY, cooldown_s=60)
    rows = [
        _row(1, "password_recovery", account=7),
        _row(2, "password_recovery", account=7, ago_s=30),  # within the setting's 60 s: skipped
        _row(3, "magic_link", account=7),
        _row(4, "magic_link", account=7, ago_s=1),  # magic_link's cooldown is off
        _row(5, "email_change", account=7),
        _row(6, "email_change", account=7, ago_s=300),  # within email_change's 10 minutes: skipped
        _row(7, "activation", account=7, ago_s=120),  # the setting's 60 s have passed
        _row(8, "activation", account=7),
    ]
    chunk = queue.chunk(rows)
    assert sorted(int.from_bytes(bytes.fromhex(_secret(r)), "big") for r in chunk.records) == [1, 3, 4, 5, 7, 8]
    assert chunk.suppressed == [2, 6] and chunk.cooled == 2


def test_tokens_with_no_account_have_no_cooldown_as_in_the_chunk_query(conn: psycopg.Connection) -> None:
    queue = Queue(conn, "mailroom", 50, KEY, cooldown_s=60)
    rows = [
        (1, None, "invitation", "a@example.com", "", (1).to_bytes(32, "big"), "11111", None, NOW, None),
        (2, None, "invitation", "b@example.com", "", (2).to_bytes(32, "big"), "22222", None, NOW, None),
        (3, None, "invitation", "a@example.com", "", (3).to_bytes(32, "big"), "33333", None, NOW, None),
    ]
    chunk = queue.chunk(rows)
    assert [r.email for r in chunk.records] == ["a@example.com", "b@example.com", "a@example.com"]
    assert chunk.suppressed == []


def _secret(record: Any) -> str:
    return verify_link_token(KEY, record.signed_token, record.action.name, record.code).hex()
