"""Chunks of the queue: claim, sign, write, and only then commit.

A chunk is one statement (`claim_chunk` in sql/collector.sql) and one line: it deletes up
to BATCH_LIMIT entries of this consumer's queue and returns what to emit. Up to
CHUNKS_PER_COMMIT chunks share a transaction; their lines are written to stdout, and
COMMIT comes only once the reader has taken them all (collector/output.py): if anything
fails first, the transaction rolls back and every claimed entry is still there for the
next collector (at-least-once). If the process dies after the reader took the lines and
before the commit, the next collector emits those chunks again: the only way a duplicate
is produced, and the sender's journal recognises it.

Why several chunks a transaction: the sender takes a line out of the pipe only after its
journal fsync, so waiting for the reader once per line would cost one fsync per line;
once per transaction, the sender journals the transaction's lines with one fsync.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import psycopg
from psycopg.types.numeric import Int8

from collector.metrics import CollectorStats
from collector.output import LineWriter
from collector.signals import StopFlag
from mailroom.db import queries
from mailroom.signing import Action, sign
from mailroom.wire import Record, encode_line

CHUNKS_PER_COMMIT = 10

log = logging.getLogger("collector.queue")

_ACTIONS = {1: Action.ACTIVATION, 2: Action.PASSWORD_RECOVERY}


class OutputClosed(Exception):
    """stdout cannot be written (the sender is gone); the chunk was rolled back."""

    def __init__(self, error: OSError, claimed: int) -> None:
        super().__init__(f"cannot write to stdout: {error.strerror or error}")
        self.claimed = claimed


@dataclass
class DrainResult:
    claimed: int = 0
    emitted: int = 0
    lines: int = 0
    chunks: int = 0


class Queue:
    """This consumer's queue on one connection."""

    def __init__(
        self,
        conn: psycopg.Connection,
        queue_name: str,
        batch_limit: int,
        key: bytes,
        stats: CollectorStats | None = None,
    ) -> None:
        self.conn = conn
        self.stats = stats or CollectorStats()
        self.key = key
        self.batch_limit = batch_limit
        self._queue_name = queue_name
        self._claim = queries("collector.sql")["claim_chunk"]
        self._cursor = conn.cursor(binary=True)

    def records(self, rows: list[tuple]) -> list[Record]:
        key = self.key
        out = []
        for _token, emittable, action_no, email, login, secret, code, _skipped in rows:
            if emittable:
                action = _ACTIONS[action_no]
                out.append(Record(action, email, login, sign(key, action, bytes(secret), code), code))
        return out

    def drain(self, output: LineWriter, stop: StopFlag) -> DrainResult:
        """Read chunks, with no pause between them, until the queue is empty or a stop
        signal arrives.

        Empty means a chunk read from the start of the queue claimed fewer than
        BATCH_LIMIT entries. Between full chunks the scan starts past the last claimed id
        (a speed hint that skips the entries just deleted); when a hinted chunk comes up
        short, one more chunk from the start picks up any token of a lower id whose
        transaction committed meanwhile. A token committing after that final read sends
        its NOTIFY after it, which wakes the next drain: nothing is skipped.
        """
        result = DrainResult()
        after = 0
        cur = self._cursor
        while True:
            claimed_here, done = 0, False
            emitted_here = lines_here = bytes_here = 0
            skipped: Counter[str] | None = None
            try:
                with self.conn.transaction():
                    for _ in range(CHUNKS_PER_COMMIT):
                        params = {"queue": self._queue_name, "after": Int8(after), "limit": Int8(self.batch_limit)}
                        cur.execute(self._claim, params, prepare=True)
                        rows = cur.fetchall()
                        claimed_here += len(rows)
                        records = self.records(rows)
                        if records:
                            line = encode_line(records)
                            output.write_line(line)
                            emitted_here += len(records)
                            lines_here += 1
                            bytes_here += len(line)
                        if len(records) < len(rows):
                            skipped = skipped or Counter()
                            skipped.update(row[7] for row in rows if not row[1])
                        result.chunks += 1
                        result.claimed += len(rows)
                        result.emitted += len(records)
                        result.lines += 1 if records else 0
                        if stop:
                            done = True
                            break
                        if len(rows) == self.batch_limit:
                            after = rows[-1][0]
                        elif after == 0:
                            done = True
                            break
                        else:
                            after = 0
                    self.stats.wait_until_read(output)  # output.wait_until_read(), timed
            except OSError as exc:  # EPIPE: the reader is gone. Leaving the block rolled back.
                raise OutputClosed(exc, claimed_here) from exc
            self.stats.committed(emitted_here, lines_here, bytes_here, skipped)
            if done:
                return result
