"""Deleting tokens consumed or expired longer ago than the retention (MAILROOM_PRUNE_AFTER).

The work is done by the SQL function mailroom_prune (migrations/0003_prune.sql), one
bounded batch per call. Here each call is its own short transaction (autocommit), so the
rows of one batch are locked only while that batch is deleted, and the loop stops at the
first batch that comes back short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import psycopg

log = logging.getLogger("mailroom.prune")

DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    batches: int


def prune(conn: psycopg.Connection, retention_s: float, batch_size: int = DEFAULT_BATCH_SIZE,
          max_batches: int | None = None) -> PruneResult:
    """Delete everything due in batches of `batch_size`, committing after each one.

    `conn` must be in autocommit mode: a batch inside a caller's transaction would hold
    every batch's locks until that transaction ends.
    """
    if not conn.autocommit:
        raise ValueError("prune needs an autocommit connection (one transaction per batch)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    retention = timedelta(seconds=retention_s)
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        row = conn.execute("SELECT mailroom_prune(%s, %s)", (retention, batch_size)).fetchone()
        count = int(row[0]) if row else 0
        batches += 1
        deleted += count
        log.debug("prune batch %d deleted %d tokens", batches, count)
        if count < batch_size:
            break
    return PruneResult(deleted=deleted, batches=batches)
