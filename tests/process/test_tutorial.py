"""The tutorial's shell commands work as a reader types them.

Which test exercises which shell block of docs/tutorial/:

- demo.md, `make demo`: tests/process/test_demo.py runs `mailroom demo`, which is all the
  target does once the venv exists;
- first-token.md, "1. Set up" (activate the venv, createdb, export the URL and a fresh key):
  replaced here by its equivalent, an empty database of the test's own, a key, and the
  venv's bin directory first on PATH;
- first-token.md, every block marked `<!-- snippet: tutorial -->` ("2. Build the schema and
  start the pipeline", "3. Sign a user up", "4. Verify the link and consume the token",
  "5. Recover a password", "6. Stop the pipeline"): run verbatim, in order, as one bash
  script (`set -euo pipefail`), by
  test_the_first_token_tutorial_runs_as_written_from_an_empty_database_to_consumed_tokens.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, TEST_KEY_HEX, pg_connect, script
from doc_snippets import blocks

TUTORIAL = ROOT / "docs" / "tutorial"


def test_every_shell_block_of_the_tutorial_is_run_or_names_the_test_that_covers_it() -> None:
    for page in sorted(TUTORIAL.glob("*.md")):
        for block in blocks(page):
            if block.lang in ("sh", "bash", "console"):
                assert block.marker == "tutorial" or (block.marker == "skip" and block.reason), block.where


def test_the_first_token_tutorial_runs_as_written_from_an_empty_database_to_consumed_tokens(
    base_env: dict[str, str], empty_database_url: str, tmp_path: Path
) -> None:
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is not installed: the tutorial uses it (install the PostgreSQL client)", pytrace=False)
    steps = [b for b in blocks(TUTORIAL / "first-token.md") if b.marker == "tutorial"]
    assert len(steps) == 5
    bin_dir = Path(script("mailroom")).parent
    env = {
        **base_env,
        "PATH": f"{bin_dir}{os.pathsep}{base_env.get('PATH', '')}",
        "MAILROOM_DATABASE_URL": empty_database_url,
        "MAILROOM_SECRET_KEY": TEST_KEY_HEX,
    }
    (tmp_path / "tutorial.sh").write_text("set -euo pipefail\n" + "".join(b.code for b in steps), encoding="utf-8")
    proc = subprocess.Popen(
        ["bash", str(tmp_path / "tutorial.sh")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=180)  # a safety net: each step waits on the emails file
    finally:
        if proc.poll() is None or _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = (tmp_path / "pipeline.log").read_text() if (tmp_path / "pipeline.log").exists() else ""
    assert proc.returncode == 0, f"{out}\n{err}\npipeline.log:\n{log}"
    lines = out.splitlines()
    assert lines[0].startswith("applied: 0001_schema"), out
    assert lines[-1] == "0", out  # `wait %1; echo $?`: mailroom run exited 0 on SIGTERM
    with pg_connect(empty_database_url, autocommit=True) as conn:
        (account, status) = conn.execute("SELECT id, status::text FROM accounts WHERE login = 'ada'").fetchone()
        consumed = conn.execute(
            "SELECT action::text FROM tokens WHERE account = %s AND consumed_at IS NOT NULL ORDER BY id", (account,)
        ).fetchall()
    assert status == "active"
    assert consumed == [("activation",), ("password_recovery",)]
    # The consume commands print the account id, then nothing (no row) for the second try, then the id again.
    consume_outputs = [line for line in lines if line in (str(account), "")]
    assert consume_outputs == [str(account), str(account)], out


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
