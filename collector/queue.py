"""One chunk of the queue: claim, sign, write, and only then commit.

A chunk is one statement (`claim_chunk` in sql/collector.sql) in one transaction. It
deletes up to BATCH_LIMIT entries of this consumer's queue and returns what to emit. The
line is written and flushed to stdout before COMMIT: if the write fails, the transaction
rolls back and every claimed entry is still there for the next collector (at-least-once).
If the process dies after the write and before the commit, the next collector emits that
chunk again: the only way a duplicate is produced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from mailroom.db import queries
from mailroom.signing import Action, sign
from mailroom.wire import Record, encode_line

from collector.output import LineWriter
from collector.signals import StopFlag

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

    def __init__(self, conn: psycopg.Connection, queue_name: str, batch_limit: int, key: bytes) -> None:
        self.conn = conn
        self.key = key
        self.batch_limit = batch_limit
        self._params = {"queue": queue_name, "limit": batch_limit}
        self._claim = queries("collector.sql")["claim_chunk"]
        self._cursor = conn.cursor(binary=True)

    def records(self, rows: list[tuple]) -> list[Record]:
        key = self.key
        out = []
        for emittable, action_no, email, login, secret, code in rows:
            if emittable:
                action = _ACTIONS[action_no]
                out.append(Record(action, email, login, sign(key, action, bytes(secret), code), code))
        return out

    def chunk(self, output: LineWriter) -> tuple[int, int]:
        """Claim and emit one chunk; return (claimed, emitted). Commits only after the write."""
        with self.conn.transaction():
            cur = self._cursor
            cur.execute(self._claim, self._params, prepare=True)
            rows = cur.fetchall()
            records = self.records(rows)
            if records:
                try:
                    output.write_line(encode_line(records))
                except OSError as exc:  # EPIPE: the reader is gone. Leaving the block rolls back.
                    raise OutputClosed(exc, len(rows)) from exc
        return len(rows), len(records)

    def drain(self, output: LineWriter, stop: StopFlag) -> DrainResult:
        """Read chunks until one claims fewer than BATCH_LIMIT entries (the queue is empty)
        or a stop signal arrives; no pause between chunks."""
        result = DrainResult()
        while True:
            claimed, emitted = self.chunk(output)
            result.chunks += 1
            result.claimed += claimed
            result.emitted += emitted
            result.lines += 1 if emitted else 0
            if claimed < self.batch_limit or stop:
                return result
