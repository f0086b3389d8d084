"""Input rejected when read: on disk (fsync) before its line leaves the pipe, and counted in
mailroom_sender_input_rejected_total, so the metrics and the files agree."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import FakeProvider
from test_sender import jsonl, record, run_sender

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.wire import MAX_LINE_BYTES, encode_line
from sender import reader
from sender.metrics import INPUT_REJECT_REASONS, build_registry
from sender.provider import BulkSend, DestinationResult
from sender.retry import Outcome

SECRET = record(1).secret.encode()


def bad(action: bytes = b"1", email: bytes = b"x@example.com", login: bytes = b"x", secret: bytes = SECRET) -> bytes:
    return b",".join([action, email, login, secret, b"00000"])


# one of each kind of rejection the reader gives, with the kind the metric counts it as
BAD_LINES: list[tuple[bytes, str]] = [
    (b"z" * (MAX_LINE_BYTES + 10) + b"\n", "line_too_long"),
    (b'1,"unterminated\n', "malformed_line"),
    (b'1,"a"b,c,d,e\n', "malformed_line"),
    (b"1,2,3\n", "malformed_line"),
    (bad(action=b"3") + b"\n", "action"),
    (bad(action=b"1/magic_link") + b"\n", "action"),
    (bad(action=b"4/magic_link@p") + b"\n", "locale"),
    (bad(email=b"not-an-address") + b"\n", "email"),
    (bad(email=b"\xff@example.com") + b"\n", "email"),
    (bad(login=b"a\x07b") + b"\n", "username"),
    (bad(secret=b"short") + b"\n", "secret"),
    (bad()[:-5] + b"12\n", "code"),
]


class RefusesSome(FakeProvider):
    """Delivers every destination but those in `refused`, which SES refuses for that recipient."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused

    def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
        return [
            DestinationResult("MessageRejected", None, "Address blacklisted.", Outcome.REFUSED)
            if d.email in self.refused
            else DestinationResult("Success", "m")
            for d in send.destinations
        ]


def kinds(tmp_path: Path, data: bytes) -> list[str]:
    """The kinds of the rejections the reader gives for `data` (a file on stdin)."""
    path = tmp_path / "input"
    path.write_bytes(data)
    found = []
    with open(path, "rb") as f:
        src = reader.ChunkedLines(f.fileno(), lambda: True)
        for group in reader.decoded_groups(src):
            found += [reader.reject_kind(r.reason) for line in group for r in line.rejects]
            src.ack()
    return found


def test_every_rejection_the_reader_gives_has_a_kind_of_its_own(tmp_path: Path) -> None:
    for line, kind in BAD_LINES:
        assert kinds(tmp_path, line) == [kind], line[:40]
    assert reader.reject_kind("something new") == "other"
    assert set(INPUT_REJECT_REASONS) == {kind for _, kind in BAD_LINES} | {"other"}


def test_rejected_input_is_on_disk_before_its_line_leaves_the_pipe(tmp_path: Path, monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_ack = os.fsync, reader.ChunkedLines.ack

    def fsync(fd: int) -> None:
        events.append("fsync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def ack(self: reader.ChunkedLines) -> None:
        events.append("ack")
        real_ack(self)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(reader.ChunkedLines, "ack", ack)
    run_sender(tmp_path, RefusesSome(set()), bad(email=b"not-an-address") + b"\n")
    assert events[events.index("ack") - 1] == "fsync rejects.jsonl"
    assert len(jsonl(tmp_path / "rejects.jsonl")) == 1


def test_the_input_rejected_metric_and_the_outcome_counters_agree_with_the_files(tmp_path: Path) -> None:
    good = [record(i, (ACTIVATION, PASSWORD_RECOVERY)[i % 2]) for i in range(10, 40)]
    refused = {good[3].email, good[17].email}
    mixed = encode_line([good[0]])[:-1] + b"," + bad(email=b"nope") + b"\n"  # a good and a bad record in one line
    data = mixed + encode_line(good[1:20]) + b"".join(line for line, _ in BAD_LINES) + encode_line(good[20:])
    data += encode_line(good[25:27])  # emitted again: duplicates
    sender = run_sender(tmp_path, RefusesSome(refused), data, concurrency=2)
    registry, _ = build_registry(sender)

    def sample(name: str, **labels: str) -> float:
        value = registry.get_sample_value(name, labels)
        assert value is not None, (name, labels)
        return value

    def outcome(name: str) -> float:
        return sum(
            sample("mailroom_sender_outcomes_total", outcome=name, action=a.name)
            for a in (ACTIVATION, PASSWORD_RECOVERY)
        )

    expected = {kind: 0 for kind in INPUT_REJECT_REASONS}
    for _, kind in BAD_LINES:
        expected[kind] += 1
    expected["email"] += 1  # the bad record beside a good one
    got = {kind: sample("mailroom_sender_input_rejected_total", reason=kind) for kind in INPUT_REJECT_REASONS}
    assert got == expected

    rejects = jsonl(tmp_path / "rejects.jsonl")
    deliveries = jsonl(tmp_path / "deliveries.jsonl")
    assert sum(got.values()) + outcome("recipient_refused") + outcome("deadline_passed") == len(rejects)
    assert sum(got.values()) == len([r for r in rejects if "recipient" not in r])  # input rows carry no recipient
    assert sample("mailroom_sender_records_read_total") == len(good) + 2 == len(deliveries)
    assert outcome("delivered") == len([d for d in deliveries if d["status"] == "Success"]) == len(good) - 2
    assert outcome("duplicate_skipped") == len([d for d in deliveries if d["status"] == "Duplicate"]) == 2
    assert outcome("recipient_refused") == len(refused)
