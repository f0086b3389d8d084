"""stdin to records: lines (each parsed on its own), decoded records and rejects.

Lines are read in chunks straight from the file descriptor, and handed on in groups: all
the lines a chunk completed (at most `max_records` records), so the journal can make a
whole group durable with one fsync. `before_read` is asked before each read of the pipe:
it blocks while the sender is full (back-pressure) and says whether to go on at all.

When stdin is a pipe (Linux), lines are not taken out of it when they are read: they are
looked at with tee(2), which copies what the pipe holds without consuming it, and taken
only when the reader is asked for more, that is after the caller has journaled the group
they belonged to (sender/dispatch.py journals with fsync before it reads on). The
collector commits a line only once the pipe is empty (collector/output.py), so a line is
never both committed by the collector and lost with a killed sender: until the sender
has it on disk, it is still in the pipe, and if the sender dies the pipe and the
collector's uncommitted chunk go with it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailroom.wire import Record, Rejected, decode_line, lines

CHUNK = 1 << 16
MAX_LINE_BYTES = 1 << 20  # a "line" longer than this without LF is handed on (and rejected)


def _libc_tee() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        tee = ctypes.CDLL(None, use_errno=True).tee
    except (OSError, AttributeError):
        return None
    tee.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)
    tee.restype = ctypes.c_ssize_t
    return tee


class PipePeek:
    """Look at what a pipe holds without taking it out (tee(2) into a private pipe), and
    take it out later."""

    def __init__(self, fd: int, tee: Callable[[int, int, int, int], int]) -> None:
        self.fd = fd
        self._tee = tee
        self._r, self._w = os.pipe()

    @classmethod
    def open(cls, fd: int) -> PipePeek | None:
        """A peeker for `fd` when it is a pipe and tee(2) is available, else None."""
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return None
        except OSError:
            return None
        tee = _libc_tee()
        return cls(fd, tee) if tee is not None else None

    def peek(self, limit: int) -> bytes:
        """Up to `limit` bytes from the head of the pipe, left in it; waits while it is
        empty; b"" at end of input."""
        while True:
            n = self._tee(self.fd, self._w, limit, 0)
            if n >= 0:
                break
            err = ctypes.get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))
        out = bytearray()
        while len(out) < n:
            out += os.read(self._r, n - len(out))
        return bytes(out)

    def take(self, n: int) -> None:
        """Take (discard) the first `n` bytes out of the pipe: they were peeked before."""
        while n > 0:
            got = os.read(self.fd, min(n, CHUNK))
            if not got:
                return
            n -= len(got)

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


class _HeldReads:
    """Plain reads behind PipePeek's interface, for stdin that is not a pipe (or no tee):
    what was read is held until taken, so one loop serves both."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._held = b""

    def peek(self, limit: int) -> bytes:
        if not self._held:
            self._held = os.read(self.fd, limit)
        return self._held

    def take(self, n: int) -> None:
        self._held = self._held[n:]

    def close(self) -> None:
        pass


class ChunkedLines:
    """Physical lines (with their LF) from a file descriptor; `drained` when no full line is buffered."""

    def __init__(self, fd: int, before_read: Callable[[], bool]) -> None:
        self.fd = fd
        self.before_read = before_read
        self.drained = True
        self.peeker = PipePeek.open(fd)

    def __iter__(self) -> Iterator[bytes]:
        source = self.peeker or _HeldReads(self.fd)
        try:
            yield from self._peeking(source)
        finally:
            source.close()

    def _peeking(self, peeker: PipePeek | _HeldReads) -> Iterator[bytes]:
        """Whole lines leave the source only when the next read is asked for: by then the
        caller has journaled them (with a pipe, that is what the collector waits for). A line's first part may be taken
        earlier (no LF yet, nothing to journal): its chunk cannot have been committed,
        since the collector commits only once the whole line has left the pipe."""
        buf = b""  # taken out of the pipe, no LF yet
        owed = 0  # bytes of the lines handed on, still in the pipe
        while True:
            if owed:
                peeker.take(owed)
                owed = 0
            if not self.before_read():
                return
            data = peeker.peek(CHUNK)
            if not data:
                if buf:
                    self.drained = True
                    yield buf
                return
            cut = data.rfind(b"\n") + 1
            if not cut:
                peeker.take(len(data))
                buf += data
                if len(buf) > MAX_LINE_BYTES:
                    self.drained, line, buf = True, buf, b""
                    yield line
                continue
            owed = cut
            lines = (buf + data[:cut]).split(b"\n")
            lines.pop()  # empty: the data ended with LF at `cut`
            buf = b""
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
    for line in lines(src):
        records, rejects = decode_line(line)
        if records or rejects:
            group.append(DecodedLine(records, rejects))
            count += len(records)
        if group and (src.drained or count >= max_records):
            yield group
            group, count = [], 0
    if group:
        yield group
