"""stdin to records: physical lines, logical lines (quoted LF), decoded records and rejects.

Lines are read in chunks straight from the file descriptor, and handed on in groups: all
the lines a chunk completed (at most `max_records` records), so the journal can make a
whole group durable with one fsync. `before_read` is asked before each read of the pipe:
it blocks while the sender is full (back-pressure) and says whether to go on at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailroom.wire import Record, Rejected, decode_line, logical_lines

CHUNK = 1 << 16
MAX_LINE_BYTES = 1 << 20  # a "line" longer than this without LF is handed on (and rejected)


class ChunkedLines:
    """Physical lines (with their LF) from a file descriptor; `drained` when no full line is buffered."""

    def __init__(self, fd: int, before_read: Callable[[], bool]) -> None:
        self.fd = fd
        self.before_read = before_read
        self.drained = True

    def __iter__(self) -> Iterator[bytes]:
        buf = b""
        while True:
            if not self.before_read():
                return
            chunk = os.read(self.fd, CHUNK)
            if not chunk:
                if buf:
                    self.drained = True
                    yield buf
                return
            buf += chunk
            if b"\n" not in chunk:
                if len(buf) > MAX_LINE_BYTES:
                    self.drained, line, buf = True, buf, b""
                    yield line
                continue
            lines = buf.split(b"\n")
            buf = lines.pop()
            last = len(lines) - 1
            for i, line in enumerate(lines):
                self.drained = i == last
                yield line + b"\n"


@dataclass
class DecodedLine:
    records: list[Record]
    rejects: list[Rejected]


def decoded_groups(fd: int, before_read: Callable[[], bool], max_records: int = 500) -> Iterator[list[DecodedLine]]:
    """Groups of decoded lines: a group ends where the input read so far ends."""
    src = ChunkedLines(fd, before_read)
    group: list[DecodedLine] = []
    count = 0
    for item in logical_lines(src):
        if isinstance(item, Rejected):
            group.append(DecodedLine([], [item]))
        else:
            records, rejects = decode_line(item)
            if records or rejects:
                group.append(DecodedLine(records, rejects))
                count += len(records)
        if group and (src.drained or count >= max_records):
            yield group
            group, count = [], 0
    if group:
        yield group
