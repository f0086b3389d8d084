"""Logging for both programs: one line per event on stderr, UTC timestamps, a level.

stdout is data (the collector's batch lines, the sender's debug output), so nothing here
ever writes to it.

Two formats (MAILROOM_LOG_FORMAT): `text`, for people (`time LEVEL program: message`), and
`json`, for log shippers: one JSON object per line with `time`, `level`, `program`,
`logger`, `message` and the event's own fields (what a call passes as `extra=`), plus
`exception` with the traceback when there is one. Both show the same message: what must
never be logged (secrets, signed tokens, the key) is kept out of the messages themselves.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _utc(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created, record.msecs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never more than one line, whatever the message holds."""

    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": _utc(record.created, record.msecs),
            "level": record.levelname,
            "program": self.program,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in event:
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return json.dumps(event, ensure_ascii=False, default=str)


def setup_logging(program: str, level: str, log_format: str = "text") -> None:
    """Send every log record of this process to stderr, as text lines or JSON objects."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(program))
    else:
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
