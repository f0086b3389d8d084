"""`mailroom actions list|add`, the real console script against a migrated database."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
from conftest import ROOT, script


def run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("mailroom"), "actions", *args], env=env, capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_list_prints_the_registry_and_add_inserts_a_row_with_its_defaults(
    database_url: str, db: psycopg.Connection, base_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**base_env, "MAILROOM_DATABASE_URL": database_url}
    listed = run(env, "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["name", "number", "path", "code", "link", "lifetime", "cooldown", "statuses"]
    assert lines[2].split() == ["password_recovery", "2", "/recover", "yes", "yes", "00:15:00", "(default)", "active"]
    assert lines[5].split()[:3] == ["invitation", "5", "/invitation"] and lines[5].endswith("(no account)")
    added = run(env, "add", "account_locked", "--lifetime", "1 day", "--no-link", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "added action account_locked (number 7, path /account-locked)" in added.stdout
    assert "templates/account_locked/" in added.stdout
    row = db.execute(
        "SELECT number, path, signs_code, link, lifetime::text, cooldown, statuses FROM actions WHERE name = 'account_locked'"
    ).fetchone()
    assert row == (7, "/account-locked", False, False, "1 day", None, ["active"])
    again = run(env, "add", "account_locked", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = run(env, "add", "Bad-Name", cwd=tmp_path)
    assert bad.returncode == 2 and "is not an action name" in bad.stderr
    guest = run(
        env, "add", "guest_pass", "--no-account", "--code", "--number", "40", "--cooldown", "5 minutes", cwd=tmp_path
    )
    assert guest.returncode == 0, guest.stderr
    assert db.execute(
        "SELECT number, signs_code, statuses, cooldown::text FROM actions WHERE name = 'guest_pass'"
    ).fetchone() == (
        40,
        True,
        None,
        "00:05:00",
    )
    (token,) = db.execute("SELECT request('guest_pass', email => 'guest@example.com')").fetchone() or ()
    assert token is not None


def test_add_like_copies_an_action_templates_folder(
    database_url: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates" / "activation", templates / "activation")
    env = {**base_env, "MAILROOM_DATABASE_URL": database_url, "MAILROOM_TEMPLATES_DIR": str(templates)}
    added = run(env, "add", "reactivation", "--statuses", "suspended", "--like", "activation", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert sorted(p.name for p in (templates / "reactivation").iterdir()) == sorted(
        p.name for p in (templates / "activation").iterdir()
    )
    missing = run(env, "add", "other", "--like", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "there is no folder" in missing.stderr
