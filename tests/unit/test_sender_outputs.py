"""The sender's output files: SES error bodies are capped, so a throttling storm cannot
fill the disk that holds the journal."""

from __future__ import annotations

from pathlib import Path

import pytest

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
