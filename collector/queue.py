"""Chunks of the queue: claim, sign, write, and only then commit.

A chunk is one statement (`claim_chunk` in sql/collector.sql) and one line: it deletes up
to BATCH_LIMIT entries of this consumer's queue and returns what to emit. A chunk whose
line would pass the wire's MAX_LINE_BYTES is written as several lines instead, so that
the sender accepts every line (mailroom/wire.py `encode_lines`). Up to
CHUNKS_PER_COMMIT chunks share a transaction; their lines are written to stdout, and
COMMIT comes only once the reader has taken them all (collector/output.py): if anything
fails first, the transaction rolls back and every claimed entry is still there for the
next collector (at-least-once). If the process dies after the reader took the lines and
before the commit, the next collector emits those chunks again: the only way a duplicate
is produced, and the sender's journal recognises it.

Why several chunks a transaction: the sender takes a line out of the pipe only after its
journal fsync, so waiting for the reader once per line would cost one fsync per line;
once per transaction, the sender journals the transaction's lines with one fsync.

Actions are data: the registry (the `actions` table) is read at connect; each token is
signed with its action's path (and code, where the action signs it), its record carries the
action's number and name and the recipient's locale. The locale comes from the app's
`recipients` view, which mailroom cannot check: it goes on the wire as a language tag
(`pt_BR` as `pt-BR`, as the templates' fallback reads it), and an empty one or one that is no
language tag (logged once) as the default locale, rather than stopping the collector on a line
it cannot write. A token of an action the registry did
not hold is met after a row was added: the registry is read again, once; a token whose
action is still unknown is not emitted (`unknown_action`: logged, counted, marked suppressed).

The cooldown (the action's `cooldown`, else MAILROOM_RECOVERY_COOLDOWN): at most one email
per account and action per cooldown; a token with no account (an invitation) has none, as
in the chunk query.
The chunk query says which tokens an email already covers from earlier reads; between the
tokens of one chunk, `Chunk` decides in id order. A skipped token is still
valid (its link works if someone has it); it is only not emailed, counted, and marked
`suppressed` in the same transaction, as are tokens that were not sendable: only emailed
tokens start a cooldown window. That UPDATE runs only for chunks that have such tokens.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.numeric import Int8

from collector.output import LineWriter
from collector.signals import StopFlag
from collector.stats import CollectorStats
from mailroom.actions import Action, ActionSpec, load_registry
from mailroom.db import queries
from mailroom.signing import signer
from mailroom.wire import Record, control_char_in, control_char_in_any, encode_lines, valid_locale

CHUNKS_PER_COMMIT = 10

log = logging.getLogger("collector.queue")

_UNKNOWN_ACTION = "unknown_action"  # a token whose action the registry does not hold, even read again
_COOLDOWN = "cooldown"  # claim_chunk's `skip` for a token an email already went out for
_SUPPRESSED = "suppressed"  # claim_chunk's `skip` for a token whose address is on the suppression list
# The chunk query's plan, made once per session rather than once per chunk. PostgreSQL
# would re-plan it on every execution (its generic plan's estimate, with LIMIT and `after`
# unknown, never beats the custom plans'), which cost the backend more than running it;
# its plan does not depend on the values (an index scan in token order, primary-key joins).
_GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"


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
    cooled: int = 0  # sendable, but skipped: within the cooldown of an email already sent


@dataclass
class Chunk:
    """What to do with one chunk's rows: the records to emit, and the tokens to mark
    suppressed (skipped by the cooldown, or not sendable)."""

    records: list[Record] = field(default_factory=list)
    suppressed: list[int] = field(default_factory=list)
    on_the_list: list[int] = field(default_factory=list)  # skipped: the address is suppressed
    cooled: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # read and not emitted, by reason
    to_sign: list[tuple[Any, ...]] = field(default_factory=list)  # decided, not signed yet (see decide)


class Queue:
    """This consumer's queue on one connection."""

    def __init__(
        self,
        conn: psycopg.Connection,
        queue_name: str,
        batch_limit: int,
        key: bytes,
        cooldown_s: float = 0.0,
        stats: CollectorStats | None = None,
        registry: Mapping[str, ActionSpec] | None = None,
    ) -> None:
        self.conn = conn
        self.stats = stats or CollectorStats()
        self.key = key
        self.batch_limit = batch_limit
        self.cooldown = timedelta(seconds=cooldown_s)
        self._queue_name = queue_name
        sql_text = queries("collector.sql")
        self._claim = sql_text["claim_chunk"]
        self._suppress = sql_text["suppress"]
        self._mark_suppressed = sql_text["mark_suppressed"]
        self._cursor = conn.cursor(binary=True)
        # Pipeline mode needs libpq 14 or later (psycopg[binary] ships one; a system libpq may be
        # older): without it the claim ahead runs as the next statement, the same result, later.
        self._pipeline: Callable[[], contextlib.AbstractContextManager[object]] = (
            conn.pipeline if psycopg.Pipeline.is_supported() else contextlib.nullcontext
        )
        # action name -> (Action, its signer); action name -> its cooldown (the setting's when none)
        self._signers: dict[str, tuple[Action, Callable[[bytes, str], str]]] = {}
        self._cooldowns: dict[str, timedelta] = {}
        self._locales: dict[str, str | None] = {}  # a locale as read -> as the wire carries it
        self.use_registry(load_registry(conn) if registry is None else registry)

    def use_registry(self, registry: Mapping[str, ActionSpec]) -> None:
        """Sign and cool down by these actions (the `actions` table's rows, by name)."""
        self._signers = {
            name: (spec.action, signer(self.key, spec.path_bytes, spec.signs_code)) for name, spec in registry.items()
        }
        self._cooldowns = {
            name: self.cooldown if spec.cooldown is None else spec.cooldown for name, spec in registry.items()
        }
        # Whether any cooldown is on: when none is, the chunk's tokens need no decision between them.
        self._any_cooldown = bool(self.cooldown) or any(self._cooldowns.values())

    def chunk(self, rows: list[tuple[Any, ...]]) -> Chunk:
        """Sign what may be emitted (`decide`, then `signed`)."""
        return self.signed(self.decide(rows))

    def decide(self, rows: list[tuple[Any, ...]]) -> Chunk:
        """Which rows to emit and which tokens to mark suppressed, without signing yet.
        Rows come in id order; a token that the query found uncovered is still skipped
        when a token before it in this chunk, of the same account and action, created
        within the cooldown, is emitted."""
        out = Chunk()
        to_sign = out.to_sign
        # The common chunk: every row to emit, each of its own account and action, so
        # that no decision between the chunk's tokens is to be made.
        if all(row[1] is None for row in rows) and (
            not self._any_cooldown or len({(row[7], row[2]) for row in rows}) == len(rows)
        ):
            to_sign.extend(rows)
            return out
        cooldowns, default_cooldown = self._cooldowns, self.cooldown
        # (account, action) -> creation times of this chunk's tokens emitted so far.
        emitted_at: dict[tuple[Any, str], list[datetime]] = {}
        for row in rows:
            token, skip, action_name, _email, _login, _secret, _code, account, created_at, _locale = row
            if skip is not None:
                if skip == _COOLDOWN:  # the query found an email that already went out
                    out.suppressed.append(token)
                    out.cooled += 1
                elif account is not None:  # None: the token row is gone, nothing to mark
                    out.suppressed.append(token)
                    if skip == _SUPPRESSED:  # its delivery status says so too (delivery_status)
                        out.on_the_list.append(token)
                out.skipped[skip] += 1
                continue
            cooldown = cooldowns.get(action_name, default_cooldown) if account is not None else None
            if cooldown:
                group = (account, action_name)
                earlier = emitted_at.get(group)
                if earlier is None:
                    emitted_at[group] = [created_at]
                elif any(abs(created_at - other) < cooldown for other in earlier):
                    out.suppressed.append(token)
                    out.cooled += 1
                    out.skipped[_COOLDOWN] += 1
                    continue
                else:
                    earlier.append(created_at)
            to_sign.append(row)
        return out

    def signed(self, chunk: Chunk) -> Chunk:
        """The records of the rows `decide` kept, signed; a record the wire cannot carry
        (a control character) is left out, logged and counted, and so is a token of an
        action the registry does not hold (read once more first)."""
        kept = chunk.to_sign
        try:
            records = self._records(kept)
        except KeyError:  # an action added since the registry was read: read it again, once
            kept = self._known_actions(kept, chunk)
            records = self._records(kept)
        chunk.records = records
        if records and control_char_in_any(records):
            chunk.records = _without_control_chars(records, [row[0] for row in kept], chunk.skipped)
        chunk.to_sign = []
        return chunk

    def _records(self, rows: list[tuple[Any, ...]]) -> list[Record]:
        """The rows signed as records; KeyError for an action not in the registry."""
        signers, records = self._signers, []
        for _token, _skip, name, email, login, secret, code, _account, _created_at, locale in rows:
            action, sign = signers[name]
            if locale is not None:
                locale = self._locales[locale] if locale in self._locales else self._wire_locale(locale)
            records.append(Record(action, email, login, sign(bytes(secret), code), code, locale))
        return records

    def _wire_locale(self, locale: str) -> str | None:
        """`locale` as the wire carries it (see the module's docstring), remembered."""
        tag: str | None = locale.strip().replace("_", "-")
        if tag and not valid_locale(tag):
            log.warning(
                "recipient locale %r is not a language tag (e.g. pt-BR): its emails use the default locale",
                locale[:40],
            )
            tag = None
        if len(self._locales) < 4096:  # the distinct locales of the recipients: few
            self._locales[locale] = tag or None
        return tag or None

    def _known_actions(self, rows: list[tuple[Any, ...]], chunk: Chunk) -> list[tuple[Any, ...]]:
        """`rows` whose action is in the registry, read again; the others are skipped (unknown_action)."""
        self.use_registry(load_registry(self.conn))
        kept = []
        for row in rows:
            if row[2] in self._signers:
                kept.append(row)
                continue
            log.error(
                "token %d not emitted: its action %r is not in the actions registry (mailroom actions list); "
                "add the action and issue a new token",
                row[0],
                row[2],
            )
            chunk.suppressed.append(row[0])
            chunk.skipped[_UNKNOWN_ACTION] += 1
        return kept

    def drain(self, output: LineWriter, stop: StopFlag) -> DrainResult:
        """Read chunks, with no pause between them, until the queue is empty or a stop
        signal arrives.

        Empty means a chunk read from the start of the queue claimed fewer than
        BATCH_LIMIT entries. Between full chunks the scan starts past the last claimed id
        (a speed hint that skips the entries just deleted); when a hinted chunk comes up
        short, one more chunk from the start picks up any token of a lower id whose
        transaction committed meanwhile. A token committing after that final read sends
        its NOTIFY after it, which wakes the next drain: nothing is skipped.

        Claiming ahead: after a full chunk that needs no statement of its own (nothing to
        mark suppressed, every action known: the common chunk), the next chunk's claim is
        sent before this one is signed (a psycopg pipeline), so that the server runs it
        while the collector signs: the two cores work at once. The claim ahead is the
        statement the collector would have run next in the same transaction: it sees this
        transaction's own work as that statement would (this chunk's entries deleted, no
        mark pending); only its snapshot of other sessions' commits is a little older. Its
        rows are fetched (the pipeline synced) before the chunk is written, so that the
        session is never in the middle of a pipeline while the write waits for the reader.
        A claimed chunk is always emitted before the commit: a stop signal that comes while
        one is claimed ahead ends the drain one chunk later.
        """
        result = DrainResult()
        after = 0
        cur = self._cursor
        while True:
            claimed_here, done = 0, False
            emitted_here = lines_here = bytes_here = 0
            skipped: Counter[str] = Counter()
            try:
                with self.conn.transaction():
                    with self._pipeline():  # one round trip for both, at the pipeline's sync
                        self.conn.execute(_GENERIC_PLANS)
                        cur.execute(self._claim, self._params(after), prepare=True)
                    rows = cur.fetchall()
                    claimed_here += len(rows)
                    for n in range(CHUNKS_PER_COMMIT):
                        full = len(rows) == self.batch_limit
                        chunk = self.decide(rows)
                        ahead: list[tuple[Any, ...]] | None = None
                        if full and n + 1 < CHUNKS_PER_COMMIT and not stop and self._statement_free(chunk):
                            after = rows[-1][0]
                            with self._pipeline():
                                cur.execute(self._claim, self._params(after), prepare=True)
                                self.signed(chunk)
                            ahead = cur.fetchall()
                            claimed_here += len(ahead)
                            if chunk.suppressed or chunk.on_the_list:  # _statement_free said there would be none
                                raise RuntimeError("a chunk signed while the next one was claimed has tokens to mark")
                            written = self._write(chunk, output)
                        else:
                            self.signed(chunk)
                            if chunk.suppressed:
                                cur.execute(self._suppress, {"ids": [Int8(i) for i in chunk.suppressed]})
                            if chunk.on_the_list:
                                cur.execute(self._mark_suppressed, {"ids": [Int8(i) for i in chunk.on_the_list]})
                            written = self._write(chunk, output)
                        result.lines += written[0]
                        lines_here += written[0]
                        bytes_here += written[1]
                        emitted_here += len(chunk.records)
                        skipped.update(chunk.skipped)
                        result.chunks += 1
                        result.claimed += len(rows)
                        result.emitted += len(chunk.records)
                        result.cooled += chunk.cooled
                        if ahead is not None:  # claimed: emitted whatever comes (a stop ends the drain after it)
                            rows = ahead
                            continue
                        if stop:
                            done = True
                            break
                        if full:
                            after = rows[-1][0]
                        elif after == 0:
                            done = True
                            break
                        else:
                            after = 0
                        if n + 1 == CHUNKS_PER_COMMIT:
                            break
                        cur.execute(self._claim, self._params(after), prepare=True)
                        rows = cur.fetchall()
                        claimed_here += len(rows)
                    self.stats.wait_until_read(output)  # output.wait_until_read(), timed
            except OSError as exc:  # EPIPE: the reader is gone. Leaving the block rolled back.
                raise OutputClosed(exc, claimed_here) from exc
            self.stats.committed(emitted_here, lines_here, bytes_here, skipped or None)
            if done:
                return result

    def _params(self, after: int) -> dict[str, Any]:
        return {
            "queue": self._queue_name,
            "after": Int8(after),
            "limit": Int8(self.batch_limit),
            "cooldown": self.cooldown,
        }

    def _statement_free(self, chunk: Chunk) -> bool:
        """Whether signing and writing `chunk` needs no statement: nothing to mark suppressed,
        and no action to look up again (`signed` reads the registry for an unknown one)."""
        if chunk.suppressed or chunk.on_the_list:
            return False
        signers = self._signers
        return all(row[2] in signers for row in chunk.to_sign)

    @staticmethod
    def _write(chunk: Chunk, output: LineWriter) -> tuple[int, int]:
        """Write the chunk's records as lines; (lines, bytes) written."""
        if not chunk.records:
            return 0, 0
        lines = encode_lines(chunk.records)
        for line in lines:
            output.write_line(line)
        return len(lines), sum(map(len, lines))


def _without_control_chars(records: list[Record], tokens: list[int], skipped: Counter[str]) -> list[Record]:
    """The records the wire can carry. Only where migration 0005's constraint was
    bypassed: a line break would cut the line (and its neighbours' records) in two, so a
    record holding a control character is not sent, and is logged and counted."""
    kept = []
    for record, token in zip(records, tokens, strict=True):
        if field := control_char_in(record):
            log.error(
                "token %d not emitted: the account's %s holds a control character (CR, LF, ...), which "
                "the schema refuses (migrations/0005_no_control_chars.sql); fix the account and issue "
                "a new token",
                token,
                field,
            )
            skipped["control_character"] += 1
        else:
            kept.append(record)
    return kept
