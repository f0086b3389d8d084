"""Awake mode: while the collector is busy it reads on its own schedule, and the app's
inserts skip their NOTIFY.

A NOTIFY makes its transaction's commit take a cluster-wide lock that serialises every
notifying commit, which is most of what the trigger costs the app's inserts. The schema's
trigger therefore sends it only when it can take a shared advisory lock on
`mailroom_awake_lock(queue)`; while the active collector holds that lock exclusively, it
is "awake" and the trigger only queues the token.

While awake the collector polls the queue (a cheap bounded count every AWAKE_POLL_S)
instead of waiting for notifications, with the same rule as for notifications: read when
BATCH_LIMIT entries are queued, or BATCH_TIMEOUT after it first saw one. With nothing
queued for a whole BATCH_TIMEOUT it goes back to sleep:

1. release the lock: from now on new inserts NOTIFY again;
2. note every transaction then holding a write lock on job_tokens: each one that skipped
   its NOTIFY queued its token (and took that lock) before its trigger looked at ours, so
   it is either among them or already ended;
3. read once more; and until every noted transaction has ended, look every AWAKE_POLL_S
   whether they have, then read once more.

The same notes are taken after every (re)connect, before the first read: a collector that
died while awake may have left transactions that skipped their NOTIFY.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg

from collector.batching import BatchPolicy
from collector.signals import StopFlag
from mailroom.db import queries

log = logging.getLogger("collector")

AWAKE_POLL_S = 0.025
TAKE_TRIES = 20
TAKE_PAUSE_S = 0.001


def _query(name: str) -> str:
    return queries("collector.sql")[name]


class Awake:
    def __init__(self, conn: psycopg.Connection, queue_name: str, policy: BatchPolicy) -> None:
        self.conn = conn
        self.queue_name = queue_name
        self.policy = policy
        self.pending: list[str] = []  # writers that may have skipped their NOTIFY
        self.warned = False  # said once per connection that the awake lock was not to be had

    def take(self) -> bool:
        """Try to become awake; False (stay in notification mode) if the lock stays held.

        Each insert holds the lock shared for a moment (between its trigger's try and
        unlock), so under load a single try often fails for nothing: try a few times.
        """
        for _ in range(TAKE_TRIES):
            row = self.conn.execute(_query("take_awake_lock"), {"queue": self.queue_name}).fetchone()
            if row and row[0]:
                return True
            time.sleep(TAKE_PAUSE_S)
        if not self.warned:
            self.warned = True
            log.warning(
                "could not take the awake lock of queue %r (a session still holds it shared): "
                "reading on notifications only, inserts keep sending NOTIFY",
                self.queue_name,
            )
        return False

    def release(self) -> None:
        self.conn.execute(_query("release_awake_lock"), {"queue": self.queue_name})

    def note_writers(self) -> None:
        """Remember the transactions that may have queued a token without a NOTIFY."""
        row = self.conn.execute(_query("queue_writers")).fetchone()
        self.pending = sorted(set(self.pending) | set(row[0] if row else []))

    def writers_done(self) -> bool:
        """True once every noted writer has ended (then read the queue once more)."""
        if not self.pending:
            return True
        row = self.conn.execute(_query("still_running"), {"vxids": self.pending}).fetchone()
        self.pending = list(row[0] if row else [])
        return not self.pending

    def wait_for_batch(self, stop: StopFlag, clock: Callable[[], float] = time.monotonic) -> bool:
        """While awake: True when it is time to read, False to go back to sleep (nothing
        queued for BATCH_TIMEOUT, or a stop signal)."""
        limit = self.policy.limit
        started = clock()
        first_seen: float | None = None
        query = _query("queued_at_least")
        params = {"queue": self.queue_name, "limit": limit}
        while not stop:
            row = self.conn.execute(query, params, prepare=True).fetchone()
            queued = int(row[0]) if row else 0
            now = clock()
            if queued >= limit:
                return True
            if queued:
                first_seen = first_seen if first_seen is not None else now
                if now - first_seen >= self.policy.timeout_s:
                    return True
            elif now - started >= self.policy.timeout_s:
                return False
            stop.sleep(AWAKE_POLL_S)
        return False
