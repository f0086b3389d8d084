"""The named queries of sql/ as the programs run them: without their comment lines, so that
psycopg caches the parsed form of each (it parses again, on every execution, a query longer
than its MAX_CACHED_STATEMENT_LENGTH: the chunk query, run once per chunk, was)."""

from __future__ import annotations

import psycopg._queries
import pytest

from mailroom.db import queries

FILES = ("collector.sql", "admin.sql", "events.sql", "monitoring.sql")
# psycopg 3.1 to 3.3: 4096 bytes (a private name of psycopg's, hence the fallback)
MAX_CACHED_STATEMENT_LENGTH = getattr(psycopg._queries, "MAX_CACHED_STATEMENT_LENGTH", 4096)


@pytest.mark.parametrize("filename", FILES)
def test_a_named_query_keeps_its_sql_and_loses_its_comment_lines(filename: str) -> None:
    for name, text in queries(filename).items():
        assert text, name
        assert not any(line.lstrip().startswith("--") for line in text.splitlines()), name


def test_the_chunk_query_is_short_enough_for_psycopg_to_cache_its_parsed_form() -> None:
    claim = queries("collector.sql")["claim_chunk"]
    assert len(claim.encode()) <= MAX_CACHED_STATEMENT_LENGTH
    assert claim.startswith("WITH claimed AS (") and claim.endswith("ORDER BY k.token")
