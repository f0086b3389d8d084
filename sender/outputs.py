"""The sender's files under MAILROOM_SES_OUTPUT_PATH: deliveries, rejects and SES error bodies.

The directory is created private (0700) and files 0600: the journal beside them holds
signed secrets. Each outcome is one JSON line, appended and flushed at once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from mailroom.wire import Record

_JSON = json.JSONEncoder(ensure_ascii=False)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


class Outputs:
    def __init__(self, directory: Path) -> None:
        self.directory = private_dir(Path(directory))
        self._deliveries = open_append(self.directory / "deliveries.jsonl")
        self._rejects = open_append(self.directory / "rejects.jsonl")
        self._lock = threading.Lock()
        self._errors_seq = 0

    def close(self) -> None:
        for fd in (self._deliveries, self._rejects):
            try:
                os.close(fd)
            except OSError:
                pass

    def _append(self, fd: int, rows: list[dict[str, Any]]) -> None:
        if rows:
            data = "".join([_JSON.encode(r) + "\n" for r in rows]).encode("utf-8")
            with self._lock:
                os.write(fd, data)

    def deliveries(self, rows: list[dict[str, Any]]) -> None:
        self._append(self._deliveries, rows)

    def rejects(self, rows: list[dict[str, Any]]) -> None:
        self._append(self._rejects, rows)

    def save_error(self, body: bytes, request_id: str) -> Path:
        folder = private_dir(self.directory / "errors")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        with self._lock:
            self._errors_seq += 1
            seq = self._errors_seq
        safe_id = re.sub(r"[^A-Za-z0-9-]", "", request_id)[:64] or f"no-request-id-{os.getpid()}-{seq}"
        path = folder / f"{stamp}-{safe_id}.xml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        return path


def delivery_row(record: Record, time: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"time": time or utc_now(), "action": record.action.db_name, "recipient": record.email, **fields}


def reject_row(reason: str, record: dict[str, Any] | list[str] | tuple[str, ...], **fields: Any) -> dict[str, Any]:
    return {"time": utc_now(), "reason": reason, **fields, "record": record}
