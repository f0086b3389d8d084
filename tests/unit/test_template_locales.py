"""Templates per action and locale: a recipient's locale resolves to the nearest folder (`pt-BR`, then
`pt`, then the default), every action folder is loaded, and each action and locale has its SES name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailroom import templates
from mailroom.template_fixtures import Sample

APP_URL = "https://app.example.com"


@pytest.mark.parametrize(
    "wanted,expected",
    [
        ("pt-BR", "pt"),  # no pt-BR folder: its language
        ("pt", "pt"),
        ("PT-br", "pt"),  # tags compare case-insensitively
        ("pt_BR", "pt"),  # a POSIX locale's spelling
        ("zh-Hant-TW", "zh-Hant"),  # one subtag cut at a time
        ("zh-hant", "zh-Hant"),  # the folder is returned as it is spelled
        ("zh", "en"),  # a language is not found through a longer folder
        ("de-CH-x-phonebk", "de-CH"),  # a private-use singleton goes with what follows it
        ("fr", "en"),  # unknown: the default
        ("en-GB", "en"),
        (" pt ", "pt"),
        ("", "en"),
        (None, "en"),
        ("-", "en"),
    ],
)
def test_a_locale_resolves_to_the_nearest_folder_then_to_the_default(wanted, expected):
    assert templates.resolve_locale(["en", "pt", "zh-Hant", "de-CH"], wanted, "en") == expected


def test_the_default_is_found_even_when_it_is_not_listed_and_another_default_can_be_chosen():
    assert templates.resolve_locale([], "en-US", "en") == "en"
    assert templates.resolve_locale(["pt", "en"], "fr", "pt") == "pt"
    assert templates.resolve_locale(("pt-BR",), "pt-br", "en") == "pt-BR"
    assert templates.resolve_locale(("pt-BR",), "pt", "en") == "en"  # pt-BR is not for every pt reader


def rendered(action: str, wanted: str | None) -> dict[str, str]:
    template = templates.pick(templates.load_every(), action, wanted)
    assert template is not None
    return template.render(Sample("ada", "Ana").data(APP_URL))


def test_a_pt_br_recipient_gets_the_portuguese_template():
    message = rendered("magic_link", "pt-BR")
    assert message["subject"] == "Seu link de acesso"
    assert message["text"].startswith("Olá, Ana,\n")
    assert '<html lang="pt">' in message["html"]
    assert templates.pick(templates.load_every(), "password_recovery", "pt-BR").locale == "pt"  # type: ignore[union-attr]


@pytest.mark.parametrize("wanted", ["fr", "fr-CA", "xx", None, ""])
def test_an_unknown_or_missing_locale_gets_the_default_template(wanted):
    message = rendered("activation", wanted)
    assert message["subject"] == "Activate your account"
    assert message["text"].startswith("Hello Ana,\n")


def test_an_action_without_a_locale_falls_back_while_another_has_it(tmp_path: Path):
    mine = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), mine)
    shutil.rmtree(mine / "welcome" / "pt")
    brazil = mine / "activation" / "pt-BR"
    shutil.copytree(mine / "activation" / "pt", brazil)
    (brazil / "subject.txt").write_text("Ative a sua conta, no Brasil\n")
    loaded = templates.load_every(mine)
    assert templates.pick(loaded, "welcome", "pt-BR").locale == "en"  # type: ignore[union-attr]
    assert templates.pick(loaded, "activation", "pt-br").subject == "Ative a sua conta, no Brasil"  # type: ignore[union-attr]
    assert templates.pick(loaded, "activation", "pt-PT").locale == "pt"  # type: ignore[union-attr]
    assert templates.pick(loaded, "no_such_action", "pt") is None


def test_every_action_folder_is_loaded_and_other_folders_are_not_actions(tmp_path: Path):
    mine = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), mine)
    shutil.copytree(mine / "welcome", mine / "order_shipped")
    (mine / ".git").mkdir()
    (mine / "README.md").write_text("ours\n")
    assert templates.actions(mine) == sorted(
        ["activation", "password_recovery", "email_change", "magic_link", "invitation", "welcome", "order_shipped"]
    )
    assert ("order_shipped", "pt") in templates.load_every(mine)
    assert templates.load("order_shipped", mine, "pt").locale == "pt"


@pytest.mark.parametrize(
    "action,locale,expected",
    [
        ("activation", "en", "mine-activation"),
        ("activation", "pt", "mine-activation-pt"),
        ("password_recovery", "en", "passwordrecoveryv1"),
        ("password_recovery", "pt-BR", "passwordrecoveryv1-pt-BR"),
        ("magic_link", "en", "magic_linkv1"),
        ("magic_link", "pt-BR", "magic_linkv1-pt-BR"),
        ("welcome", "pt", "welcomev1-pt"),
    ],
)
def test_each_action_and_locale_has_its_ses_template_name(action, locale, expected):
    configured = {"activation": "mine-activation", "password_recovery": "passwordrecoveryv1"}
    assert templates.ses_template_name(action, locale, configured) == expected


def test_without_settings_the_original_two_are_named_like_the_others():
    assert templates.ses_template_name("activation", "pt") == "activationv1-pt"


def test_render_takes_any_action_folder_and_a_locale_and_says_when_it_falls_back(capsys, monkeypatch):
    from mailroom import cli

    monkeypatch.setenv("MAILROOM_APP_URL", APP_URL)
    assert cli.main(["templates", "render", "email_change", "--locale", "pt-BR", "--login", "Ana"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Subject: Confirme seu novo endereço de e-mail\n\n--- text/plain ---\nOlá, Ana,\n")
    assert f"{APP_URL}/email-change?token=" in out
    assert err == "mailroom templates render: email_change has no pt-BR templates; rendering pt\n"
    assert cli.main(["templates", "render", "welcome", "--locale", "pt"]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main(["templates", "render", "2", "--locale", "de"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Subject: Reset your password") and "12345" in out
    assert err == "mailroom templates render: password_recovery has no de templates; rendering en\n"


def test_render_of_an_action_without_a_folder_exits_2_naming_the_ones_there_are(capsys):
    from mailroom import cli

    assert cli.main(["templates", "render", "order_shipped"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "mailroom templates render: no action 'order_shipped' in the templates folder (it has activation, "
        "email_change, invitation, magic_link, password_recovery, welcome)\n"
    )
