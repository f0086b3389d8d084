"""Writing batch lines to stdout: straight to the file descriptor, nothing buffered.

A line is handed to the kernel in full before `write_line` returns. A reader that went
away shows up as BrokenPipeError (Python ignores SIGPIPE), which the caller turns into a
rollback and a non-zero exit. A pipe (or socket) is written without blocking, waiting in
poll() on it and on the stop flag's wake-up descriptor: a full pipe (a reader that takes
nothing) cannot keep a stop signal waiting. After a stop signal the reader gets
STOP_GRACE_S to make room; then StoppedUnread, as below. The line may then be cut off in
the pipe: the sender rejects the cut-off piece, and its tokens stay queued (rolled back).

When stdout is a pipe, "handed to the kernel" is not enough: bytes still sitting in the
pipe die with the reader (a sender killed with SIGKILL), and the chunks they came from
would already be committed. So before each commit the caller calls `wait_until_read`,
which returns once the reader has taken every byte out of the pipe. The sender takes a
line out of the pipe only after it has journaled it with fsync (sender/reader.py), so a
commit then means the lines are durable on the other side. If the reader goes away while
we wait, BrokenPipeError: the transaction rolls back. If a stop signal comes while the
reader holds back, it gets STOP_GRACE_S to take the lines; then StoppedUnread: the
transaction rolls back and the collector exits 0. Should the reader take the lines after
all, those tokens are sent twice, which the sender's journal absorbs.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import select
import stat
import termios
import time

from collector.signals import StopFlag

# The reader normally takes a line within a millisecond or two (one journal fsync): poll
# often at first; a reader that holds back (the sender is full) is polled every 10 ms.
DRAIN_POLL_MIN_S = 0.0001
DRAIN_POLL_MAX_S = 0.001
DRAIN_POLL_SLOW_S = 0.01
DRAIN_POLL_SLOW_AFTER_S = 0.1
STOP_GRACE_S = 1.0

log = logging.getLogger("collector.output")


class StoppedUnread(Exception):
    """A stop signal came and the reader did not take the line in time: roll back."""


def _mode(fd: int) -> int:
    try:
        return os.fstat(fd).st_mode
    except OSError:
        return 0


class LineWriter:
    def __init__(self, fd: int = 1, stop: StopFlag | None = None) -> None:
        self.fd = fd
        self.stop = stop
        self.lines = 0
        mode = _mode(fd)
        self.pipe = stat.S_ISFIFO(mode)
        self._give_up: float | None = None
        if self.pipe or stat.S_ISSOCK(mode):
            os.set_blocking(fd, False)  # see _wait_writable
        if stat.S_ISSOCK(mode):
            log.warning(
                "stdout is a socket, not a pipe: a chunk is committed once its line is written, "
                "so lines still in the socket when the reader is killed are lost; run `collector | sender`"
            )

    def write_line(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                self._wait_writable()
                continue
            view = view[written:]
        self.lines += 1

    def _stop_deadline(self) -> float | None:
        """None until a stop signal came; then when to give up on the reader."""
        if not self.stop:
            return None
        if self._give_up is None:
            self._give_up = time.monotonic() + STOP_GRACE_S
        return self._give_up

    def _wait_writable(self) -> None:
        """Wait until the pipe has room (or its reader is gone: the next write says so), or
        a stop signal came and the reader did not make room within STOP_GRACE_S."""
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        give_up = self._stop_deadline()
        if give_up is None:
            if self.stop is not None:
                poller.register(self.stop.wakeup_fd(), select.POLLIN)
            poller.poll()
            return
        remaining = give_up - time.monotonic()
        if remaining <= 0:
            raise StoppedUnread("stopped while the reader was not taking lines")
        poller.poll(max(1, int(remaining * 1000)))

    def wait_until_read(self) -> None:
        """Before a commit: return once the pipe is empty (the reader took every line);
        BrokenPipeError if the reader is gone first. Linux reports the bytes queued in a
        pipe (FIONREAD) on either end, and POLLERR on the write end once no reader is left.
        Not a pipe (a file): nothing to wait for."""
        if not self.pipe:
            return
        queued = array.array("i", [0])
        poller = select.poll()
        poller.register(self.fd, 0)  # POLLERR and POLLHUP are always reported
        delay = DRAIN_POLL_MIN_S
        slow_at = time.monotonic() + DRAIN_POLL_SLOW_AFTER_S
        while True:
            fcntl.ioctl(self.fd, termios.FIONREAD, queued, True)
            if queued[0] == 0:
                return
            if poller.poll(0):
                raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
            give_up = self._stop_deadline()
            if give_up is not None and time.monotonic() >= give_up:
                raise StoppedUnread("stopped while the reader had not taken the last line")
            time.sleep(delay)
            delay = (
                min(delay * 2, DRAIN_POLL_MAX_S)
                if delay < DRAIN_POLL_MAX_S or time.monotonic() < slow_at
                else DRAIN_POLL_SLOW_S
            )

    def detach(self) -> None:
        """Point the descriptor at /dev/null so nothing writes to a dead pipe at exit
        (no "Exception ignored ... BrokenPipeError" noise from the interpreter)."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.fd)
        finally:
            os.close(devnull)
        self.pipe = False
