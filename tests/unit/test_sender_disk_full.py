"""A full disk under the sender's output directory is an operator fault: exit 75, one line naming
the file, no traceback; answers already received are written before the exit when there is
room, and otherwise are the only records sent twice (at most the calls in flight)."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import FakeProvider
from test_sender import FAST, config, jsonl, record

from mailroom.wire import encode_line
from sender.dispatch import Sender
from sender.journal import Journal
from sender.outputs import Outputs
from sender.provider import BulkSend, DestinationResult
from sender.retry import EXIT_OPERATOR_FAULT

CONCURRENCY = 4
BATCH = 50  # config(): max_send_rate 10,000/s, so calls of 50


class Recording(FakeProvider):
    def __init__(self) -> None:
        self.emails: list[str] = []
        self.lock = threading.Lock()

    def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
        with self.lock:
            self.emails += [d.email for d in send.destinations]
        return [DestinationResult("Success", "m")] * len(send.destinations)


class FullDisk:
    """os.write under `root` as on a filesystem that fills: once the `trip`-th write to a file
    named `name` is attempted, every write under `root` fails with ENOSPC until `free()`, or
    only that one write when `once`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, name: str, trip: int, once: bool = False) -> None:
        self.root, self.name, self.trip, self.once = str(root), name, trip, once
        self.seen = 0
        self.full = False
        self.failed = 0
        self.lock = threading.Lock()
        self._write = os.write
        monkeypatch.setattr(os, "write", self)

    def free(self) -> None:
        self.full = False

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if path.startswith(self.root + "/"):
            with self.lock:
                if os.path.basename(path) == self.name and not self.failed:
                    self.seen += 1
                    if self.seen == self.trip:
                        self.full = True
                if self.full:
                    self.failed += 1
                    if self.once:
                        self.full = False
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._write(fd, data)


def new_sender(out: Path, provider: object) -> Sender:
    return Sender(
        config(concurrency=CONCURRENCY),
        provider,  # type: ignore[arg-type]
        Outputs(out),
        Journal(out / "journal"),
        policy=FAST,
    )


def run_on(sender: Sender, data: bytes | None) -> tuple[int, bytes]:
    """Run `sender` over `data` as a pipe; return its exit status and what it left in the pipe."""
    if data is None:
        return sender.run(None), b""
    r, w = os.pipe()

    def write() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        status = sender.run(r)
        writer.join(10)
        os.set_blocking(r, False)
        left = b""
        try:
            while chunk := os.read(r, 1 << 16):
                left += chunk
        except BlockingIOError:
            pass
        return status, left
    finally:
        os.close(r)


def every_line_whole(out: Path) -> None:
    """No partial entry or row anywhere: every line of every file parses and ends with LF."""
    for path in [out / "deliveries.jsonl", out / "rejects.jsonl", *sorted((out / "journal").glob("seg-*.jsonl"))]:
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), path
        for line in data.splitlines():
            json.loads(line)


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


RECORDS = [record(i) for i in range(1000)]
DATA = b"".join(encode_line(RECORDS[i : i + 50]) for i in range(0, len(RECORDS), 50))


def test_a_disk_that_fills_while_outcomes_are_written_stops_with_75_and_one_line_naming_the_file(
    tmp_path, monkeypatch, caplog
):
    provider = Recording()
    disk = FullDisk(monkeypatch, tmp_path, "deliveries.jsonl", trip=3)
    sender = new_sender(tmp_path, provider)
    status, _ = run_on(sender, DATA)
    assert status == EXIT_OPERATOR_FAULT
    assert sender.fault is not None and sender.fault.code == "ENOSPC"
    [line] = errors(caplog)
    deliveries = tmp_path / "deliveries.jsonl"
    assert line.getMessage().startswith(f"cannot write {deliveries}: No space left on device; sending stopped")
    assert not any(r.exc_info for r in caplog.records)  # no traceback anywhere
    every_line_whole(tmp_path)
    held = [m for m in caplog.messages if "could not be written either" in m]
    assert len(held) == 1
    twice = int(held[0].split(", so ")[1].split(" ")[0])  # "... so N delivered email(s) go out twice"
    assert 0 < twice <= CONCURRENCY * BATCH

    disk.free()  # the operator frees space; the collector emits its uncommitted lines again (here: all)
    status, _ = run_on(new_sender(tmp_path, provider), DATA)
    assert status == 0
    assert set(provider.emails) == {r.email for r in RECORDS}  # every record delivered
    duplicates = len(provider.emails) - len(RECORDS)
    assert duplicates == twice  # exactly the answers that could not be written, and no more
    every_line_whole(tmp_path)
    assert Journal(tmp_path / "journal").recover() == []


def test_answers_held_in_memory_are_written_before_the_exit_when_there_is_room_again(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="sender")
    provider = Recording()
    FullDisk(monkeypatch, tmp_path, "deliveries.jsonl", trip=3, once=True)  # one write fails, then there is room
    status, _ = run_on(new_sender(tmp_path, provider), DATA)
    assert status == EXIT_OPERATOR_FAULT
    assert len(errors(caplog)) == 1
    assert "the answers held in memory after the failed write are written" in caplog.messages
    delivered_first = len(provider.emails)
    assert sorted(r["recipient"] for r in jsonl(tmp_path / "deliveries.jsonl")) == sorted(provider.emails)
    status, _ = run_on(new_sender(tmp_path, provider), DATA)
    assert status == 0
    assert sorted(provider.emails) == sorted(r.email for r in RECORDS)  # each exactly once
    assert 0 < delivered_first < len(RECORDS)
    every_line_whole(tmp_path)


def test_a_disk_that_fills_while_input_is_journaled_stops_with_75_and_takes_nothing_out_of_the_pipe(
    tmp_path, monkeypatch, caplog
):
    provider = Recording()
    data = encode_line(RECORDS[:3]) + encode_line(RECORDS[3:5])
    disk = FullDisk(monkeypatch, tmp_path, "", trip=0)
    disk.full = True  # from the first write: the journal's first append
    sender = new_sender(tmp_path, provider)
    status, left = run_on(sender, data)
    assert status == EXIT_OPERATOR_FAULT
    assert left == data  # not acknowledged: the collector has not committed these and sends them again
    assert provider.emails == []
    [line] = errors(caplog)
    assert line.getMessage().startswith(f"cannot write {tmp_path / 'journal'}/seg-")
    assert "No space left on device" in line.getMessage() and not line.exc_info
    disk.free()
    status, _ = run_on(new_sender(tmp_path, provider), data)
    assert status == 0 and sorted(provider.emails) == sorted(r.email for r in RECORDS[:5])


def test_a_journal_that_cannot_be_compacted_at_start_exits_75_and_keeps_it_for_the_next_start(
    tmp_path, monkeypatch, caplog
):
    j = Journal(tmp_path / "journal")
    j.recover()
    line = j.new_line_id()
    j.append_lines([(line, time.time(), RECORDS[:3])])
    j.close()
    provider = Recording()
    disk = FullDisk(monkeypatch, tmp_path, "", trip=0)
    disk.full = True
    assert run_on(new_sender(tmp_path, provider), None)[0] == EXIT_OPERATOR_FAULT
    [error] = errors(caplog)
    assert error.getMessage().startswith(f"cannot write {tmp_path / 'journal'}/seg-") and not error.exc_info
    assert provider.emails == []
    disk.free()
    assert run_on(new_sender(tmp_path, provider), None)[0] == 0
    assert sorted(provider.emails) == sorted(r.email for r in RECORDS[:3])
