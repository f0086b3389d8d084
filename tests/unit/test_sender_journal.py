"""The sender's journal: what was read and not finished survives a crash; nothing is sent twice."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from conftest import FakeProvider
from test_sender import jsonl, record, run_sender

from mailroom.signing import Action
from mailroom.wire import encode_line
from sender.journal import Journal
from sender.provider import BulkSend, DestinationResult


class Recording(FakeProvider):
    def __init__(self) -> None:
        self.emails: list[str] = []

    def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
        self.emails += [d.email for d in send.destinations]
        return [DestinationResult("Success", "m")] * len(send.destinations)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.jsonl"))


def test_unfinished_records_are_recovered_and_finished_ones_are_not(tmp_path):
    j = Journal(tmp_path)
    assert j.recover() == []
    a, b = j.new_line_id(), j.new_line_id()
    j.append_lines([(a, 100.0, [record(1), record(2)]), (b, 101.0, [record(3)])])
    j.finished([(a, 0, record(1).secret)], [(b, 0)])
    j.close()
    again = Journal(tmp_path)
    assert again.recover() == [(a, 100.0, [(1, record(2))])]
    assert again.recently_delivered(record(1).secret)


def test_a_torn_last_line_is_tolerated_and_old_segments_are_compacted_away(tmp_path):
    j = Journal(tmp_path)
    j.recover()
    a = j.new_line_id()
    now = round(time.time(), 3)
    j.append_lines([(a, now, [record(1), record(2)])])
    j.finished([(a, 0, record(1).secret)], [])
    j.close()
    with open(segments(tmp_path)[-1], "ab") as f:
        f.write(b'{"k":"D","id":"' + a.encode() + b'","n":[1],"h":["ab')  # the crash tore this write
    again = Journal(tmp_path)
    assert again.recover() == [(a, now, [(1, record(2))])]
    assert again.skipped_entries == 1
    assert again.recently_delivered(record(1).secret)
    assert len(segments(tmp_path)) == 1  # the old segment is gone, its live state carried over
    text = segments(tmp_path)[0].read_text()
    assert record(1).secret not in text and record(2).secret in text


def test_the_journal_rotates_and_stays_as_small_as_the_work_in_hand(tmp_path):
    j = Journal(tmp_path, rotate_bytes=4096)
    j.recover()
    for i in range(200):
        line = j.new_line_id()
        j.append_lines([(line, time.time(), [record(i)])])
        j.finished([(line, 0, record(i).secret)], [])
    assert len(segments(tmp_path)) == 1
    assert segments(tmp_path)[0].read_text().count('"k":"L"') < 50  # finished lines were dropped
    assert j.recently_delivered(record(5).secret) and j.unfinished_count() == 0


def test_the_output_directory_and_journal_are_private(tmp_path):
    out = tmp_path / "out"
    run_sender(out, Recording(), encode_line([record(1)]))
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "journal").stat().st_mode) == 0o700
    for path in [out / "deliveries.jsonl", out / "rejects.jsonl", *segments(out / "journal")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_line_emitted_again_is_not_sent_again(tmp_path):
    provider = Recording()
    line = encode_line([record(1), record(2, Action.PASSWORD_RECOVERY)])
    run_sender(tmp_path, provider, line + line)  # the same line twice in one run
    run_sender(tmp_path, provider, line)  # and again after a restart (the collector re-emitted it)
    assert sorted(provider.emails) == [record(1).email, record(2).email]
    rows = jsonl(tmp_path / "deliveries.jsonl")
    assert [r["status"] for r in rows].count("Duplicate") == 4


def test_on_start_unfinished_records_are_sent_and_late_ones_rejected(tmp_path):
    j = Journal(tmp_path / "journal")
    j.recover()
    fresh, late = j.new_line_id(), j.new_line_id()
    j.append_lines([(fresh, time.time() - 5, [record(1)]), (late, time.time() - 3600, [record(2)])])
    j.close()
    provider = Recording()
    run_sender(tmp_path, provider, None)
    assert provider.emails == [record(1).email]
    rejects = jsonl(tmp_path / "rejects.jsonl")
    assert [(r["reason"], r["record"]["email"]) for r in rejects] == [
        ("deadline passed while the sender was down", record(2).email)
    ]
    assert Journal(tmp_path / "journal").recover() == []


def test_journal_entries_are_json_lines(tmp_path):
    j = Journal(tmp_path)
    j.recover()
    j.append_lines([(j.new_line_id(), 1.0, [record(1, login='a "quoted", {{x}} Zoë')])])
    for line in segments(tmp_path)[0].read_text().splitlines():
        json.loads(line)
    assert os.path.getsize(segments(tmp_path)[0]) > 0


def test_short_writes_never_corrupt_the_next_entry(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def short_write(fd: int, data) -> int:  # the kernel may write less than asked
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    j = Journal(tmp_path)
    j.recover()
    a, b = j.new_line_id(), j.new_line_id()
    with monkeypatch.context() as m:
        m.setattr(os, "write", short_write)
        j.append_lines([(a, 100.0, [record(1), record(2)])])
        j.append_lines([(b, 101.0, [record(3)])])
        j.finished([(a, 0, record(1).secret)], [(b, 0)])
    j.close()
    assert len(calls) > 3  # the writes were short, and were continued
    for line in segments(tmp_path)[0].read_bytes().splitlines():
        json.loads(line)
    again = Journal(tmp_path)
    assert again.recover() == [(a, 100.0, [(1, record(2))])]
    assert again.skipped_entries == 0 and again.recently_delivered(record(1).secret)


def test_a_corrupt_entry_in_the_middle_of_a_segment_is_logged_with_its_segment_and_line(tmp_path, caplog):
    j = Journal(tmp_path)
    j.recover()
    a, b = j.new_line_id(), j.new_line_id()
    j.append_lines([(a, 100.0, [record(1)])])
    j.append_lines([(b, 101.0, [record(2)])])
    j.close()
    path = segments(tmp_path)[-1]
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = len(lines) - 1  # the line of `a`, with `b`'s after it
    lines[damaged - 1] = b'{"k":"L","id":garbage\n'
    path.write_bytes(b"".join(lines))
    with caplog.at_level("INFO", logger="sender.journal"):
        again = Journal(tmp_path)
        assert again.recover() == [(b, 101.0, [(0, record(2))])]
    assert again.skipped_entries == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert f"journal {path.name} line {damaged}: corrupt entry skipped" in warnings[0]


def test_a_torn_last_entry_is_not_reported_as_corruption(tmp_path, caplog):
    j = Journal(tmp_path)
    j.recover()
    a = j.new_line_id()
    j.append_lines([(a, 100.0, [record(1)])])
    j.close()
    with open(segments(tmp_path)[-1], "ab") as f:
        f.write(b'{"k":"D","id":"' + a.encode() + b'","n":[0')
    with caplog.at_level("INFO", logger="sender.journal"):
        assert Journal(tmp_path).recover() == [(a, 100.0, [(0, record(1))])]
    assert [r.levelname for r in caplog.records if "skipped" in r.getMessage()] == ["INFO"]


class CrashBeforeUnlink(Exception):
    """Stands for a crash between the fsync of the new segment and the removal of the old."""


def _state(j: Journal, secrets: list[str]) -> tuple[list, list[bool], int]:
    return j.recover(), [j.recently_delivered(s) for s in secrets], j.unfinished_count()


@pytest.mark.parametrize("when", ["start-up", "rotation"])
def test_a_crash_during_compaction_leaves_two_segments_that_replay_to_the_same_state(tmp_path, monkeypatch, when):
    secrets = [record(i).secret for i in range(1, 7)]
    j = Journal(tmp_path, rotate_bytes=1 << 30)
    j.recover()
    a, b, c = j.new_line_id(), j.new_line_id(), j.new_line_id()
    now = round(time.time(), 3)
    j.append_lines([(a, now, [record(1), record(2)]), (b, now, [record(3), record(4)])])
    j.append_lines([(c, now, [record(5), record(6)])])
    j.finished([(a, 0, record(1).secret), (b, 1, record(4).secret)], [(c, 0)])
    expected_pending = [(a, now, [(1, record(2))]), (b, now, [(0, record(3))]), (c, now, [(1, record(6))])]
    real_unlink = Path.unlink

    def crash(self: Path, missing_ok: bool = False) -> None:
        if self.name.startswith("seg-"):
            raise CrashBeforeUnlink(self.name)
        real_unlink(self, missing_ok=missing_ok)

    if when == "rotation":
        expected_pending = expected_pending[:2]  # (c, 1) is finished by the entry that triggers the rotation
    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(CrashBeforeUnlink):
        if when == "rotation":
            j.rotate_bytes = 0
            j.finished([], [(c, 1)])  # grows the segment past rotate_bytes: compacts
        else:
            j.close()
            Journal(tmp_path).recover()  # the next start compacts
    monkeypatch.undo()
    j.close()
    assert len(segments(tmp_path)) == 2  # the new segment is durable, the old one still there
    again = Journal(tmp_path)
    pending, delivered, unfinished = _state(again, secrets)
    assert pending == expected_pending
    assert delivered == [True, False, False, True, False, False]
    assert unfinished == len(expected_pending)  # nothing duplicated
    again.close()
    assert len(segments(tmp_path)) == 1
    third = Journal(tmp_path)
    assert _state(third, secrets) == (pending, delivered, unfinished)
