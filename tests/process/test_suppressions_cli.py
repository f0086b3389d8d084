"""`mailroom suppressions list|add|remove`, run as the installed command against PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
from conftest import script


def _mailroom(
    base_env: dict[str, str], database_url: str, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**base_env, "MAILROOM_DATABASE_URL": database_url}
    return subprocess.run(
        [script("mailroom"), "suppressions", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_add_list_and_remove_an_address_in_any_spelling(
    base_env: dict[str, str], database_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    run = lambda *args: _mailroom(base_env, database_url, tmp_path, *args)
    added = run("add", "Zoë@Bücher.DE", "--note", "user says it is not theirs")
    assert (added.returncode, added.stdout) == (0, "suppressed Zoë@Bücher.DE\n"), added.stderr
    assert db.execute("SELECT mailroom_is_suppressed('Zoë@xn--bcher-kva.de')").fetchone() == (True,)
    listed = run("list", "--json", "Zoë@xn--BCHER-kva.de")
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["address"], row["reason"], row["diagnostic"]) == (
        "Zoë@Bücher.DE",
        "manual",
        "user says it is not theirs",
    )
    assert run("list").stdout.startswith("Zoë@Bücher.DE\tmanual\tlast ")
    removed = run("remove", "Zoë@bücher.de")
    assert (removed.returncode, removed.stdout) == (0, "removed Zoë@bücher.de from the suppression list\n")
    again = run("remove", "Zoë@bücher.de")
    assert (again.returncode, again.stderr) == (1, "Zoë@bücher.de is not on the suppression list\n")
    assert run("list").stdout == ""


def test_what_is_not_an_address_is_refused_with_exit_2(
    base_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    done = _mailroom(base_env, database_url, tmp_path, "add", "no-at-sign")
    assert done.returncode == 2
    assert (
        done.stderr == "mailroom suppressions add: 'no-at-sign' is not an email address (a local part, @, a domain)\n"
    )
