"""The installed `sender` with its output directory on a real small filesystem (a size-limited
tmpfs) that fills mid-run, against the fake SES on loopback: exit 75 with one line naming the
file, no traceback, a journal with no partial entry; after space is freed a restart delivers
every record, sending again no more than the calls that were in flight."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Self

import pytest
from conftest import script
from small_fs import fill, small_filesystem
from test_sender_process import record, sender_env, start, stop

from mailroom.wire import encode_line

HERE = Path(__file__).resolve().parent
CONCURRENCY = 4
BATCH = 50  # MAILROOM_SES_MAX_SEND_RATE=1000: calls of 50
RECORDS = [record(i) for i in range(2000)]
DATA = b"".join(encode_line(RECORDS[i : i + 10]) for i in range(0, len(RECORDS), 10))


class ChildSes:
    """The fake SES on loopback in a child process (fake_ses_child.py), asked over a pipe."""

    def __init__(self, delay: float = 0.0, hold: bool = False) -> None:
        self.argv = [sys.executable, str(HERE / "fake_ses_child.py"), "--delay", str(delay)]
        self.argv += ["--hold"] if hold else []

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self._answer()}"
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def _answer(self) -> object:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line, f"the fake SES exited {self.proc.poll()}"
        return json.loads(line)

    def ask(self, command: str) -> object:
        self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._answer()

    @property
    def received(self) -> list[str]:
        """Every address of every SendBulkTemplatedEmail call answered, in order."""
        return self.ask("received")  # type: ignore[return-value]


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    """Wait for `condition` while the sender runs; on timeout or its exit, fail with its log."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"waiting for {what}: the sender {'exited ' + str(proc.returncode)}; its log:\n{err.decode()}")
        time.sleep(0.02)


def whole_lines(path: Path) -> list[dict]:
    """Every line of `path` parses and the file ends with LF: no partial entry or row."""
    data = path.read_bytes() if path.exists() else b""
    assert not data or data.endswith(b"\n"), f"{path} ends in a partial line"
    return [json.loads(line) for line in data.splitlines()]


def journaled(out: Path) -> int:
    """Records in the journal's line entries so far (the last line may be in the middle of a write)."""
    n = 0
    for segment in (out / "journal").glob("seg-*.jsonl"):
        for line in segment.read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            n += len(entry["r"]) if entry["k"] == "L" else 0
    return n


def env_for(base_env: dict[str, str], out: Path, url: str) -> dict[str, str]:
    return sender_env(base_env, out, url, MAILROOM_SES_CONCURRENCY=str(CONCURRENCY), MAILROOM_SES_MAX_SEND_RATE="1000")


def check_stopped(returncode: int, err: str, out: Path) -> None:
    """Exit 75, one line naming the file and the error, no traceback, no partial journal entry."""
    assert returncode == 75, err
    full = [line for line in err.splitlines() if "No space left on device" in line]
    assert len(full) == 1, err
    assert re.search(rf"ERROR sender: cannot write {re.escape(str(out))}/\S+: No space left on device;", full[0])
    assert "sending stopped" in full[0] and "Traceback" not in err
    for segment in sorted((out / "journal").glob("seg-*.jsonl")):
        whole_lines(segment)
    whole_lines(out / "deliveries.jsonl")


def test_a_disk_that_fills_while_input_is_journaled_exits_75_and_after_freeing_space_every_record_is_delivered(
    base_env, tmp_path
):
    with small_filesystem(tmp_path / "fs", 4 << 20) as fs, ChildSes(delay=0.05) as ses:
        out = fs / "out"
        env = env_for(base_env, out, ses.url)
        filler = fill(fs, leave=160 * 1024)  # room for a few hundred of the 2,000 records
        first = subprocess.run([script("sender")], input=DATA, env=env, cwd=tmp_path, capture_output=True, timeout=120)
        check_stopped(first.returncode, first.stderr.decode(), out)
        assert 0 < len(set(ses.received)) < len(RECORDS), "the disk did not fill mid-run"

        filler.unlink()  # space again; the collector emits its uncommitted lines again (here: all of them)
        second = subprocess.run([script("sender")], input=DATA, env=env, cwd=tmp_path, capture_output=True, timeout=120)
        assert second.returncode == 0, second.stderr.decode()
        received = Counter(ses.received)
        delivered = {r["recipient"] for r in whole_lines(out / "deliveries.jsonl") if r["status"] == "Success"}
        rejects = whole_lines(out / "rejects.jsonl")
    assert set(received) == {r.email for r in RECORDS}, "a record was lost"
    assert sum(n - 1 for n in received.values()) <= CONCURRENCY * BATCH
    assert delivered == set(received) and rejects == []


def test_a_disk_that_fills_while_answers_are_written_exits_75_and_resends_only_the_answers_it_could_not_write(
    base_env, tmp_path
):
    # 400 records: as many as the sender holds in hand with 4 calls of 50 in flight (it reads no more)
    records = RECORDS[:400]
    with small_filesystem(tmp_path / "fs", 4 << 20) as fs, ChildSes(hold=True) as ses:
        out = fs / "out"
        env = env_for(base_env, out, ses.url)
        proc = start(env, tmp_path)
        try:
            proc.stdin.write(encode_line(records[:200]) + encode_line(records[200:]))
            proc.stdin.flush()
            wait_for(lambda: journaled(out) == len(records), proc, "every record journaled")
            wait_for(lambda: ses.ask("arrived") == CONCURRENCY, proc, "the calls in flight")
            filler = fill(fs)  # full, while SES holds its answers to the calls in flight
            ses.ask("release")
            _, err = proc.communicate(timeout=60)
        finally:
            stop(proc)
        check_stopped(proc.returncode, err.decode(), out)
        announced = re.search(r"so (\d+) delivered email\(s\) go out twice", err.decode())
        assert announced, err.decode()
        assert len(ses.received) == CONCURRENCY * BATCH  # nothing sent after the failed write

        filler.unlink()  # space again; every line was journaled, so the collector has nothing to emit again
        second = subprocess.run([script("sender")], input=b"", env=env, cwd=tmp_path, capture_output=True, timeout=120)
        assert second.returncode == 0, second.stderr.decode()
        received = Counter(ses.received)
        delivered = {r["recipient"] for r in whole_lines(out / "deliveries.jsonl") if r["status"] == "Success"}
    assert set(received) == {r.email for r in records}, "a record was lost"
    twice = sum(n - 1 for n in received.values())
    print(f"answers in flight when the disk filled, sent again after the restart: {twice}")
    assert 0 < twice == int(announced.group(1)) <= CONCURRENCY * BATCH  # the answers in flight, as the log said
    assert delivered == set(received)


def test_a_disk_with_no_room_for_the_output_files_exits_75_with_one_line_before_reading(base_env, tmp_path):
    with small_filesystem(tmp_path / "fs", 1 << 20, options="nr_inodes=2") as fs:  # the root and one directory
        out = fs / "out"
        env = sender_env(base_env, out, None, MAILROOM_DEBUG="true")
        done = subprocess.run(
            [script("sender")], input=DATA[:1000], env=env, cwd=tmp_path, capture_output=True, timeout=60
        )
    err = done.stderr.decode()
    assert done.returncode == 75, err
    expected = (
        f"sender: cannot write {out}/deliveries.jsonl: No space left on device; free space on that filesystem (or"
        " give MAILROOM_SES_OUTPUT_PATH a larger volume), then restart the sender; unfinished records stay in the"
        " journal"
    )
    assert err.splitlines() == [expected]
    assert done.stdout == b""  # nothing read, nothing printed
