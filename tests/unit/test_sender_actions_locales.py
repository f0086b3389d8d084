"""The sender keyed by action and locale: which template each record goes with, grouped calls,
SES template names, local rendering with the locale fallback, and an action with no templates."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import pytest
from conftest import FakeProvider
from test_sender import jsonl, record, run_sender, unfinished

from mailroom import templates
from mailroom.actions import ACTIVATION, MAGIC_LINK, PASSWORD_RECOVERY, WELCOME, Action
from mailroom.templates import resolve_locale
from mailroom.wire import Record, encode_line
from sender.catalog import Catalog, MissingTemplates
from sender.debug import DebugProvider
from sender.provider import BulkSend, DestinationResult
from sender.retry import EXIT_OPERATOR_FAULT

SES_NAMES = {"activation": "activationv1", "password_recovery": "passwordrecoveryv1"}


class Recording(FakeProvider):
    """Delivers everything and keeps each call's action, template, locale and recipients."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, list[str]]] = []

    def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
        self.calls.append((send.action.name, send.template, send.locale, [d.email for d in send.destinations]))
        return [DestinationResult("Success", "m")] * len(send.destinations)


def _action_folder(base: Path, name: str, subject: str) -> Path:
    """A templates folder for `name`: the shipped activation files with this subject."""
    folder = base / name
    shutil.copytree(templates.template_dir() / "activation", folder, ignore=shutil.ignore_patterns("*/"))
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
    (folder / "subject.txt").write_text(subject + "\n", encoding="utf-8")
    return folder


def _locale_folder(base: Path, name: str, locale: str, subject: str) -> None:
    target = base / name / locale
    target.mkdir(parents=True)
    for part in ("body.txt", "body.html"):
        shutil.copy(base / name / part, target / part)
    (target / "subject.txt").write_text(subject + "\n", encoding="utf-8")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return locale_folder(tmp_path)


def locale_folder(tmp_path: Path) -> Path:
    """activation and password_recovery (en), activation in pt, magic_link (en, pt); no welcome."""
    base = tmp_path / "templates"
    base.mkdir()
    for name in ("activation", "password_recovery"):
        shutil.copytree(templates.template_dir() / name, base / name)
        shutil.rmtree(base / name / "pt", ignore_errors=True)
    _locale_folder(base, "activation", "pt", "Ative sua conta, {{login}}")
    _action_folder(base, "magic_link", "Sign in, {{login}}")
    _locale_folder(base, "magic_link", "pt", "Entre, {{login}}")
    return base


@pytest.mark.parametrize(
    ("available", "wanted", "chosen"),
    [
        (["en", "pt"], "pt-BR", "pt"),
        (["en", "pt", "pt-BR"], "pt-BR", "pt-BR"),
        (["en", "pt-BR"], "pt", "en"),  # a more specific folder does not serve the general tag
        (["en", "pt"], "PT-br", "pt"),  # language tags are case-insensitive
        (["en", "pt"], "fr", "en"),
        (["en", "pt"], None, "en"),
        (["en", "zh-Hant"], "zh-Hant-TW", "zh-Hant"),
    ],
)
def test_a_locale_falls_back_to_its_shorter_tags_then_to_the_default(
    available: list[str], wanted: str | None, chosen: str
) -> None:
    assert resolve_locale(available, wanted, "en") == chosen


def test_each_action_and_locale_gets_its_ses_template_name(folder: Path) -> None:
    catalog = Catalog(SES_NAMES, folder)
    assert catalog.choose(ACTIVATION, None).ses_name == "activationv1"
    assert catalog.choose(ACTIVATION, "pt-BR").ses_name == "activationv1-pt"
    assert catalog.choose(PASSWORD_RECOVERY, "pt-BR").ses_name == "passwordrecoveryv1"  # no pt folder: default
    assert catalog.choose(MAGIC_LINK, "pt").ses_name == "magic_linkv1-pt"
    assert catalog.choose(MAGIC_LINK, "fr").ses_name == "magic_linkv1"
    # The same template, whatever locale asked for it: one choice, so one queue of calls.
    assert catalog.choose(ACTIVATION, "pt-BR") is catalog.choose(ACTIVATION, "pt")


def test_with_ses_an_action_without_a_local_folder_goes_with_its_default_template(folder: Path) -> None:
    choice = Catalog(SES_NAMES, folder).choose(WELCOME, "pt")
    assert (choice.ses_name, choice.locale, choice.template) == ("welcomev1", "en", None)


