"""The wire format: byte-compatible with the earlier implementation, safe for any field."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mailroom import wire
from mailroom.actions import ACTIVATION, MAGIC_LINK, PASSWORD_RECOVERY, WELCOME, Action, spec_for
from mailroom.signing import sign

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "interop_vectors.json").read_text())
KEY = bytes.fromhex(VECTORS["secret_key_hex"])


def _vector_records() -> list[wire.Record]:
    return [
        wire.Record(
            action=spec_for(row["action"]).action,
            email=row["email"],
            login=row["login"],
            secret=sign(KEY, row["action"], bytes.fromhex(row["secret_hex"]), row["code"]),
            code=row["code"],
        )
        for row in VECTORS["rows"]
    ]


def test_encoder_reproduces_the_earlier_implementations_line_byte_for_byte() -> None:
    assert wire.encode_line(_vector_records()) == VECTORS["line"].encode() + b"\n"


def test_decoder_reads_the_earlier_implementations_unquoted_line() -> None:
    records, rejected = wire.decode_line(VECTORS["line"].encode())
    assert rejected == []
    assert records == _vector_records()


def _record(login: str = "l", email: str = "x@example.com") -> wire.Record:
    return wire.Record(ACTIVATION, email, login, sign(KEY, ACTIVATION, b"\1" * 32, "12345"), "12345")


@pytest.mark.parametrize("login", ["a,b", 'say "hi"', "Zoë 李", '"', ",", "", 'o"neil', '"a,b",c', "\u2028 \u2029x"])
def test_awkward_logins_round_trip(login: str) -> None:
    record = _record(login)
    line = wire.encode_line([record, record])
    (one,) = list(wire.lines(io.BytesIO(line)))
    assert wire.decode_line(one) == ([record, record], [])


@pytest.mark.parametrize("bad", ["two\nlines", "cr\rhere", "tab\there", "nul\0", "del\x7f", "c1\x85"])
def test_the_encoder_refuses_a_control_character_in_any_field(bad: str) -> None:
    for record in (_record(login=bad), _record(email=f"{bad}@example.com")):
        assert wire.control_char_in(record) in ("login", "email")
        with pytest.raises(wire.WireError, match="control character"):
            wire.encode_line([record])


@pytest.mark.parametrize("bad", ["cr\rhere", "tab\there", "del\x7f", "c1\x85"])
def test_the_decoder_rejects_a_record_with_a_control_character_and_keeps_its_neighbours(bad: str) -> None:
    good = wire.encode_record(_record())
    hand_written = good.replace(",l,", "," + bad + ",", 1)  # as no encoder of ours would write it
    records, rejected = wire.decode_line(f"{good},{hand_written},{good}".encode())
    assert records == [_record(), _record()]
    assert len(rejected) == 1 and "username contains a control character" in rejected[0].reason


def test_quoted_fields_follow_rfc_4180() -> None:
    record = wire.Record(ACTIVATION, "x@example.com", 'say "hi", ok', "t" * 86, "00001")
    assert wire.encode_record(record).split(",", 2)[2].startswith('"say ""hi"", ok",')


def test_a_quote_inside_a_bare_field_is_literal_as_the_earlier_implementation_wrote_it() -> None:
    token = sign(KEY, ACTIVATION, b"\2" * 32, "00000")
    records, rejected = wire.decode_line(f'1,x@example.com,o"neil,{token},00000'.encode())
    assert rejected == [] and records[0].login == 'o"neil'


def test_malformed_records_are_rejected_with_a_reason_and_neighbours_survive() -> None:
    good = wire.encode_record(_vector_records()[0])
    bad_cases = {
        "3,x@example.com,l," + "A" * 86 + ",12345": "unknown action",
        "1,,l," + "A" * 86 + ",12345": "email is empty",
        "1,not-an-email,l," + "A" * 86 + ",12345": "email is not an address",
        "1,x@example.com,l,short,12345": "secret is not base64url",
        "1,x@example.com,l," + "A" * 86 + ",12a45": "code is not 5 digits",
    }
    for bad, reason in bad_cases.items():
        records, rejected = wire.decode_line(f"{good},{bad},{good}".encode())
        assert len(records) == 2, bad
        assert len(rejected) == 1 and reason in rejected[0].reason, (bad, rejected)


def test_a_field_count_that_is_not_a_multiple_of_five_rejects_the_line() -> None:
    records, rejected = wire.decode_line(b"1,a@b.c,login")
    assert records == [] and "not a multiple of 5" in rejected[0].reason


def test_rejects_never_carry_a_whole_signed_secret() -> None:
    token = _vector_records()[0].secret
    _, rejected = wire.decode_line(f"1,x@example.com,l,{token},1234x".encode())
    assert token not in json.dumps(rejected[0].fields)
    _, rejected = wire.decode_line(f"1,x@example.com,{token}".encode())
    assert token not in json.dumps(rejected[0].fields)


@pytest.mark.parametrize(
    "bad",
    [
        b'"\n',  # a stray quote alone: the by-hand case of issue 11
        b'"1,x@example.com,l,' + b"A" * 86 + b",12345\n",
        b'1,x@example.com,"open' + b"x" * 5000 + b"\n",
        b'1,"x@example.com"junk,l,' + b"A" * 86 + b",12345\n",
    ],
)
def test_an_unterminated_or_broken_quote_costs_its_own_line_and_nothing_else(bad: bytes) -> None:
    good = VECTORS["line"].encode() + b"\n"
    out = [wire.decode_line(line) for line in wire.lines([good, bad, good, good])]
    assert [records for records, _ in out] == [_vector_records(), [], _vector_records(), _vector_records()]
    assert [len(rejected) for _, rejected in out] == [0, 1, 0, 0]
    assert "quoted field" in out[1][1][0].reason


def test_crlf_line_endings_are_accepted() -> None:
    out = list(wire.lines([VECTORS["line"].encode() + b"\r\n"]))
    assert out == [VECTORS["line"].encode()]


@pytest.mark.parametrize("bad", ["two\nlines", "cr\rhere", "tab\there", "nul\0", "del\x7f", "c1\x85", "Zoë\x85"])
def test_a_control_character_in_one_record_of_a_long_line_is_refused_and_found_by_the_chunk_check(bad: str) -> None:
    good = [_record(login=f"user{i}") for i in range(50)]
    for record in (_record(login=bad), _record(email=f"{bad}@example.com")):
        line = good[:25] + [record] + good[25:]
        assert wire.control_char_in_any(line)
        with pytest.raises(wire.WireError, match="control character"):
            wire.encode_line(line)
    assert not wire.control_char_in_any(good + [_record(login="Zoë 李 \u2028")])


def test_a_long_line_with_commas_and_quotes_in_some_fields_is_quoted_record_by_record() -> None:
    records = [_record(login=f"user{i}") for i in range(50)]
    records[10] = _record(login="a,b")
    records[40] = _record(login='say "hi"')
    line = wire.encode_line(records)
    assert line == (",".join(wire.encode_record(r) for r in records) + "\n").encode()
    assert wire.decode_line(line.rstrip(b"\n")) == (records, [])


# ---------------------------------------------------------------- the action field
TOKEN = sign(KEY, "/any", b"\3" * 32)


def _with(action: Action, locale: str | None = None) -> wire.Record:
    return wire.Record(action, "x@example.com", "l", TOKEN, "12345", locale)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (_with(ACTIVATION), "1"),
        (_with(PASSWORD_RECOVERY), "2"),
        (_with(PASSWORD_RECOVERY, "pt-BR"), "2@pt-BR"),
        (_with(MAGIC_LINK), "4/magic_link"),
        (_with(MAGIC_LINK, "pt"), "4/magic_link@pt"),
        (_with(WELCOME, "zh-Hant-TW"), "6/welcome@zh-Hant-TW"),
        (_with(Action(32767, "z" * 63)), f"32767/{'z' * 63}"),
    ],
)
def test_the_action_field_carries_number_name_and_locale_and_round_trips(record: wire.Record, field: str) -> None:
    line = wire.encode_line([record, record])
    assert line == f"{wire.encode_record(record)},{wire.encode_record(record)}\n".encode()
    assert wire.encode_record(record).split(",")[0] == field
    assert wire.decode_line(line[:-1]) == ([record, record], [])


def test_actions_1_and_2_in_the_default_locale_are_written_as_they_always_were() -> None:
    assert wire.action_field(ACTIVATION) == "1" and wire.action_field(PASSWORD_RECOVERY) == "2"
    assert wire.encode_line(_vector_records()) == VECTORS["line"].encode() + b"\n"


def test_the_decoder_takes_the_names_of_1_and_2_when_they_are_written() -> None:
    records, rejected = wire.decode_line(f"1/activation,x@example.com,l,{TOKEN},12345".encode())
    assert rejected == [] and records == [_with(ACTIVATION)]
    assert records[0].action is ACTIVATION  # the shared object, not a copy


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("4", "unknown action '4' (an action from 3 is written with its name"),
        ("0", "unknown action '0'"),
        ("01", "unknown action '01'"),
        ("32768/big", "at most 32767"),
        ("1/magic_link", "action number 1 is activation"),
        ("7/password_recovery", "password_recovery is action number 2"),
        ("4/Magic", "unknown action '4/Magic'"),
        ("4/magic-link", "unknown action '4/magic-link'"),
        ("4/magic_link@", "locale '' is not a language tag"),
        ("4/magic_link@p", "locale 'p' is not a language tag"),
        ("4/magic_link@pt_BR", "locale 'pt_BR' is not a language tag"),
        ("4/magic_link@pt-", "locale 'pt-' is not a language tag"),
        ("2@pt@BR", "unknown action '2@pt@BR'"),
        ("4/magic_link@" + "a" * 40, "is not a language tag"),
    ],
)
def test_a_bad_action_field_rejects_its_record_with_the_reason_and_keeps_its_neighbours(
    field: str, reason: str
) -> None:
    good = wire.encode_record(_with(MAGIC_LINK, "pt"))
    records, rejected = wire.decode_line(f"{good},{field},x@example.com,l,{TOKEN},12345,{good}".encode())
    assert records == [_with(MAGIC_LINK, "pt")] * 2
    assert len(rejected) == 1 and reason in rejected[0].reason, rejected


def test_the_encoder_refuses_a_locale_the_decoder_would_not_take() -> None:
    with pytest.raises(wire.WireError, match="locale"):
        wire.encode_line([_with(MAGIC_LINK, "pt BR")])


def test_a_redacted_record_names_a_new_action_and_its_locale() -> None:
    assert wire.Record(ACTIVATION, "x@example.com", "l", TOKEN, "12345").redacted()["action"] == 1
    shown = _with(MAGIC_LINK, "pt").redacted()
    assert (shown["action"], shown["name"], shown["locale"]) == (4, "magic_link", "pt")
    assert TOKEN not in json.dumps(shown)
