"""A durable journal of what the sender has read but not finished, so a crash loses nothing.

Layout: `<output>/journal/seg-<ns>.jsonl`, JSON lines of four kinds:
- `{"k":"L","id","at","r":[[action,email,login,secret,code],...],"n":[indices]?}` a line's
  valid records (action: 1 or 2 in the default locale, as earlier versions wrote it, else the
  wire's action field, `4/magic_link@pt`), written and fsync'ed before any of them is sent (`at`: when it was read);
- `{"k":"D","id","n":[...],"h":[...]}` those records were delivered (`h`: secret hashes);
- `{"k":"R","id","n":[...]}` those records were finished otherwise (rejected, duplicate);
- `{"k":"S","h":[...],"at":[...]}` hashes of secrets delivered recently, carried over.

On start every segment is read (a torn last line from a crash is skipped; a corrupt entry
anywhere else is skipped too, and logged with its segment and line number), the unfinished
records and the recent deliveries are written to a fresh segment, fsync'ed, and only then
are the old segments deleted; a crash in between leaves both, and replaying both gives the
same state (entries are keyed by line id and index). The same compaction runs whenever the
active segment grows by `rotate_bytes` past what was carried into it, so the journal stays as small as the work in hand.

Completions are written without fsync: a process crash keeps them (the kernel has them);
only a power loss can forget one, which means a duplicate, never a loss.

A write that fails (a full disk) leaves no partial entry: the segment is cut back to where
the entry began (sender/outputs.py `AppendFile`), and memory is updated only once the entry
is written (and, for lines, fsync'ed), so memory and disk agree. A compaction that fails
removes its half-written segment and keeps the old ones. Either raises an OSError naming
the file; the sender stops on it (EXIT_OPERATOR_FAULT). Entries glued onto a torn one by an
older version are still read: every entry begins with `{"k":`, which cannot occur inside one.

Recent deliveries are remembered as 64-bit hashes of the signed secret (never the secret),
for `dedup_window` seconds and at most `dedup_max` of them, so that a line the collector
emits again after a crash is not sent twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailroom.actions import Action
from mailroom.wire import Record, action_field, parse_action_field
from sender.outputs import AppendFile, named, private_dir

log = logging.getLogger("sender.journal")
ENTRY_START = b'{"k":'  # how every entry begins (json.dumps escapes '"' inside strings)


class RotationFailed(OSError):
    """Compacting the journal failed after the completion that triggered it was written:
    the journal is intact (its old segments are kept), but the disk cannot hold it twice."""


def secret_hash(secret: str) -> int:
    return int.from_bytes(hashlib.blake2b(secret.encode("ascii", "replace"), digest_size=8).digest(), "big")


@dataclass
class PendingLine:
    read_at: float
    records: dict[int, Record] = field(default_factory=dict)


class Journal:
    def __init__(
        self,
        directory: Path,
        dedup_window: float = 1800.0,
        dedup_max: int = 20_000,
        rotate_bytes: int = 8 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = private_dir(Path(directory))
        self.dedup_window = dedup_window
        self.dedup_max = dedup_max
        self.rotate_bytes = rotate_bytes
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, PendingLine] = {}
        self._delivered: dict[int, float] = {}  # insertion-ordered: oldest first
        self._file: AppendFile | None = None
        self._size = 0
        self._carried = 0
        self._prefix = f"{time.time_ns():x}"
        self._next = 0
        self.skipped_entries = 0

    # -- start-up -----------------------------------------------------------------------
    def recover(self) -> list[tuple[str, float, list[tuple[int, Record]]]]:
        """Replay every segment; return the unfinished records per line, oldest first."""
        with self._lock:
            old = self._segments()
            for path in old:
                self._replay(path)
            self._compact(old)
            return [(line_id, p.read_at, sorted(p.records.items())) for line_id, p in self._pending.items()]

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("seg-*.jsonl"))

    def _replay(self, path: Path) -> None:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    entry = json.loads(raw)
                    self._apply(entry)
                except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                    self.skipped_entries += 1
                    if raw.count(ENTRY_START) > 1 and self._replay_glued(path, number, raw):
                        continue
                    if raw.endswith(b"\n"):  # not a torn last write: something damaged the file
                        log.warning(
                            "journal %s line %d: corrupt entry skipped (%s: %s)",
                            path.name,
                            number,
                            type(exc).__name__,
                            str(exc)[:200],
                        )
                    else:  # a torn write at a crash: nothing was acted on it
                        log.info("journal %s line %d: torn last entry skipped", path.name, number)

    def _replay_glued(self, path: Path, number: int, raw: bytes) -> bool:
        """A torn entry with whole entries glued after it (an append that failed halfway, by a
        version that did not cut it off): apply the whole ones. True when one was."""
        pieces = raw.split(ENTRY_START)[1:]  # the torn one never parses: a cut JSON object is not one
        recovered = 0
        for piece in pieces:
            try:
                self._apply(json.loads(ENTRY_START + piece))
                recovered += 1
            except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                continue
        if recovered:
            log.warning(
                "journal %s line %d: a torn entry skipped, %d whole entr%s glued after it recovered",
                path.name,
                number,
                recovered,
                "y" if recovered == 1 else "ies",
            )
        return recovered > 0

    def _apply(self, e: dict[str, Any]) -> None:
        kind = e["k"]
        if kind == "L":
            rows = e["r"]
            indices = e.get("n") or range(len(rows))
            line = self._pending.setdefault(e["id"], PendingLine(float(e["at"])))
            for i, row in zip(indices, rows, strict=False):
                action, locale = _action(row[0])
                line.records[i] = Record(action, row[1], row[2], row[3], row[4], locale)
        elif kind in ("D", "R"):
            pending = self._pending.get(e["id"])
            if pending is not None:
                for i in e["n"]:
                    pending.records.pop(i, None)
                if not pending.records:
                    del self._pending[e["id"]]
            if kind == "D":
                at = float(e.get("t", self.clock()))
                for h in e.get("h", ()):
                    self._remember(int(h, 16), at)
        elif kind == "S":
            for h, at in zip(e["h"], e["at"], strict=False):
                self._remember(int(h, 16), float(at))

    def _remember(self, h: int, at: float) -> None:
        self._delivered.pop(h, None)
        self._delivered[h] = at
        while len(self._delivered) > self.dedup_max:
            del self._delivered[next(iter(self._delivered))]

    def _compact(self, old: Iterable[Path]) -> None:
        """Write the live state to a new segment, make it durable, then drop the old ones.
        On failure the new segment is removed and the old ones stay: nothing changes."""
        now = self.clock()
        while self._delivered and next(iter(self._delivered.values())) < now - self.dedup_window:
            del self._delivered[next(iter(self._delivered))]
        path = self.directory / f"seg-{time.time_ns():020d}.jsonl"
        file = AppendFile(path)
        try:
            size = self._write_state(file)
            file.sync()
            self._fsync_dir()
        except OSError:
            file.close()
            path.unlink(missing_ok=True)
            raise
        if self._file is not None:
            self._file.close()
        self._file, self._size, self._carried = file, size, size
        for p in old:
            if p != path:
                p.unlink(missing_ok=True)
        self._fsync_dir()

    def _write_state(self, file: AppendFile) -> int:
        """The unfinished lines and the recent deliveries, a piece at a time (no large transient strings)."""
        size = 0

        def write(entries: list[dict[str, Any]]) -> None:
            nonlocal size
            data = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in entries).encode()
            file.append(data)
            size += len(data)

        lines = list(self._pending.items())
        for i in range(0, len(lines), 200):
            entries = []
            for line_id, line in lines[i : i + 200]:
                items = sorted(line.records.items())
                entries.append(
                    {
                        "k": "L",
                        "id": line_id,
                        "at": line.read_at,
                        "n": [i for i, _ in items],
                        "r": [_row(r) for _, r in items],
                    }
                )
            write(entries)
        recent = list(self._delivered.items())
        for i in range(0, len(recent), 1000):
            chunk = recent[i : i + 1000]
            write([{"k": "S", "h": [f"{h:016x}" for h, _ in chunk], "at": [round(a, 3) for _, a in chunk]}])
        return size

    def _fsync_dir(self) -> None:
        try:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise named(exc, self.directory) from exc

    # -- running ------------------------------------------------------------------------
    def new_line_id(self) -> str:
        self._next += 1
        return f"{self._prefix}.{self._next}"

    def append_lines(self, lines: list[tuple[str, float, list[Record]]]) -> None:
        """Journal whole lines durably (one fsync for the group) before any of them is sent."""
        if not lines:
            return
        data = "".join(
            json.dumps(
                {"k": "L", "id": line_id, "at": round(at, 3), "r": [_row(r) for r in records]},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            + "\n"
            for line_id, at, records in lines
        ).encode()
        with self._lock:
            self._active().append(data, sync=True)  # whole or not at all; raises naming the segment
            for line_id, at, records in lines:  # memory only once the disk has them
                self._pending[line_id] = PendingLine(at, dict(enumerate(records)))
            self._size += len(data)

    def finished(self, delivered: list[tuple[str, int, str]], other: list[tuple[str, int]]) -> None:
        """Record completions: (line id, index, secret) delivered; (line id, index) otherwise."""
        now = self.clock()
        by_line_d: dict[str, tuple[list[int], list[str]]] = {}
        for line_id, index, secret in delivered:
            n, h = by_line_d.setdefault(line_id, ([], []))
            n.append(index)
            h.append(f"{secret_hash(secret):016x}")
        by_line_r: dict[str, list[int]] = {}
        for line_id, index in other:
            by_line_r.setdefault(line_id, []).append(index)
        entries = [{"k": "D", "id": i, "n": n, "h": h, "t": round(now, 3)} for i, (n, h) in by_line_d.items()]
        entries += [{"k": "R", "id": i, "n": n} for i, n in by_line_r.items()]
        if not entries:
            return
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        with self._lock:
            self._active().append(data)  # whole or not at all; raises naming the segment
            self._size += len(data)
            for e in entries:
                self._apply(e)
            if self._size - self._carried > self.rotate_bytes:
                try:
                    self._compact(self._segments())
                except OSError as exc:  # the completion above is written: say so to the caller
                    raise RotationFailed(exc.errno, exc.strerror, exc.filename) from exc

    def _active(self) -> AppendFile:
        if self._file is None:
            raise RuntimeError("the journal is not open: recover() first")
        return self._file

    def recently_delivered(self, secret: str) -> bool:
        h = secret_hash(secret)
        with self._lock:
            at = self._delivered.get(h)
            return at is not None and at >= self.clock() - self.dedup_window

    def unfinished_count(self) -> int:
        with self._lock:
            return sum(len(p.records) for p in self._pending.values())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _row(r: Record) -> list[object]:
    """A record as journaled: its action field as the wire writes it (a bare number for 1 and 2
    in the default locale, as journals always held), then the other fields."""
    if r.locale is None and r.action.number <= 2:
        return [r.action.number, r.email, r.login, r.secret, r.code]
    return [action_field(r.action, r.locale), r.email, r.login, r.secret, r.code]


def _action(field: object) -> tuple[Action, str | None]:
    """A journaled action field: a number (1 or 2, as earlier versions wrote) or the wire's text."""
    if isinstance(field, int):
        field = str(field)
    if not isinstance(field, str):
        raise TypeError(f"a journaled action is a number or text, not {type(field).__name__}")
    return parse_action_field(field.encode("utf-8"))
