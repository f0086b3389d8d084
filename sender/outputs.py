"""The sender's files under MAILROOM_SES_OUTPUT_PATH: deliveries, rejects and SES error bodies.

The directory is created private (0700) and files 0600: the journal beside them holds
signed secrets. Each outcome is one JSON line, appended and flushed at once.

SES error bodies (one file per error answer under `errors/`) are capped: at most
ERROR_BODIES_KEEP files and ERROR_BODIES_MAX_BYTES bytes, the oldest removed first, so
a throttling storm cannot fill the disk that holds the journal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import threading
from collections import deque
from pathlib import Path
from typing import Any

from mailroom.wire import Record

_JSON = json.JSONEncoder(ensure_ascii=False)
ERROR_BODIES_KEEP = 1000  # newest SES error bodies kept under errors/; older ones are removed
ERROR_BODIES_MAX_BYTES = 16 << 20  # and at most this many bytes of them

log = logging.getLogger("sender.outputs")


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: a short write (a signal, a full disk that
    frees up) must not leave half an entry for the next one to run into."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Outputs:
    def __init__(
        self,
        directory: Path,
        error_bodies_keep: int = ERROR_BODIES_KEEP,
        error_bodies_max_bytes: int = ERROR_BODIES_MAX_BYTES,
    ) -> None:
        self.directory = private_dir(Path(directory))
        self._deliveries = open_append(self.directory / "deliveries.jsonl")
        self._rejects = open_append(self.directory / "rejects.jsonl")
        self._lock = threading.Lock()
        self._errors_seq = 0
        self.error_bodies_keep = error_bodies_keep
        self.error_bodies_max_bytes = error_bodies_max_bytes
        self._error_files: deque[tuple[Path, int]] | None = None  # oldest first, once listed
        self._error_bytes = 0
        self._pruned_once = False

    def close(self) -> None:
        for fd in (self._deliveries, self._rejects):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _append(self, fd: int, rows: list[dict[str, Any]]) -> None:
        if rows:
            data = "".join([_JSON.encode(r) + "\n" for r in rows]).encode("utf-8")
            with self._lock:
                write_all(fd, data)

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
            write_all(fd, body)
        finally:
            os.close(fd)
        with self._lock:
            self._keep_newest_errors(folder, path, len(body))
        return path

    def _keep_newest_errors(self, folder: Path, path: Path, size: int) -> None:
        """Remove the oldest error bodies past the caps (the newest one always stays)."""
        if self._error_files is None:  # the first error of this run: take stock of earlier runs' files
            self._error_files = deque()
            for p in sorted(folder.glob("*.xml")):  # names start with a UTC stamp: oldest first
                try:
                    self._error_files.append((p, p.stat().st_size))
                except OSError:
                    continue
            self._error_bytes = sum(n for _, n in self._error_files)
        else:
            self._error_files.append((path, size))
            self._error_bytes += size
        files = self._error_files
        removed = 0
        while len(files) > 1 and (
            len(files) > self.error_bodies_keep or self._error_bytes > self.error_bodies_max_bytes
        ):
            old, n = files.popleft()
            old.unlink(missing_ok=True)
            self._error_bytes -= n
            removed += 1
        if removed and not self._pruned_once:
            self._pruned_once = True
            log.warning(
                "SES error bodies in %s: keeping the newest %d (at most %d bytes); older ones are removed",
                folder,
                self.error_bodies_keep,
                self.error_bodies_max_bytes,
            )


def delivery_row(record: Record, time: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"time": time or utc_now(), "action": record.action.db_name, "recipient": record.email, **fields}


def reject_row(reason: str, record: dict[str, Any] | list[str] | tuple[str, ...], **fields: Any) -> dict[str, Any]:
    return {"time": utc_now(), "reason": reason, **fields, "record": record}
