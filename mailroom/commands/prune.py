"""Deleting tokens consumed or expired longer ago than the retention (MAILROOM_PRUNE_AFTER).

The work is done by the SQL function mailroom_prune (migrations/0003_prune.sql), one
bounded batch per call. Here each call is its own short transaction (autocommit), so the
rows of one batch are locked only while that batch is deleted, and the loop stops at the
first batch that comes back short.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from mailroom import settings
from mailroom.db import connect, describe
from mailroom.logs import plural

log = logging.getLogger("mailroom.prune")

DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    batches: int


def prune(
    conn: psycopg.Connection, retention_s: float, batch_size: int = DEFAULT_BATCH_SIZE, max_batches: int | None = None
) -> PruneResult:
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


# `mailroom prune` (wired up in mailroom/cli.py).

PRUNE_VARIABLES = ("MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA", "MAILROOM_PRUNE_AFTER", "MAILROOM_LOG_LEVEL")


def _batch_size(raw: str) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is invalid; expected a positive whole number")
    return value


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"most tokens deleted per transaction [default: {DEFAULT_BATCH_SIZE}]",
    )


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Prune everything due and print how many tokens were deleted."""
    values = settings.read(environ, "MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA", "MAILROOM_PRUNE_AFTER")
    url, retention_s = values["MAILROOM_DATABASE_URL"], values["MAILROOM_PRUNE_AFTER"]
    with connect(url, application_name="mailroom prune", schema=values["MAILROOM_SCHEMA"]) as conn:
        try:
            result = prune(conn, retention_s, args.batch_size)
        except psycopg.errors.UndefinedFunction:
            print("mailroom prune: the database has no mailroom_prune(); run `mailroom migrate` first", file=sys.stderr)
            return 1
    print(
        f"deleted {plural(result.deleted, 'token')} consumed or expired more than {retention_s:g} s ago "
        f"in {plural(result.batches, 'batch')}"
    )
    log.info("pruned %s on %s", plural(result.deleted, "token"), describe(url))
    return 0
