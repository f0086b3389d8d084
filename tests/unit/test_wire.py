"""The wire format: byte-compatible with the earlier implementation, safe for any field."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mailroom import wire
from mailroom.signing import Action, sign

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "interop_vectors.json").read_text())
KEY = bytes.fromhex(VECTORS["secret_key_hex"])


def _vector_records() -> list[wire.Record]:
    return [
        wire.Record(
            action=Action.from_db(row["action"]),
            email=row["email"],
            login=row["login"],
            secret=sign(KEY, Action.from_db(row["action"]), bytes.fromhex(row["secret_hex"]), row["code"]),
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


@pytest.mark.parametrize("login", ["a,b", 'say "hi"', "two\nlines", "cr\rhere", "Zoë 李", '"', ",", "", 'o"neil'])
def test_awkward_logins_round_trip(login: str) -> None:
    record = wire.Record(
        Action.ACTIVATION, "x@example.com", login, sign(KEY, Action.ACTIVATION, b"\1" * 32, "12345"), "12345"
    )
    line = wire.encode_line([record, record])
    (logical,) = list(wire.logical_lines(io.BytesIO(line)))
    assert wire.decode_line(logical) == ([record, record], [])


def test_quoted_fields_follow_rfc_4180() -> None:
    record = wire.Record(Action.ACTIVATION, "x@example.com", 'say "hi", ok', "t" * 86, "00001")
    assert wire.encode_record(record).split(",", 2)[2].startswith('"say ""hi"", ok",')


def test_a_quote_inside_a_bare_field_is_literal_as_the_earlier_implementation_wrote_it() -> None:
    token = sign(KEY, Action.ACTIVATION, b"\2" * 32, "00000")
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


def test_an_unterminated_quote_costs_one_line_not_the_stream() -> None:
    good = VECTORS["line"].encode() + b"\n"
    bad = b'1,x@example.com,"open' + b"x" * (wire.MAX_QUOTED_FIELD_BYTES + 10) + b"\n"
    out = list(wire.logical_lines([bad, good]))
    assert isinstance(out[0], wire.Rejected)
    assert out[1] == VECTORS["line"].encode()


def test_crlf_line_endings_are_accepted() -> None:
    out = list(wire.logical_lines([VECTORS["line"].encode() + b"\r\n"]))
    assert out == [VECTORS["line"].encode()]
