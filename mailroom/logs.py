"""Logging for both programs: one line per event on stderr, UTC timestamps, a level.

stdout is data (the collector's batch lines, the sender's debug output), so nothing here
ever writes to it.
"""

from __future__ import annotations

import logging
import sys
import time


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def setup_logging(program: str, level: str) -> None:
    """Send every log record of this process to stderr as `time LEVEL program: message`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UTCFormatter(f"%(asctime)s %(levelname)s {program}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party libraries are chatty at DEBUG and may echo request bodies; keep them quiet.
    for noisy in ("botocore", "boto3", "urllib3", "psycopg", "yoyo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def plural(count: int, noun: str) -> str:
    """`1 line`, `2 lines`, `3 batches`: the count with its noun, for messages read by people."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}es" if noun.endswith(("s", "sh", "ch", "x")) else f"{count} {noun}s"