def test_where_the_provider_renders_an_action_without_a_folder_is_missing_templates(folder: Path) -> None:
    with pytest.raises(
        MissingTemplates, match=f"no templates for action welcome: {folder / 'welcome'}/ does not exist"
    ):
        Catalog(SES_NAMES, folder, local=True).choose(WELCOME, None)


def test_the_ses_preflight_checks_every_template_that_can_be_sent(folder: Path) -> None:
    assert Catalog(SES_NAMES, folder).ses_templates() == {
        "activation": "activationv1",
        "activation (pt)": "activationv1-pt",
        "magic_link": "magic_linkv1",
        "magic_link (pt)": "magic_linkv1-pt",
        "password_recovery": "passwordrecoveryv1",
    }


def of_action(i: int, action: Action, locale: str | None) -> Record:
    return dataclasses.replace(record(i, PASSWORD_RECOVERY), action=action, locale=locale)


def test_calls_group_records_by_action_and_template_locale(tmp_path: Path, folder: Path) -> None:
    records = [
        of_action(1, ACTIVATION, None),
        of_action(2, ACTIVATION, "pt-BR"),
        of_action(3, MAGIC_LINK, "pt"),
        of_action(4, ACTIVATION, "pt"),
        of_action(5, MAGIC_LINK, None),
        of_action(6, MAGIC_LINK, "de"),
        of_action(7, Action(9, "team_invite"), "pt"),
    ]
    provider = Recording()
    run_sender(tmp_path, provider, encode_line(records), templates_dir=folder)
    calls = sorted((action, template, locale, sorted(emails)) for action, template, locale, emails in provider.calls)
    assert calls == [
        ("activation", "activationv1", "en", ["user1@example.com"]),
        ("activation", "activationv1-pt", "pt", ["user2@example.com", "user4@example.com"]),
        ("magic_link", "magic_linkv1", "en", ["user5@example.com", "user6@example.com"]),
        ("magic_link", "magic_linkv1-pt", "pt", ["user3@example.com"]),
        ("team_invite", "team_invitev1", "en", ["user7@example.com"]),
    ]
    delivered = jsonl(tmp_path / "deliveries.jsonl")
    assert sorted(row["action"] for row in delivered) == ["activation"] * 3 + ["magic_link"] * 3 + ["team_invite"]


def test_debug_mode_renders_each_record_with_its_locales_template(tmp_path: Path, folder: Path) -> None:
    out = io.StringIO()
    records = [of_action(1, MAGIC_LINK, "pt-BR"), of_action(2, MAGIC_LINK, None), of_action(3, ACTIVATION, "pt")]
    run_sender(
        tmp_path, DebugProvider(out), encode_line(records), templates_dir=folder, local_templates=True, debug=True
    )
    printed = out.getvalue()
    assert "subject: Entre, user1" in printed
    assert "subject: Sign in, user2" in printed
    assert "subject: Ative sua conta, user3" in printed
    assert "bulk send: 1 magic_link email (pt) (debug: nothing is sent)" in printed


def test_a_record_of_an_action_with_no_templates_stops_the_sender_and_is_sent_once_the_folder_exists(
    tmp_path: Path, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    records = [of_action(1, ACTIVATION, None), of_action(2, WELCOME, None)]
    sender = run_sender(
        tmp_path,
        DebugProvider(out),
        encode_line(records),
        templates_dir=folder,
        local_templates=True,
        debug=True,
        expect=EXIT_OPERATOR_FAULT,
    )
    assert sender.fault is not None and sender.fault.code == "MissingTemplates"
    assert str(folder / "welcome") in sender.fault.message
    (line,) = [r.getMessage() for r in caplog.records if "operator fault" in r.getMessage()]
    assert "the sender found MissingTemplates: no templates for action welcome" in line
    assert jsonl(tmp_path / "rejects.jsonl") == []  # nothing written off
    assert unfinished(tmp_path) >= 1
    _action_folder(folder, "welcome", "Welcome, {{login}}")
    run_sender(tmp_path, DebugProvider(out), None, templates_dir=folder, local_templates=True, debug=True)
    assert unfinished(tmp_path) == 0
    assert out.getvalue().count("subject: Welcome, user2") == 1
