"""Writing batch lines to stdout: straight to the file descriptor, nothing buffered.

A line is handed to the kernel in full before `write_line` returns, so the caller may
commit right after. A reader that went away shows up as BrokenPipeError (Python ignores
SIGPIPE), which the caller turns into a rollback and a non-zero exit.
"""

from __future__ import annotations

import os


class LineWriter:
    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        self.lines = 0

    def write_line(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.lines += 1

    def detach(self) -> None:
        """Point the descriptor at /dev/null so nothing writes to a dead pipe at exit
        (no "Exception ignored ... BrokenPipeError" noise from the interpreter)."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.fd)
        finally:
            os.close(devnull)
