"""The live benchmark's tap on the collector's stdout: a process of its own.

    python -m bench.relay LOG < collector-stdout > sender-stdin

Forwards everything it reads at once and notes in LOG when each chunk arrived (a line
`<monotonic seconds> <byte count>` followed by the bytes). It is a separate process because
the collector commits a line only once its reader has taken it out of the pipe: a reader
thread inside the harness, sharing one interpreter lock with the writer threads, would
make the collector wait on the harness and measure that instead.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    with open(sys.argv[1], "wb") as log:
        while data := os.read(0, 1 << 16):
            log.write(b"%.6f %d\n" % (time.monotonic(), len(data)))
            log.write(data)
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(1, view) :]
            except BrokenPipeError:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
