"""stdin to records: lines (each parsed on its own), decoded records and rejects.

Lines are read in chunks straight from the file descriptor, and handed on in groups: all
the lines a chunk completed (at most `max_records` records), so the journal can make a
whole group durable with one fsync. `before_read` is asked before each read of the pipe:
it blocks while the sender is full (back-pressure) and says whether to go on at all.

When stdin is a pipe (Linux), lines are not taken out of it when they are read: they are
looked at with tee(2), which copies what the pipe holds without consuming it, and taken
only when the caller acknowledges them (`ChunkedLines.ack()`), which sender/dispatch.py
does after the journal's fsync of the group they belong to; asking for more input before
that is an error (UnackedLines), so no buffering by a caller can silently take lines out
early. The collector commits a line only once the pipe is empty (collector/output.py), so
a line is never both committed by the collector and lost with a killed sender: until the
sender has it on disk, it is still in the pipe, and if the sender dies the pipe and the
collector's uncommitted chunk go with it. When stdin is a socket, or tee(2) is missing,
this hand-off is off and a warning says so at start.

A line is at most MAX_LINE_BYTES (mailroom/wire.py), LF included: every line the collector
writes is accepted whole; a longer one is rejected whole, and the lines after it go on.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailroom.wire import MAX_LINE_BYTES, Record, Rejected, decode_line, lines

CHUNK = 1 << 16

log = logging.getLogger("sender.reader")


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
            with contextlib.suppress(OSError):
                os.close(fd)


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


class UnackedLines(RuntimeError):
    """More input was asked for while lines handed on were not acknowledged: a caller bug
    that would take lines out of the pipe before they are journaled."""


class ChunkedLines:
    """Physical lines (with their LF) from a file descriptor; `drained` when no full line is buffered.

    The hand-off's acknowledgement is explicit: a line handed on stays in the pipe until
    the caller calls `ack()` (after its journal's fsync); asking for more input before
    that raises UnackedLines. A line longer than MAX_LINE_BYTES (LF included) is not
    handed on: it is taken out of the pipe, counted in `too_long`, and an empty line
    (b"\\n") stands in for it so that the caller sees where it was.
    """

    def __init__(self, fd: int, before_read: Callable[[], bool]) -> None:
        self.fd = fd
        self.before_read = before_read
        self.drained = True
        self.too_long = 0
        self.peeker = PipePeek.open(fd)
        self._source: PipePeek | _HeldReads | None = None
        self._unacked = 0  # bytes of the lines handed on, still in the pipe
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            mode = 0
        if self.peeker is None and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            log.warning(
                "stdin is a %s and the pipe hand-off is off (%s): lines are taken out as they are read, "
                "so lines read but not yet journaled can be lost if the sender is killed",
                "pipe" if stat.S_ISFIFO(mode) else "socket",
                "tee(2) is not available" if stat.S_ISFIFO(mode) else "tee(2) needs a pipe",
            )

    @property
    def unacked(self) -> int:
        return self._unacked

    def ack(self) -> None:
        """Take every line handed on so far out of the pipe: the caller has them on disk."""
        if self._unacked and self._source is not None:
            self._source.take(self._unacked)
        self._unacked = 0

    def __iter__(self) -> Iterator[bytes]:
        self._source = source = self.peeker or _HeldReads(self.fd)
        try:
            yield from self._peeking(source)
        finally:
            source.close()

    def _peeking(self, peeker: PipePeek | _HeldReads) -> Iterator[bytes]:
        """Whole lines leave the source only when acknowledged. A line's first part may be
        taken earlier (no LF yet, nothing to journal): its chunk cannot have been committed,
        since the collector commits only once the whole line has left the pipe."""
        buf = b""  # taken out of the pipe, no LF yet
        skipping = False  # inside a line longer than MAX_LINE_BYTES: discard up to its LF
        while True:
            if self._unacked:
                raise UnackedLines(f"{self._unacked} bytes of lines handed on were not acknowledged")
            if not self.before_read():
                return
            data = peeker.peek(CHUNK)
            if not data:
                self.drained = True
                if skipping:
                    self.too_long += 1
                    yield b"\n"
                elif buf:
                    yield buf
                return
            if skipping:
                end = data.find(b"\n") + 1
                peeker.take(end or len(data))
                if end:
                    skipping, self.drained = False, True
                    self.too_long += 1
                    yield b"\n"
                continue
            cut = data.rfind(b"\n") + 1
            if not cut:
                peeker.take(len(data))
                buf += data
                if len(buf) >= MAX_LINE_BYTES:  # no LF yet: with it, the line is longer than the limit
                    buf, skipping = b"", True
                continue
            lines = (buf + data[:cut]).split(b"\n")
            lines.pop()  # empty: the data ended with LF at `cut`
            taken = len(buf)  # of the first line, this much has left the pipe already
            buf = b""
            last = len(lines) - 1
            for i, line in enumerate(lines):
                self.drained = i == last
                self._unacked += len(line) + 1 - taken
                taken = 0
                if len(line) + 1 > MAX_LINE_BYTES:
                    self.too_long += 1
                    yield b"\n"
                else:
                    yield line + b"\n"


# What a rejected line or record was wrong with, as a short fixed name (the label of
# mailroom_sender_input_rejected_total): the reasons themselves carry numbers and values.
# The first pattern that matches the start of the reason (worded in mailroom/wire.py and
# decoded_groups below) decides.
REJECT_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"line longer than ", "line_too_long"),
        (
            r"unterminated quoted field |unexpected character after quoted field |\d+ fields is not a multiple",
            "malformed_line",
        ),
        (r"unknown action ", "action"),
        (r"locale ", "locale"),
        (r"email ", "email"),
        (r"username ", "username"),
        (r"secret ", "secret"),
        (r"code ", "code"),
    )
)


def reject_kind(reason: str) -> str:
    """The kind of a rejection reason (REJECT_KINDS), or "other"."""
    for pattern, kind in REJECT_KINDS:
        if pattern.match(reason):
            return kind
    return "other"


@dataclass
class DecodedLine:
    records: list[Record]
    rejects: list[Rejected]


def decoded_groups(src: ChunkedLines, max_records: int = 500) -> Iterator[list[DecodedLine]]:
    """Groups of decoded lines: a group ends where the input read so far ends. The caller
    journals each group, then calls `src.ack()`, before it asks for the next one."""
    group: list[DecodedLine] = []
    count = 0
    for line in lines(src):
        if src.too_long:
            group.append(DecodedLine([], [Rejected(f"line longer than {MAX_LINE_BYTES} bytes", ())]))
            src.too_long -= 1
        records, rejects = decode_line(line)
        if records or rejects:
            group.append(DecodedLine(records, rejects))
            count += len(records)
        if src.drained or count >= max_records:
            if group:
                yield group
            else:
                src.ack()  # blank lines: nothing to journal
            group, count = [], 0
    if group:
        yield group
