"""The sender's journal: what was read and not finished survives a crash; nothing is sent twice."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
import time
from pathlib import Path

import pytest
from conftest import FakeProvider
from small_fs import PAGE, fill, small_filesystem
from test_sender import jsonl, record, run_sender

from mailroom.actions import MAGIC_LINK, PASSWORD_RECOVERY
from mailroom.wire import encode_line
from sender.journal import Journal, RotationFailed
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


def test_records_of_any_action_and_locale_are_recovered_as_they_were_read(tmp_path):
    magic = dataclasses.replace(record(4), action=MAGIC_LINK, locale="pt-BR")
    recovery_pt = dataclasses.replace(record(5, PASSWORD_RECOVERY), locale="pt")
    j = Journal(tmp_path)
    j.recover()
    a = j.new_line_id()
    j.append_lines([(a, 100.0, [record(1), magic, recovery_pt])])
    j.close()
    rows = [json.loads(line)["r"] for seg in segments(tmp_path) for line in seg.read_text().splitlines()]
    assert [row[0] for row in rows[-1]] == [1, "4/magic_link@pt-BR", "2@pt"]  # 1 and 2 as journals always held them
    assert Journal(tmp_path).recover() == [(a, 100.0, [(0, record(1)), (1, magic), (2, recovery_pt)])]


def test_a_journal_written_before_actions_were_data_is_read_as_it_was(tmp_path):
    old = record(7, PASSWORD_RECOVERY)
    entry = {"k": "L", "id": "old-1", "at": 100.0, "r": [[2, old.email, old.login, old.secret, old.code]]}
    (tmp_path / "seg-1.jsonl").write_text(json.dumps(entry) + "\n")
    assert Journal(tmp_path).recover() == [("old-1", 100.0, [(0, old)])]


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
    line = encode_line([record(1), record(2, PASSWORD_RECOVERY)])
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


# -- a full disk: an append is whole or not at all, and memory follows the disk ------------------------


def failing_write(fail_on: int, written: int = 7) -> tuple[list[int], object]:
    """os.write that writes `written` bytes of its `fail_on`-th call, then raises ENOSPC on the next:
    what a filesystem does when it fills in the middle of an append."""
    real_write = os.write
    calls: list[int] = []

    def write(fd: int, data) -> int:
        calls.append(len(data))
        if len(calls) == fail_on:
            return real_write(fd, bytes(data[:written]))
        if len(calls) > fail_on:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    return calls, write


def test_an_append_that_fails_halfway_leaves_no_partial_entry_and_memory_follows_the_disk(tmp_path, monkeypatch):
    j = Journal(tmp_path)
    j.recover()
    a, b = j.new_line_id(), j.new_line_id()
    j.append_lines([(a, 100.0, [record(1), record(2)])])
    segment = segments(tmp_path)[0]
    before = segment.read_bytes()
    calls, write = failing_write(1)
    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        with pytest.raises(OSError) as failed:
            j.append_lines([(b, 101.0, [record(3)])])
    assert len(calls) == 2  # 7 bytes written, then the disk was full
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(segment)
    assert segment.read_bytes() == before  # cut back to where the entry began
    assert j.unfinished_count() == 2  # the line that failed is not in memory either
    calls, write = failing_write(1)
    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        with pytest.raises(OSError):
            j.finished([(a, 0, record(1).secret)], [])
    assert segment.read_bytes() == before
    assert j.unfinished_count() == 2 and not j.recently_delivered(record(1).secret)
    # space again: the next entries follow the last whole one, and a restart agrees with memory
    j.append_lines([(b, 101.0, [record(3)])])
    j.finished([(a, 0, record(1).secret)], [])
    j.close()
    again = Journal(tmp_path)
    assert again.recover() == [(a, 100.0, [(1, record(2))]), (b, 101.0, [(0, record(3))])]
    assert again.skipped_entries == 0 and again.recently_delivered(record(1).secret)


def test_a_failed_fsync_of_journaled_lines_cuts_them_off_and_leaves_them_out_of_memory(tmp_path, monkeypatch):
    j = Journal(tmp_path)
    j.recover()
    a = j.new_line_id()
    before = segments(tmp_path)[0].read_bytes()

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", fsync)
        with pytest.raises(OSError) as failed:
            j.append_lines([(a, 100.0, [record(1)])])
    assert failed.value.errno == errno.EIO and failed.value.filename == str(segments(tmp_path)[0])
    assert segments(tmp_path)[0].read_bytes() == before and j.unfinished_count() == 0


def test_when_even_the_cut_fails_the_next_append_cuts_first_or_fails(tmp_path, monkeypatch):
    j = Journal(tmp_path)
    j.recover()
    a, b = j.new_line_id(), j.new_line_id()
    j.append_lines([(a, 100.0, [record(1)])])
    before = segments(tmp_path)[0].read_bytes()
    real_ftruncate = os.ftruncate

    def ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    _, write = failing_write(1)
    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        m.setattr(os, "ftruncate", ftruncate)
        with pytest.raises(OSError):
            j.append_lines([(b, 101.0, [record(2)])])
    assert segments(tmp_path)[0].read_bytes() != before  # 7 bytes of a torn entry are left
    with monkeypatch.context() as m:
        m.setattr(os, "ftruncate", ftruncate)
        with pytest.raises(OSError):  # still cannot cut: nothing is glued onto the torn entry
            j.finished([(a, 0, record(1).secret)], [])
    assert len(segments(tmp_path)[0].read_bytes()) == len(before) + 7
    monkeypatch.setattr(os, "ftruncate", real_ftruncate)
    j.finished([(a, 0, record(1).secret)], [])  # the cut first, then the entry
    j.close()
    again = Journal(tmp_path)
    assert again.recover() == [] and again.skipped_entries == 0


def test_a_rotation_that_fails_removes_its_half_segment_keeps_the_old_one_and_says_the_completion_is_written(
    tmp_path, monkeypatch
):
    j = Journal(tmp_path, rotate_bytes=1 << 30)
    j.recover()
    a = j.new_line_id()
    j.append_lines([(a, 100.0, [record(1), record(2)])])
    old = segments(tmp_path)
    j.rotate_bytes = 0  # the next completion compacts
    real_write = os.write
    segment_fd = j._active().fd

    def write(fd: int, data) -> int:  # the old segment takes the completion; the new one hits a full disk
        if fd == segment_fd:
            return real_write(fd, data)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        with pytest.raises(RotationFailed) as failed:
            j.finished([(a, 0, record(1).secret)], [])
    assert failed.value.errno == errno.ENOSPC and failed.value.filename.startswith(str(tmp_path / "seg-"))
    assert segments(tmp_path) == old  # the half-written segment is gone
    assert j.recently_delivered(record(1).secret)  # the completion was written before the rotation
    j.finished([(a, 1, record(2).secret)], [])  # and the old segment goes on: this one rotates
    j.close()
    again = Journal(tmp_path)
    assert again.recover() == [] and again.recently_delivered(record(2).secret)


def test_a_compaction_at_start_that_fails_keeps_the_old_segments_for_the_next_start(tmp_path, monkeypatch):
    j = Journal(tmp_path)
    j.recover()
    a = j.new_line_id()
    j.append_lines([(a, 100.0, [record(1)])])
    j.close()
    old = segments(tmp_path)

    def write(fd: int, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        with pytest.raises(OSError) as failed:
            Journal(tmp_path).recover()
    assert failed.value.filename.startswith(str(tmp_path / "seg-"))
    assert segments(tmp_path) == old
    assert Journal(tmp_path).recover() == [(a, 100.0, [(0, record(1))])]


def test_entries_glued_onto_a_torn_one_by_an_older_version_are_recovered(tmp_path, caplog):
    """Before the cut-back, an append that failed halfway left half an entry, and the next
    entry was glued onto it: that delivery was forgotten and the record sent again."""
    j = Journal(tmp_path)
    j.recover()
    a = j.new_line_id()
    j.append_lines([(a, 100.0, [record(1), record(2), record(3)])])
    j.close()
    torn = b'{"k":"L","id":"x.9","at":101.0,"r":[[1,"user9@example.com","us'
    glued = b'{"k":"D","id":"%s","n":[0],"h":["00000000000000aa"],"t":1.0}\n' % a.encode()
    name = segments(tmp_path)[0].name
    with open(segments(tmp_path)[0], "ab") as f:
        f.write(torn + glued + b'{"k":"R","id":"%s","n":[2]}\n' % a.encode())
    with caplog.at_level("INFO", logger="sender.journal"):
        again = Journal(tmp_path)
        assert again.recover() == [(a, 100.0, [(1, record(2))])]
    assert again.skipped_entries == 1
    assert [m for m in caplog.messages if "torn" in m or "corrupt" in m] == [
        f"journal {name} line 2: a torn entry skipped, 1 whole entry glued after it recovered"
    ]


def test_on_a_real_full_filesystem_a_failed_append_is_cut_back_and_names_the_segment(tmp_path, monkeypatch):
    real_write = os.write
    returned: list[tuple[int, int]] = []  # (asked, written) of every write: shows the partial one

    def watched(fd: int, data) -> int:
        n = real_write(fd, data)
        returned.append((len(data), n))
        return n

    with small_filesystem(tmp_path / "fs", 256 * 1024) as fs:
        j = Journal(fs / "journal")
        j.recover()
        a, b = j.new_line_id(), j.new_line_id()
        j.append_lines([(a, 100.0, [record(1)])])
        segment = segments(fs / "journal")[0]
        before = segment.read_bytes()
        filler = fill(fs, leave=PAGE)
        big = [record(i) for i in range(2, 200)]  # about 50 KB: more than the page left
        monkeypatch.setattr(os, "write", watched)
        with pytest.raises(OSError) as failed:
            j.append_lines([(b, 101.0, big)])
        monkeypatch.undo()
        assert any(0 < written < asked for asked, written in returned)  # the disk filled halfway through
        assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(segment)
        assert segment.read_bytes() == before and j.unfinished_count() == 1
        filler.unlink()  # space again
        j.append_lines([(b, 101.0, big)])
        j.finished([(a, 0, record(1).secret)], [])
        j.close()
        again = Journal(fs / "journal")
        assert again.recover() == [(b, 101.0, list(enumerate(big)))]
        assert again.skipped_entries == 0 and again.recently_delivered(record(1).secret)
        again.close()
