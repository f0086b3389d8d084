"""The local Handlebars-subset renderer and the shipped templates."""

from __future__ import annotations

import json

import pytest

from mailroom.signing import Action
from mailroom.templates_cmd import sample_data
from mailroom.wire import Record
from sender import templates
from sender.provider import default_template_data, template_data

EVIL = '<a href="https://evil.example">verify here</a>'
SECRET = "A" * 43 + "B" * 43


def test_double_braces_escape_html_and_triple_braces_do_not():
    assert templates.render("{{x}}|{{{x}}}", {"x": "<b>&\"'=`"}) == "&lt;b&gt;&amp;&quot;&#x27;&#x3D;&#x60;|<b>&\"'=`"


def test_a_missing_variable_renders_empty_and_other_handlebars_constructs_are_refused():
    assert templates.render("a{{ missing }}b", {}) == "ab"
    with pytest.raises(templates.TemplateError):
        templates.render("{{#if x}}y{{/if}}", {"x": 1})


@pytest.mark.parametrize("action", list(Action))
def test_a_login_that_is_html_never_becomes_markup_in_the_html_body(action):
    record = Record(action, "mallory@example.com", EVIL, SECRET, "12345")
    data = {**json.loads(default_template_data("https://app.example.com")), **json.loads(template_data(record))}
    message = templates.load(action).render(data)
    assert 'evil.example">' not in message["html"] and '<a href="https://evil' not in message["html"]
    assert "&lt;a href=&quot;https://evil.example&quot;&gt;verify here&lt;/a&gt;" in message["html"]
    assert EVIL in message["text"]  # plain text shows the login as typed
    assert "evil" not in message["subject"]


@pytest.mark.parametrize("action,path", [(Action.ACTIVATION, "/activate"), (Action.PASSWORD_RECOVERY, "/recover")])
def test_shipped_templates_link_to_the_app_url_and_say_when_the_link_expires(action, path):
    message = templates.load(action).render(sample_data(action, "ada", "https://app.example.com"))
    link = f"https://app.example.com{path}?token="
    assert link in message["text"] and link in message["html"]
    assert "expire" in message["text"] and "15 minutes" in message["html"]
    assert message["subject"]
    if action is Action.PASSWORD_RECOVERY:
        assert "12345" in message["text"] and "12345" in message["html"]


def test_templates_use_only_variables_the_sender_provides():
    provided = set(json.loads(default_template_data("https://x.example")))
    for action in Action:
        t = templates.load(action)
        for part in (t.subject, t.text, t.html):
            assert templates.variables(part) <= provided
        assert "{{login}}" not in t.html and "{{{login}}}" not in t.html  # HTML uses login_html only


def test_render_command_prints_subject_text_and_html(capsys, monkeypatch):
    from mailroom import cli

    monkeypatch.setenv("MAILROOM_APP_URL", "https://app.example.com")
    assert cli.main(["templates", "render", "recovery", "--login", EVIL]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Subject: Reset your password")
    assert "--- text/html ---" in out and "&lt;a href=" in out and "https://app.example.com/recover?token=" in out
