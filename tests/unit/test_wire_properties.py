"""Property tests of the wire format (mailroom.wire) and a fuzz of the sender's reader.

The sender reads with `lines` (each physical line on its own) and `decode_line`; these are
what is fuzzed here.

Runs are deterministic: Hypothesis' "ci" profile (derandomized, no example database), so a
run never depends on what an earlier one saved in .hypothesis/. To hunt for new failures,
run with HYPOTHESIS_PROFILE=explore (random examples, more of them, failures remembered).
"""

from __future__ import annotations

import io
import os
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailroom import wire
from mailroom.actions import ACTIVATION, MAX_NUMBER, NAME_PATTERN, STANDARD, Action
from mailroom.signing import sign

KEY = bytes.fromhex("5f" * 32)
settings.register_profile("explore", max_examples=2000)
# Local settings, not a global profile: other test modules keep theirs.
WIRE = settings(
    settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Any Unicode scalar value that an email or login may hold: everything but the surrogates,
# which UTF-8 cannot carry, and the control characters (Cc), which the schema refuses
# (migrations/0005_no_control_chars.sql) and the encoder too.
ANY_CHAR = st.characters(blacklist_categories=("Cs", "Cc"))
ANY_TEXT = st.text(ANY_CHAR, max_size=wire.MAX_FIELD_CHARS)
# The shape the decoder accepts for an email: local@domain, no '@' and no whitespace in either.
ADDRESS_CHAR = ANY_CHAR.filter(lambda c: c != "@" and not c.isspace())
EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+")


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.text(ADDRESS_CHAR, min_size=1, max_size=126))
    domain = draw(st.text(ADDRESS_CHAR, min_size=1, max_size=wire.MAX_FIELD_CHARS - 1 - len(local)))
    return f"{local}@{domain}"


# Any action the registry may hold: the shipped ones, and any number from 3 with any valid name.
CUSTOM_ACTIONS = st.builds(
    Action,
    st.integers(min_value=3, max_value=MAX_NUMBER),
    st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda n: n not in ("activation", "password_recovery")),
)
ACTIONS = st.one_of(st.sampled_from(STANDARD), CUSTOM_ACTIONS)
LOCALES = st.one_of(st.none(), st.from_regex(wire.LOCALE_PATTERN, fullmatch=True).filter(wire.valid_locale))


@st.composite
def records(draw: st.DrawFn, email: st.SearchStrategy[str] | None = None) -> wire.Record:
    action = draw(ACTIONS)
    code = draw(st.from_regex(r"[0-9]{5}", fullmatch=True))
    secret = draw(st.binary(min_size=32, max_size=32))
    return wire.Record(
        action=action,
        email=draw(emails() if email is None else email),
        login=draw(ANY_TEXT),
        secret=sign(KEY, "/any", secret, code),
        code=code,
        locale=draw(LOCALES),
    )


BATCHES = st.lists(records(), min_size=1, max_size=10)


def _login(login: str) -> wire.Record:
    return wire.Record(ACTIVATION, "a@b", login, sign(KEY, ACTIVATION, bytes(32), "12345"), "12345")


def read(data: bytes) -> tuple[list[wire.Record], list[wire.Rejected]]:
    """What the sender's reader makes of a byte stream: physical lines split on LF only."""
    good: list[wire.Record] = []
    bad: list[wire.Rejected] = []
    for line in wire.lines(io.BytesIO(data)):
        found, rejected = wire.decode_line(line)
        good += found
        bad += rejected
    return good, bad


@WIRE
@given(BATCHES)
def test_any_batch_round_trips_through_encoder_reader_and_decoder(batch: list[wire.Record]) -> None:
    encoded = wire.encode_line(batch)
    assert encoded.count(b"\n") == 1 and b"\r" not in encoded  # one physical line, whatever the fields
    (line,) = list(wire.lines(io.BytesIO(encoded)))
    assert wire.decode_line(line) == (batch, [])


@WIRE
@given(BATCHES)
def test_a_line_is_its_records_encoded_one_by_one_and_joined(batch: list[wire.Record]) -> None:
    # encode_line checks and joins a whole line at once; it must write what the per-record
    # encoder (quoting, control-character refusal) would.
    assert wire.encode_line(batch) == (",".join(wire.encode_record(r) for r in batch) + "\n").encode("utf-8")


@given(st.lists(BATCHES, min_size=1, max_size=5))
def test_a_stream_of_batches_reads_back_record_for_record(batches: list[list[wire.Record]]) -> None:
    stream = b"".join(wire.encode_line(b) for b in batches)
    assert read(stream) == ([r for b in batches for r in b], [])


