"""The real `sender` runs `mailroom templates check`'s checks in its preflight: a template that fails
one sends nothing and reads nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import script

from mailroom import templates
from mailroom.actions import ACTIVATION
from mailroom.wire import Record, encode_line

SECRET = "A" * 86


def env_for(base_env: dict[str, str], tmp_path: Path, folder: Path) -> dict[str, str]:
    return {
        **base_env,
        "MAILROOM_DEBUG": "true",
        "MAILROOM_SES_OUTPUT_PATH": str(tmp_path / "out"),
        "MAILROOM_SES_SOURCE": "noreply@example.com",
        "MAILROOM_TEMPLATES_DIR": str(folder),
        "MAILROOM_APP_URL": "https://app.example.com",
    }


def test_sender_check_shows_the_templates_check_passing_on_the_shipped_templates(base_env, tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), folder)
    done = subprocess.run(
        [script("sender"), "--check"], env=env_for(base_env, tmp_path, folder), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "✓ templates: every action and locale passes `mailroom templates check`" in done.stdout.splitlines()


def test_a_template_that_fails_a_check_stops_the_sender_before_it_reads_stdin(base_env, tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), folder)
    body = folder / "activation" / "body.html"
    body.write_text(body.read_text().replace('href="{{app_url}}/activate', 'href="http://example.com/activate'))
    env = env_for(base_env, tmp_path, folder)
    problem = (
        f"✗ templates: {body}: link 'http://example.com/activate?token={{{{secret}}}}' is not https: use https://, "
        "or start it with {{app_url}} — fix: correct the template (`mailroom templates check` lists every problem)"
    )

    checked = subprocess.run([script("sender"), "--check"], env=env, capture_output=True, text=True)
    assert checked.returncode == 1
    assert problem in checked.stdout.splitlines()

    line = encode_line([Record(ACTIVATION, "ada@example.com", "ada", SECRET, "")])
    r, w = os.pipe()
    try:
        os.write(w, line)  # waiting in stdin: a sender that read anything would take it out
        done = subprocess.run([script("sender")], stdin=r, env=env, capture_output=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stdout == b""
        assert f"sender: preflight failed: {problem}" in done.stderr.decode().splitlines()
        os.set_blocking(r, False)
        assert os.read(r, len(line) + 1) == line  # stdin untouched
    finally:
        os.close(r)
        os.close(w)
