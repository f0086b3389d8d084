"""The line limit is one number for both programs: the collector's encoder never writes a
line longer than MAX_LINE_BYTES, and the sender's reader accepts every line up to it whole."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sender import record

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.wire import MAX_LINE_BYTES, Record, decode_line, encode_line, encode_lines
from sender.reader import ChunkedLines, DecodedLine, decoded_groups

LONG_LOGIN = "é" * 200 + "漢字" * 27  # 254 characters, 562 bytes of UTF-8


def long_record(i: int) -> Record:
    base = record(i, ACTIVATION if i % 2 else PASSWORD_RECOVERY)
    return Record(base.action, f"{'ü' * 40}.{i}@example.com", f"{i}{LONG_LOGIN}"[:254], base.secret, base.code)


def line_of(n_bytes: int, first: int = 0) -> bytes:
    """A batch line of valid records, exactly `n_bytes` long with its LF."""
    records: list[Record] = []
    size = 1  # the LF
    while True:
        candidate = record(first + len(records), login="x" * 200)
        extra = len(encode_line([candidate])) - 1 + (1 if records else 0)
        if size + extra > n_bytes:
            break
        records.append(candidate)
        size += extra
    missing = n_bytes - size
    for i, r in enumerate(records):  # logins may grow to 254 characters (1 byte each)
        grow = min(54, missing)
        records[i] = Record(r.action, r.email, r.login + "y" * grow, r.secret, r.code)
        missing -= grow
    assert missing == 0
    line = encode_line(records)
    assert len(line) == n_bytes
    return line


def read_all(fd: int) -> Iterator[DecodedLine]:
    """Every decoded line, each group acknowledged as soon as it is handed on."""
    src = ChunkedLines(fd, lambda: True)
    for group in decoded_groups(src):
        yield from group
        src.ack()


def through_a_pipe(data: bytes) -> list[DecodedLine]:
    r, w = os.pipe()

    def write() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        return list(read_all(r))
    finally:
        writer.join(30)
        os.close(r)


def through_a_file(data: bytes, tmp_path: Path) -> list[DecodedLine]:
    path = tmp_path / "lines"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(read_all(fd))
    finally:
        os.close(fd)


def test_records_that_fit_in_one_line_make_one_line_up_to_exactly_the_limit() -> None:
    records = [record(1), record(2), record(3)]
    line = encode_line(records)
    assert encode_lines(records, max_bytes=len(line) + 1) == [line]  # just under
    assert encode_lines(records, max_bytes=len(line)) == [line]  # exactly at


def test_records_one_byte_over_the_limit_are_split_into_lines_that_each_fit() -> None:
    records = [record(1), record(2), record(3)]
    line = encode_line(records)
    assert encode_lines(records, max_bytes=len(line) - 1) == [encode_line(records[:2]), encode_line(records[2:])]


def test_a_record_longer_than_the_limit_on_its_own_is_refused() -> None:
    with pytest.raises(ValueError, match="line limit"):
        encode_lines([record(1)], max_bytes=20)


def test_9000_records_with_long_utf8_logins_become_lines_within_the_limit_and_come_through_whole() -> None:
    records = [long_record(i) for i in range(9000)]
    assert len(encode_line(records[:1]).decode()) < len(encode_line(records[:1]))  # multi-byte characters
    lines = encode_lines(records)
    assert len(lines) > 1
    assert all(len(line) <= MAX_LINE_BYTES and line.endswith(b"\n") for line in lines)
    assert all(len(line) > MAX_LINE_BYTES - 2048 for line in lines[:-1])  # full lines, not one per record
    decoded = through_a_pipe(b"".join(lines))
    assert [r for d in decoded for r in d.rejects] == []
    assert [r for d in decoded for r in d.records] == records


@pytest.mark.parametrize("source", ["pipe", "file"])
@pytest.mark.parametrize("size", [MAX_LINE_BYTES - 1, MAX_LINE_BYTES])
def test_the_reader_accepts_a_line_just_under_and_exactly_at_the_limit_whole(
    source: str, size: int, tmp_path: Path
) -> None:
    before, big, after = encode_line([record(1)]), line_of(size, first=10), encode_line([record(2)])
    data = before + big + after
    decoded = through_a_pipe(data) if source == "pipe" else through_a_file(data, tmp_path)
    assert [r for d in decoded for r in d.rejects] == []
    assert [r for d in decoded for r in d.records] == (
        decode_line(before[:-1])[0] + decode_line(big[:-1])[0] + decode_line(after[:-1])[0]
    )


@pytest.mark.parametrize("source", ["pipe", "file"])
def test_a_line_one_byte_over_the_limit_is_rejected_whole_and_the_next_line_comes_through(
    source: str, tmp_path: Path
) -> None:
    before, big, after = encode_line([record(1)]), line_of(MAX_LINE_BYTES + 1, first=10), encode_line([record(2)])
    data = before + big + after
    decoded = through_a_pipe(data) if source == "pipe" else through_a_file(data, tmp_path)
    assert [r.reason for d in decoded for r in d.rejects] == [f"line longer than {MAX_LINE_BYTES} bytes"]
    assert [r for d in decoded for r in d.records] == [record(1), record(2)]  # none of the long line's
