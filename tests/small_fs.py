"""A real small filesystem for the disk-full tests: a size-limited tmpfs mounted under the
test's tmp_path, and a filler file that leaves a chosen number of bytes free.

Mounting needs root (or CAP_SYS_ADMIN); CI runs the suite as root. When the mount fails the
test fails with a message saying so: it is never skipped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

PAGE = 4096  # tmpfs allocates in pages


@contextlib.contextmanager
def small_filesystem(path: Path, size: int, options: str = "") -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` (created), unmounted on the way out; `options`:
    more mount options (e.g. `nr_inodes=3`: room for so many files and directories)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={size},mode=0700{',' + options if options else ''}",
                "tmpfs",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        problem = (done.stderr.strip() or f"mount exited {done.returncode}") if done.returncode else ""
    except FileNotFoundError:
        problem = "no `mount` program"
    if problem:
        pytest.fail(
            f"cannot mount a {size}-byte tmpfs at {path} ({problem}). The disk-full tests need a real small "
            "filesystem: run them as root (or with CAP_SYS_ADMIN), as CI does.",
            pytrace=False,
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int = 0, name: str = "filler") -> Path:
    """A file under `path` that takes all its free space but `leave` bytes (rounded to pages)."""
    filler = path / name
    want = max(0, free_bytes(path) - leave)
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 16)
        while want > 0:
            want -= f.write(chunk[: min(len(chunk), want)])
    assert free_bytes(path) <= leave + PAGE, f"{path}: {free_bytes(path)} bytes still free, wanted {leave}"
    return filler
