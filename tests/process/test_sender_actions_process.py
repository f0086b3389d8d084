"""The installed `sender` with actions beyond the first two and recipients' locales: debug output
from each locale's templates, an action with no templates folder stopping it (exit 75,
nothing written off), and SES (moto_server) with one template per action and locale."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import boto3
from conftest import script
from test_sender_process import SOURCE, jsonl, record, sender_env

from mailroom import templates
from mailroom.actions import ACTIVATION, MAGIC_LINK, WELCOME, Action
from mailroom.wire import Record, encode_line
from sender.retry import EXIT_OPERATOR_FAULT

# Subjects are plain text: {{{login}}} (not HTML-escaped), which keeps the checks' longest sample
# login within the 78-character subject.


def _templates(tmp_path: Path) -> Path:
    """The shipped activation and password_recovery, activation in pt, and magic_link in en and pt."""
    base = tmp_path / "templates"
    base.mkdir()
    for name in ("activation", "password_recovery"):
        shutil.copytree(templates.template_dir() / name, base / name)
        shutil.rmtree(base / name / "pt", ignore_errors=True)
    for name, locale, subject in [
        ("activation", "pt", "Ative sua conta"),
        ("magic_link", None, "Sign in to your account"),
        ("magic_link", "pt", "Entre na sua conta"),
    ]:
        folder = base / name if locale is None else base / name / locale
        folder.mkdir(parents=True, exist_ok=True)
        for part in ("body.txt", "body.html"):
            shutil.copy(base / "activation" / part, folder / part)
        (folder / "subject.txt").write_text(subject + "\n", encoding="utf-8")
    return base


def _of(i: int, action: Action, locale: str | None) -> Record:
    return dataclasses.replace(record(i, action), locale=locale)


def _sender(env: dict[str, str], data: bytes, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("sender")], input=data.decode(), env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_debug_mode_prints_each_email_from_its_actions_templates_in_the_recipients_locale(base_env, tmp_path):
    env = sender_env(
        base_env, tmp_path / "out", None, MAILROOM_DEBUG="true", MAILROOM_TEMPLATES_DIR=str(_templates(tmp_path))
    )
    records = [
        _of(1, MAGIC_LINK, "pt-BR"),
        _of(2, MAGIC_LINK, None),
        _of(3, ACTIVATION, "pt"),
        _of(4, ACTIVATION, "fr"),
    ]
    done = _sender(env, encode_line(records), tmp_path)
    assert done.returncode == 0, done.stderr
    # the pt-BR recipient (user1) gets pt, the one with no locale (user2) the default
    assert done.stdout.count("subject: Entre na sua conta") == 1
    assert done.stdout.count("subject: Sign in to your account") == 1
    assert "subject: Ative sua conta" in done.stdout
    assert "subject: Activate your account" in done.stdout  # fr: no folder, the default
    rows = jsonl(tmp_path / "out" / "deliveries.jsonl")
    assert sorted(r["action"] for r in rows) == ["activation", "activation", "magic_link", "magic_link"]


def test_an_action_with_no_templates_folder_stops_the_sender_and_is_sent_after_the_folder_is_added(base_env, tmp_path):
    folder = _templates(tmp_path)
    env = sender_env(base_env, tmp_path / "out", None, MAILROOM_DEBUG="true", MAILROOM_TEMPLATES_DIR=str(folder))
    done = _sender(env, encode_line([_of(1, WELCOME, None)]), tmp_path)
    assert done.returncode == EXIT_OPERATOR_FAULT, done.stderr
    named = [line for line in done.stderr.splitlines() if str(folder / "welcome") in line]
    assert len(named) == 1 and "operator fault" in named[0] and "MissingTemplates" in named[0]
    assert jsonl(tmp_path / "out" / "rejects.jsonl") == []
    assert "Welcome" not in done.stdout

    shutil.copytree(templates.template_dir() / "welcome", folder / "welcome", ignore=shutil.ignore_patterns("pt"))
    (folder / "welcome" / "subject.txt").write_text("Welcome aboard\n", encoding="utf-8")
    again = _sender(env, b"", tmp_path)  # the journal still holds the record
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("subject: Welcome aboard") == 1
    assert [r["action"] for r in jsonl(tmp_path / "out" / "deliveries.jsonl")] == ["welcome"]


def test_ses_sends_each_action_and_locale_with_its_own_template_and_preflight_checks_them_all(
    moto_server, base_env, tmp_path
):
    env = sender_env(base_env, tmp_path / "out", moto_server, MAILROOM_TEMPLATES_DIR=str(_templates(tmp_path)))
    client = boto3.client(
        "ses",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.verify_email_identity(EmailAddress=SOURCE)
    for name in ("activationv1", "passwordrecoveryv1", "activationv1-pt", "magic_linkv1"):
        client.create_template(
            Template={"TemplateName": name, "SubjectPart": "s {{login}}", "TextPart": "t", "HtmlPart": "h"}
        )
    check = subprocess.run(
        [script("sender"), "--check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 1
    failed = [line for line in check.stdout.splitlines() if line.startswith("✗")]
    assert (
        len(failed) == 1 and "template magic_link (pt)" in failed[0] and "'magic_linkv1-pt' does not exist" in failed[0]
    )

    client.create_template(
        Template={"TemplateName": "magic_linkv1-pt", "SubjectPart": "s", "TextPart": "t", "HtmlPart": "h"}
    )
    records = [_of(1, MAGIC_LINK, "pt-BR"), _of(2, MAGIC_LINK, None), _of(3, ACTIVATION, "pt"), _of(4, WELCOME, None)]
    client.create_template(Template={"TemplateName": "welcomev1", "SubjectPart": "s", "TextPart": "t", "HtmlPart": "h"})
    done = _sender(env, encode_line(records), tmp_path)
    assert done.returncode == 0, done.stderr
    rows = jsonl(tmp_path / "out" / "deliveries.jsonl")
    assert sorted((r["action"], r["status"]) for r in rows) == [
        ("activation", "Success"),
        ("magic_link", "Success"),
        ("magic_link", "Success"),
        ("welcome", "Success"),  # no local folder: its default-locale SES template
    ]
