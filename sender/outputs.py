"""The sender's files under MAILROOM_SES_OUTPUT_PATH: deliveries, rejects and SES error bodies.

The directory is private (0700; an existing one is tightened, or a warning names it) and
files 0600: the journal beside them holds signed secrets. Each outcome is one JSON line,
appended at once. An append is whole or not at all (`AppendFile`): when a write fails (a
full disk) the file is cut back to where the append began, so no half line is left for the
next one to be glued onto, and the error names the file.

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
import stat
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
    """Create `path` 0700, or tighten an existing one to 0700 (an image may create it 0755);
    when that is not allowed, a warning names it: what it holds must not be readable by others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            path.chmod(0o700)
        except OSError as exc:
            log.warning(
                "%s is mode %04o and could not be made private (0700): %s; it holds signed secrets: chmod it",
                path,
                mode,
                exc.strerror or exc,
            )
    return path


def open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: a short write (a signal, a full disk that
    frees up) must not leave half an entry for the next one to run into."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def named(exc: OSError, path: Path) -> OSError:
    """The same error, naming the file (os.write and os.fsync do not)."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


class AppendFile:
    """An append-only file of lines, each append whole or not at all.

    A failed write or fsync (ENOSPC, EIO) cuts the file back to where the append began and
    raises an OSError naming the file; if even the cut fails, it is tried again before the
    next append, which fails until it succeeds. Not thread-safe: callers hold their lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = open_append(path)
        self._cut_at: int | None = None  # where a failed append began, while it could not be cut off

    def append(self, data: bytes, sync: bool = False) -> None:
        if self._cut_at is not None:
            self._cut(self._cut_at)
        try:
            start = os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as exc:
            raise named(exc, self.path) from exc
        try:
            write_all(self.fd, data)
            if sync:
                os.fsync(self.fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._cut(start)
            raise named(exc, self.path) from exc

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise named(exc, self.path) from exc

    def _cut(self, at: int) -> None:
        self._cut_at = at
        try:
            os.ftruncate(self.fd, at)
        except OSError as exc:
            raise named(exc, self.path) from exc
        self._cut_at = None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Outputs:
    def __init__(
        self,
        directory: Path,
        error_bodies_keep: int = ERROR_BODIES_KEEP,
        error_bodies_max_bytes: int = ERROR_BODIES_MAX_BYTES,
    ) -> None:
        self.directory = private_dir(Path(directory))
        self._deliveries = AppendFile(self.directory / "deliveries.jsonl")
        self._rejects = AppendFile(self.directory / "rejects.jsonl")
        self._lock = threading.Lock()
        self._errors_seq = 0
        self.error_bodies_keep = error_bodies_keep
        self.error_bodies_max_bytes = error_bodies_max_bytes
        self._error_files: deque[tuple[Path, int]] | None = None  # oldest first, once listed
        self._error_bytes = 0
        self._pruned_once = False

    def close(self) -> None:
        self._deliveries.close()
        self._rejects.close()

    def _append(self, file: AppendFile, rows: list[dict[str, Any]], sync: bool = False) -> None:
        if rows:
            data = "".join([_JSON.encode(r) + "\n" for r in rows]).encode("utf-8")
            with self._lock:
                file.append(data, sync=sync)

    def deliveries(self, rows: list[dict[str, Any]]) -> None:
        """Append outcome rows (no fsync: the journal's completion comes after them)."""
        self._append(self._deliveries, rows)

    def rejects(self, rows: list[dict[str, Any]], sync: bool = False) -> None:
        """Append reject rows; `sync`: fsync'ed before returning (rejected input is acknowledged
        to the collector right after, and then exists nowhere else)."""
        self._append(self._rejects, rows, sync=sync)

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
        except OSError as exc:  # a full disk: no half body left behind
            path.unlink(missing_ok=True)
            raise named(exc, path) from exc
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
    return {"time": time or utc_now(), "action": record.action.name, "recipient": record.email, **fields}


def reject_row(reason: str, record: dict[str, Any] | list[str] | tuple[str, ...], **fields: Any) -> dict[str, Any]:
    return {"time": utc_now(), "reason": reason, **fields, "record": record}
