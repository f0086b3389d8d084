"""The sender's stdin reader gives the same lines from a file as from a pipe."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sender.reader import CHUNK, ChunkedLines

PAYLOAD = b"first line\n" + b"x" * (CHUNK + 100) + b"\n" + b"a\nb\n" * 3 + b"last, without LF"
EXPECTED = [b"first line\n", b"x" * (CHUNK + 100) + b"\n"] + [b"a\n", b"b\n"] * 3 + [b"last, without LF"]


def test_a_file_is_read_line_by_line_with_the_partial_last_line_at_end(tmp_path: Path) -> None:
    path = tmp_path / "batch.txt"
    path.write_bytes(PAYLOAD)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = ChunkedLines(fd, lambda: True)
        assert reader.peeker is None  # a file: plain reads
        assert list(reader) == EXPECTED
    finally:
        os.close(fd)


def test_a_pipe_gives_the_same_lines_and_keeps_them_in_the_pipe_until_asked_for_more() -> None:
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, PAYLOAD[:20]), os.write(w, PAYLOAD[20:]), os.close(w)))
    try:
        reader = ChunkedLines(r, lambda: True)
        if reader.peeker is None:
            pytest.fail("tee(2) is not available: the pipe hand-off cannot work on this system")
        writer.start()
        assert list(reader) == EXPECTED
    finally:
        writer.join(5)
        os.close(r)


def test_a_peeked_line_stays_in_the_pipe_until_the_next_read() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"one\ntwo\n")
        reader = ChunkedLines(r, lambda: True)
        lines = iter(reader)
        assert next(lines) == b"one\n"
        assert reader.peeker is not None
        assert reader.peeker.peek(100) == b"one\ntwo\n"  # handed on, not yet taken out: a killed sender loses nothing
        assert next(lines) == b"two\n"
    finally:
        os.close(w)
        os.close(r)
