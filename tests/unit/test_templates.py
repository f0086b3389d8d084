"""The local Handlebars-subset renderer and the shipped templates."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mailroom import template_checks, templates
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.template_fixtures import Sample
from mailroom.templates import default_template_data, template_data
from mailroom.wire import Record

EVIL = '<a href="https://evil.example">verify here</a>'
SECRET = "A" * 43 + "B" * 43


def test_double_braces_escape_html_and_triple_braces_do_not():
    assert templates.render("{{x}}|{{{x}}}", {"x": "<b>&\"'=`"}) == "&lt;b&gt;&amp;&quot;&#x27;&#x3D;&#x60;|<b>&\"'=`"


def test_a_missing_variable_renders_empty_and_other_handlebars_constructs_are_refused():
    assert templates.render("a{{ missing }}b", {}) == "ab"
    with pytest.raises(templates.TemplateError):
        templates.render("{{#if x}}y{{/if}}", {"x": 1})


@pytest.mark.parametrize("action", [ACTIVATION, PASSWORD_RECOVERY])
def test_a_login_that_is_html_never_becomes_markup_in_the_html_body(action):
    record = Record(action, "mallory@example.com", EVIL, SECRET, "12345")
    data = {**json.loads(default_template_data("https://app.example.com")), **json.loads(template_data(record))}
    message = templates.load(action.name).render(data)
    assert 'evil.example">' not in message["html"] and '<a href="https://evil' not in message["html"]
    assert "&lt;a href=&quot;https://evil.example&quot;&gt;verify here&lt;/a&gt;" in message["html"]
    assert EVIL in message["text"]  # plain text shows the login as typed
    assert "evil" not in message["subject"]


# Each standard action's link path (the registry's `path`, COMMON to the app's routes).
PATHS = {
    "activation": "/activate",
    "password_recovery": "/recover",
    "email_change": "/email-change",
    "magic_link": "/magic-link",
    "invitation": "/invitation",
}
EXPIRES = {"en": "expire", "pt": "expira"}


@pytest.mark.parametrize("locale", ["en", "pt"])
@pytest.mark.parametrize("action", sorted(template_checks.STANDARD))
def test_shipped_templates_link_to_the_app_url_and_say_when_the_link_expires(action, locale):
    spec = template_checks.STANDARD[action]
    message = templates.load(action, None, locale).render(Sample("t", "ada").data("https://app.example.com", spec))
    assert message["subject"]
    if action == "welcome":  # no link, so nothing to expire: the token it carries is never shown
        assert not spec.link
        assert "https://app.example.com" not in message["text"] + message["html"]
        assert Sample("t", "ada").secret not in message["text"] + message["html"] + message["subject"]
        return
    link = f"https://app.example.com{PATHS[action]}?token={Sample('t', 'ada').secret}"
    assert link in message["text"] and link in message["html"]
    assert EXPIRES[locale] in message["text"] and EXPIRES[locale] in message["html"]
    assert ("12345" in message["text"] and "12345" in message["html"]) is (action == "password_recovery")


def test_the_invitation_greets_without_a_login_which_it_may_not_have():
    message = templates.load("invitation").render(Sample("no account yet", "").data("https://app.example.com"))
    assert message["text"].startswith("Hello,\n") and ">Hello,</p>" in message["html"]
    for locale in templates.locales("invitation"):
        for part in ("subject.txt", "body.txt", "body.html"):
            assert "login" not in (templates.locale_dir("invitation", locale) / part).read_text()


def test_the_six_standard_actions_are_shipped_in_english_and_portuguese():
    assert templates.actions() == sorted(template_checks.STANDARD)
    assert {name: templates.locales(name) for name in templates.actions()} == {
        key: ["en", "pt"] for key in template_checks.STANDARD
    }
    assert set(templates.load_every()) == {(name, loc) for name in template_checks.STANDARD for loc in ("en", "pt")}


def test_templates_use_only_variables_the_sender_provides():
    provided = set(json.loads(default_template_data("https://x.example")))
    for (action, locale), t in templates.load_every().items():
        for part in (t.subject, t.text, t.html):
            assert templates.variables(part) <= provided, (action, locale)
        assert "{{login}}" not in t.html and "{{{login}}}" not in t.html  # HTML uses login_html only


def test_render_command_prints_subject_text_and_html(capsys, monkeypatch):
    from mailroom import cli

    monkeypatch.setenv("MAILROOM_APP_URL", "https://app.example.com")
    assert cli.main(["templates", "render", "recovery", "--login", EVIL]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Subject: Reset your password")
    assert "--- text/html ---" in out and "&lt;a href=" in out and "https://app.example.com/recover?token=" in out


# ---------------------------------------------------------------- checking, and templates of your own


def copy_shipped(to: Path) -> Path:
    shutil.copytree(templates.template_dir(), to)
    return to


def test_every_shipped_template_passes_the_check():
    assert set(templates.load_all()) == {"activation", "password_recovery"}
    assert template_checks.run(None, "https://app.example.com") == []


@pytest.mark.parametrize(
    "text,line,what",
    [
        ("Hello {{login}},\n\n{{#if login}}x{{/if}}\n", 3, "unsupported Handlebars expression {{#if login}}"),
        ("a\n{{> partial}}", 2, "unsupported Handlebars expression {{> partial}}"),
        ("{{ a.b }}", 1, "unsupported Handlebars expression {{ a.b }}"),
        ("one\ntwo {{login\n", 2, "a lone '{{'"),
        ("{{{code}}} }}", 1, "a lone '}}'"),
    ],
)
def test_a_template_outside_the_subset_is_named_with_its_file_line_and_what_is_supported(text, line, what):
    with pytest.raises(templates.TemplateError) as caught:
        templates.check(text, "mine/activation/body.txt")
    message = str(caught.value)
    assert message.startswith(f"mine/activation/body.txt, line {line}: {what}")
    assert templates.SUPPORTED in message and "\n" not in message


def test_a_folder_of_your_own_is_used_and_its_bad_template_is_named(tmp_path):
    mine = copy_shipped(tmp_path / "mine")
    (mine / "activation" / "subject.txt").write_text("Welcome aboard, {{login}}\n")
    data = Sample("t", "ada").data("https://app.example.com")
    assert templates.load_all(mine)["activation"].render(data)["subject"] == "Welcome aboard, ada"
    body = mine / "password_recovery" / "body.html"
    body.write_text(body.read_text() + "\n<p>{{#each links}}</p>\n")
    with pytest.raises(templates.TemplateError, match=rf"^{re.escape(str(body))}, line \d+: unsupported"):
        templates.load_all(mine)


def test_a_folder_of_your_own_that_lacks_a_part_names_the_missing_file(tmp_path):
    mine = copy_shipped(tmp_path / "mine")
    (mine / "password_recovery" / "body.txt").unlink()
    with pytest.raises(templates.TemplateError) as caught:
        templates.load_all(mine)
    assert str(caught.value) == (
        f"{mine / 'password_recovery' / 'body.txt'} is missing (a templates folder holds a folder per action "
        "(activation/, password_recovery/, ...), each with subject.txt, body.txt and body.html, and a folder "
        "per other locale (pt/, ...) with the same three)"
    )


def test_the_templates_folder_setting_must_be_an_existing_directory_or_empty(tmp_path):
    from mailroom.settings import ConfigError, read

    assert read({"MAILROOM_TEMPLATES_DIR": ""}, "MAILROOM_TEMPLATES_DIR") == {"MAILROOM_TEMPLATES_DIR": None}
    assert read({"MAILROOM_TEMPLATES_DIR": str(tmp_path)}, "MAILROOM_TEMPLATES_DIR") == {
        "MAILROOM_TEMPLATES_DIR": tmp_path
    }
    with pytest.raises(ConfigError, match=r"^MAILROOM_TEMPLATES_DIR: '.*nowhere' is invalid; expected an existing"):
        read({"MAILROOM_TEMPLATES_DIR": str(tmp_path / "nowhere")}, "MAILROOM_TEMPLATES_DIR")


def test_render_command_uses_the_templates_folder_and_exits_2_on_a_bad_template(capsys, monkeypatch, tmp_path):
    from mailroom import cli

    mine = copy_shipped(tmp_path / "mine")
    (mine / "password_recovery" / "subject.txt").write_text("Your code, {{login}}")
    monkeypatch.setenv("MAILROOM_TEMPLATES_DIR", str(mine))
    assert cli.main(["templates", "render", "recovery", "--login", "ada"]) == 0
    assert capsys.readouterr().out.startswith("Subject: Your code, ada")

    (mine / "activation" / "body.txt").write_text("Hi\n{{#if login}}\n")  # the other action: checked too
    with pytest.raises(SystemExit) as exited:
        cli.main(["templates", "render", "recovery"])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"mailroom templates render: invalid template: {mine / 'activation' / 'body.txt'}, line 2: "
        f"unsupported Handlebars expression {{{{#if login}}}}; {templates.SUPPORTED}\n"
    )


def test_push_checks_every_template_before_it_calls_aws(capsys, monkeypatch, tmp_path):
    from mailroom import cli

    mine = copy_shipped(tmp_path / "mine")
    (mine / "password_recovery" / "body.html").unlink()
    monkeypatch.setenv("MAILROOM_TEMPLATES_DIR", str(mine))
    monkeypatch.setattr("mailroom.aws.make_client", lambda *a, **k: pytest.fail("AWS called with a bad template"))
    assert cli.main(["templates", "push"]) == 2
    assert capsys.readouterr().err == (
        f"mailroom templates push: {mine / 'password_recovery' / 'body.html'}: missing: every action needs "
        "subject.txt, body.txt and body.html in the default locale and in each locale folder it has (locale en)\n"
    )
