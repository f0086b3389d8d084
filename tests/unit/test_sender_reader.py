"""The sender's stdin reader gives the same lines from a file as from a pipe, and takes a
line out of the pipe only once it is acknowledged."""

from __future__ import annotations

import array
import fcntl
import logging
import os
import socket
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sender import FAST, config, record
from test_sender_journal import Recording

from mailroom.wire import encode_line
from sender.dispatch import Sender
from sender.journal import Journal
from sender.outputs import Outputs
from sender.reader import CHUNK, ChunkedLines, UnackedLines, decoded_groups

PAYLOAD = b"first line\n" + b"x" * (CHUNK + 100) + b"\n" + b"a\nb\n" * 3 + b"last, without LF"
EXPECTED = [b"first line\n", b"x" * (CHUNK + 100) + b"\n"] + [b"a\n", b"b\n"] * 3 + [b"last, without LF"]


def acked(reader: ChunkedLines) -> Iterator[bytes]:
    """Every line, acknowledged as soon as it is handed on (as if journaled at once)."""
    for line in reader:
        yield line
        reader.ack()


def test_a_file_is_read_line_by_line_with_the_partial_last_line_at_end(tmp_path: Path) -> None:
    path = tmp_path / "batch.txt"
    path.write_bytes(PAYLOAD)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = ChunkedLines(fd, lambda: True)
        assert reader.peeker is None  # a file: plain reads
        assert list(acked(reader)) == EXPECTED
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
        assert list(acked(reader)) == EXPECTED
    finally:
        writer.join(5)
        os.close(r)


def test_a_peeked_line_stays_in_the_pipe_until_it_is_acknowledged() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"one\ntwo\n")
        reader = ChunkedLines(r, lambda: True)
        lines = iter(reader)
        assert next(lines) == b"one\n"
        assert reader.peeker is not None
        assert reader.peeker.peek(100) == b"one\ntwo\n"  # handed on, not yet taken out: a killed sender loses nothing
        assert next(lines) == b"two\n"
        assert reader.peeker.peek(100) == b"one\ntwo\n"
        reader.ack()
        os.write(w, b"three\n")
        assert reader.peeker.peek(100) == b"three\n"
    finally:
        os.close(w)
        os.close(r)


def queued(fd: int) -> int:
    """Bytes in the pipe, not yet taken out by any reader."""
    n = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, n, True)
    return n[0]


def test_a_group_stays_in_the_pipe_until_acknowledged_and_more_input_before_the_ack_is_refused() -> None:
    r, w = os.pipe()
    data = encode_line([record(1), record(2)]) + encode_line([record(3)])
    try:
        os.write(w, data)
        src = ChunkedLines(r, lambda: True)
        assert src.peeker is not None, "tee(2) is not available: the pipe hand-off cannot work on this system"
        groups = decoded_groups(src)
        group = next(groups)
        assert [rec for line in group for rec in line.records] == [record(1), record(2), record(3)]
        assert queued(r) == len(data)  # handed on, not taken out: a sender killed now loses nothing
        with pytest.raises(UnackedLines):
            next(groups)  # a caller that buffers groups without acknowledging them is stopped
        assert queued(r) == len(data)
    finally:
        os.close(w)
        os.close(r)


def test_acknowledging_a_group_takes_exactly_its_lines_out_of_the_pipe() -> None:
    r, w = os.pipe()
    first = encode_line([record(1)])
    try:
        os.write(w, first)
        src = ChunkedLines(r, lambda: True)
        groups = decoded_groups(src)
        assert [rec for line in next(groups) for rec in line.records] == [record(1)]
        os.write(w, b"1,partial")  # the start of the next line, written meanwhile
        assert queued(r) == len(first) + len(b"1,partial")
        src.ack()
        assert queued(r) == len(b"1,partial")
    finally:
        os.close(w)
        os.close(r)


def test_the_sender_journals_a_group_before_its_lines_leave_the_pipe(tmp_path: Path) -> None:
    r, w = os.pipe()
    data = encode_line([record(1), record(2)]) + encode_line([record(3)])
    in_pipe_while_journaling: list[int] = []

    class Watching(Journal):
        def append_lines(self, lines: list) -> None:
            in_pipe_while_journaling.append(queued(r))
            super().append_lines(lines)

    os.write(w, data)
    os.close(w)
    try:
        sender = Sender(config(), Recording(), Outputs(tmp_path), Watching(tmp_path / "journal"), policy=FAST)
        assert sender.run(r) == 0
        assert in_pipe_while_journaling == [len(data)]
        assert queued(r) == 0 and sender.counts.delivered == 3
    finally:
        os.close(r)


@pytest.mark.parametrize("kind", ["socket", "file"])
def test_stdin_that_is_not_a_pipe_warns_that_the_hand_off_is_off_unless_it_is_a_file(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if kind == "socket":
        a, b = socket.socketpair()
        fd = a.fileno()
    else:
        path = tmp_path / "lines"
        path.write_bytes(b"")
        fd = os.open(path, os.O_RDONLY)
    try:
        with caplog.at_level(logging.WARNING, logger="sender.reader"):
            ChunkedLines(fd, lambda: True)
        warned = [r.getMessage() for r in caplog.records if "hand-off is off" in r.getMessage()]
        if kind == "socket":
            assert warned and "can be lost if the sender is killed" in warned[0]
        else:
            assert warned == []  # a file can be read again: nothing is lost
    finally:
        if kind == "socket":
            a.close()
            b.close()
        else:
            os.close(fd)