@WIRE
@given(st.lists(ANY_TEXT, min_size=1, max_size=12))
def test_any_text_fields_round_trip_through_quoting_and_line_joining(fields: list[str]) -> None:
    line = ",".join(wire._field(f) for f in fields).encode("utf-8") + b"\n"
    (one,) = list(wire.lines(io.BytesIO(line)))
    assert wire.split_fields(one) == [f.encode("utf-8") for f in fields]


@WIRE
@given(records(email=st.text(ANY_CHAR, min_size=1, max_size=wire.MAX_FIELD_CHARS)))
@example(wire.Record(ACTIVATION, "a@b\u2028", "x", sign(KEY, ACTIVATION, bytes(32), "12345"), "12345"))
def test_an_email_is_accepted_exactly_when_it_has_the_address_shape(record: wire.Record) -> None:
    good, bad = read(wire.encode_line([record]))
    if EMAIL_SHAPE.fullmatch(record.email):
        assert (good, bad) == ([record], [])
    else:
        assert good == [] and len(bad) == 1 and "email" in bad[0].reason


@WIRE
@given(records(), st.text(ANY_CHAR, min_size=1, max_size=8))
@example(wire.Record(ACTIVATION, "a@b", "x", sign(KEY, ACTIVATION, bytes(32), "12345"), "12345"), "１２３４５")
def test_a_code_is_accepted_exactly_when_it_is_5_ascii_digits(record: wire.Record, code: str) -> None:
    good, bad = read(wire.encode_line([wire.Record(record.action, record.email, record.login, record.secret, code)]))
    if re.fullmatch(r"[0-9]{5}", code):
        assert len(good) == 1 and bad == []
    else:
        assert good == [] and len(bad) == 1 and "code" in bad[0].reason


@WIRE
@given(st.binary(max_size=3000))
def test_the_reader_never_raises_on_arbitrary_bytes_and_gives_every_rejection_a_reason(data: bytes) -> None:
    _, bad = read(data)
    assert all(r.reason.strip() for r in bad)


@WIRE
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_the_reader_never_raises_on_arbitrary_lines(lines: list[bytes]) -> None:
    _, bad = read(b"\n".join(lines))
    assert all(r.reason.strip() for r in bad)


# Garbage a line at a time, stray quotes and all: every line is parsed on its own, so
# every good line must come through untouched whatever the lines around it hold.
GARBAGE_LINE = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")),
    st.binary(max_size=300).map(lambda b: b'"' + b.replace(b"\n", b"")),  # a stray quote at the start
    # a good record cut short (its code loses a digit): never a record, whatever it held
    BATCHES.map(lambda b: wire.encode_record(b[0]).encode("utf-8")[:-1]),
)


@WIRE
@given(st.lists(st.one_of(BATCHES.map(lambda b: ("good", b)), GARBAGE_LINE.map(lambda g: ("garbage", g))), max_size=12))
def test_good_lines_interleaved_with_garbage_lines_all_come_through(items: list[tuple[str, object]]) -> None:
    stream = b"".join(wire.encode_line(v) if kind == "good" else v + b"\n" for kind, v in items)  # type: ignore[arg-type]
    good, bad = read(stream)
    assert good == [r for kind, v in items if kind == "good" for r in v]  # type: ignore[union-attr]
    assert all(r.reason.strip() for r in bad)
    # Every garbage line that is not blank is rejected (a line is never dropped silently).
    nonblank = [v for kind, v in items if kind == "garbage" and v.strip()]  # type: ignore[union-attr]
    assert len(bad) >= len(nonblank)


@WIRE
@given(
    st.binary(max_size=300).map(lambda b: b'"' + b.replace(b"\n", b"")),
    st.lists(BATCHES, min_size=1, max_size=10),
    st.lists(BATCHES, max_size=3),
)
@example(b'"', [[_login(f"user,{i}")] for i in range(40)], [])  # the shape Hypothesis found before
def test_after_a_stray_quote_every_following_line_comes_through_intact(
    garbage: bytes, after: list[list[wire.Record]], before: list[list[wire.Record]]
) -> None:
    # Issue 11: a stray '"' followed by lines whose logins hold ',' (so they are quoted)
    # once cost every record after it. Now the bad line costs itself and nothing else.
    stream = b"".join(map(wire.encode_line, before)) + garbage + b"\n" + b"".join(map(wire.encode_line, after))
    good, bad = read(stream)
    assert good == [r for b in before for r in b] + [r for b in after for r in b]
    assert len(bad) == 1 and bad[0].reason.strip()
