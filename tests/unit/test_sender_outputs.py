"""The sender's output files: SES error bodies are capped, so a throttling storm cannot
fill the disk that holds the journal; a row is appended whole or not at all when the disk
fills; the directory is private."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
from small_fs import PAGE, fill, small_filesystem

from sender.outputs import Outputs


def bodies(out: Path) -> list[Path]:
    return sorted((out / "errors").glob("*.xml"))


def test_only_the_newest_error_bodies_are_kept_by_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = Outputs(tmp_path, error_bodies_keep=5)
    saved = [out.save_error(f"<Error>{i}</Error>".encode(), f"req-{i:03d}") for i in range(12)]
    kept = bodies(tmp_path)
    assert kept == sorted(saved[-5:])
    assert [p.read_text() for p in kept] == [f"<Error>{i}</Error>" for i in range(7, 12)]
    assert sum("keeping the newest 5" in r.getMessage() for r in caplog.records) == 1  # said once, not per file


def test_only_the_newest_error_bodies_are_kept_by_bytes(tmp_path: Path) -> None:
    out = Outputs(tmp_path, error_bodies_max_bytes=250)
    saved = [out.save_error(b"x" * 100, f"req-{i:03d}") for i in range(6)]
    assert bodies(tmp_path) == sorted(saved[-2:])


def test_an_error_body_larger_than_the_byte_cap_is_still_kept_as_the_newest(tmp_path: Path) -> None:
    out = Outputs(tmp_path, error_bodies_max_bytes=10)
    out.save_error(b"small", "req-1")
    newest = out.save_error(b"y" * 100, "req-2")
    assert bodies(tmp_path) == [newest]


def test_error_bodies_of_an_earlier_run_count_towards_the_cap(tmp_path: Path) -> None:
    first = Outputs(tmp_path, error_bodies_keep=3)
    earlier = [first.save_error(b"<old/>", f"old-{i}") for i in range(3)]
    first.close()
    again = Outputs(tmp_path, error_bodies_keep=3)
    newer = [again.save_error(b"<new/>", f"new-{i}") for i in range(2)]
    assert bodies(tmp_path) == sorted([earlier[-1], *newer])


# -- a full disk: a row is appended whole or not at all, and the error names the file --------------


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"recipient": f"user{i}@example.com", "status": "Success", "pad": "x" * 200} for i in range(start, n)]


def test_a_row_append_that_fails_halfway_is_cut_back_and_names_the_file(tmp_path: Path, monkeypatch) -> None:
    out = Outputs(tmp_path)
    out.deliveries(rows(2))
    path = tmp_path / "deliveries.jsonl"
    before = path.read_bytes()
    real_write = os.write
    calls: list[int] = []

    def write(fd: int, data) -> int:  # the disk fills 10 bytes into the append
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        with pytest.raises(OSError) as failed:
            out.deliveries(rows(4, 2))
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(path)
    assert path.read_bytes() == before
    out.deliveries(rows(4, 2))  # space again: the rows follow the last whole one
    assert [json.loads(line)["recipient"] for line in path.read_text().splitlines()] == [
        f"user{i}@example.com" for i in range(4)
    ]


def test_rejects_written_for_rejected_input_are_fsynced_before_returning(tmp_path: Path, monkeypatch) -> None:
    out = Outputs(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out.rejects([{"reason": "r"}])
    assert synced == []  # outcome rows: the journal's completion follows them
    out.rejects([{"reason": "r"}], sync=True)
    assert synced == [str(tmp_path / "rejects.jsonl")]


def test_an_existing_output_directory_open_to_others_is_made_private(tmp_path: Path) -> None:
    out = tmp_path / "output"
    out.mkdir(mode=0o755)
    out.chmod(0o755)  # as the Dockerfile creates it
    Outputs(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


def test_an_output_directory_that_cannot_be_made_private_is_named_in_a_warning(
    tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "output"
    out.mkdir()
    out.chmod(0o755)

    def chmod(self: Path, mode: int) -> None:  # the directory belongs to another user
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(self))

    monkeypatch.setattr(Path, "chmod", chmod)
    Outputs(out)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(out) in warnings[0] and "0755" in warnings[0]


def test_an_error_body_that_cannot_be_written_leaves_no_half_file(tmp_path: Path, monkeypatch) -> None:
    out = Outputs(tmp_path)

    def write(fd: int, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError) as failed:
        out.save_error(b"<Error/>", "req-1")
    assert failed.value.errno == errno.ENOSPC and "req-1" in failed.value.filename
    assert bodies(tmp_path) == []


def test_on_a_real_full_filesystem_rows_are_whole_or_absent(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", 128 * 1024) as fs:
        out = Outputs(fs / "out")
        path = fs / "out" / "deliveries.jsonl"
        fill(fs, leave=PAGE)
        written = 0
        with pytest.raises(OSError) as failed:
            for i in range(100):  # 10 rows of ~250 bytes at a time: the page fills within a few appends
                out.deliveries(rows(10 * i + 10, 10 * i))
                written += 10
        assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(path)
        assert 0 < written < 1000
        lines = path.read_bytes().split(b"\n")
        assert lines[-1] == b"" and len(lines) - 1 == written  # no half row after the last whole one
        assert [json.loads(line)["recipient"] for line in lines[:-1]] == [
            f"user{i}@example.com" for i in range(written)
        ]
        out.close()
