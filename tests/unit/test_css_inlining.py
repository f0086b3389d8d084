"""A rule of a template's <style> block ends up on the element's style= attribute wherever the HTML
part leaves mailroom: the SES template `push` creates, the SMTP message, the debug output; the
placeholders SES fills in later come through unchanged, and media queries stay in the head."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest

from mailroom import cli, templates
from mailroom.actions import PASSWORD_RECOVERY
from mailroom.settings import SmtpSettings
from mailroom.templates import default_template_data, template_data
from mailroom.wire import Record
from sender.debug import DebugProvider
from sender.provider import BulkSend, Destination
from sender.smtp import SmtpProvider

APP_URL = "https://app.example.com"
RULE = "p.hello { color: #0a0b0c; }"
INLINED = '<p class="hello" style="color: #0a0b0c;">'
MEDIA = "@media (max-width: 600px) { p.hello { font-size: 18px !important; } }"
# Placeholders where SES will find them: text, raw text, an attribute, a query string.
BODY = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Hi</title>
<style>
{RULE}
a.go {{ background: #123456; }}
{MEDIA}
</style>
</head>
<body>
<p class="hello">Hello {{{{{{login_html}}}}}}, your code: {{{{code}}}}</p>
<p><a class="go" href="{{{{app_url}}}}/recover?token={{{{secret}}}}&amp;lang=en" title="{{{{login}}}}">Go</a></p>
</body>
</html>
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), mine)
    (mine / "password_recovery" / "body.html").write_text(BODY)
    return mine


def placeholders(text: str) -> list[str]:
    return re.findall(r"\{\{\{?[^{}]*\}?\}\}", text)


def head(document: str) -> str:
    return document[: document.index("</head>")]


def test_push_creates_an_ses_template_with_the_rule_inlined_and_every_placeholder_intact(
    folder, monkeypatch, capsys, moto_ses
):
    monkeypatch.setenv("MAILROOM_TEMPLATES_DIR", str(folder))
    monkeypatch.setenv("MAILROOM_SES_TEMPLATE_ACTIVATION", "inl-activation")
    monkeypatch.setenv("MAILROOM_SES_TEMPLATE_RECOVERY", "inl-recovery")
    assert cli.main(["templates", "push"]) == 0, capsys.readouterr().err
    pushed = moto_ses.get_template(TemplateName="inl-recovery")["Template"]["HtmlPart"]
    assert INLINED in pushed
    assert 'style="background: #123456;">Go</a>' in pushed
    assert 'href="{{app_url}}/recover?token={{secret}}&amp;lang=en"' in pushed and 'title="{{login}}"' in pushed
    assert sorted(placeholders(pushed)) == sorted(placeholders(BODY))  # the serializer may reorder attributes
    assert MEDIA in head(pushed) and RULE not in pushed  # the inlined rule left the head; the media query stayed
    shipped = moto_ses.get_template(TemplateName="inl-activation")["Template"]["HtmlPart"]
    assert 'class="button"' in shipped and "background: #1f6feb;" in shipped.split('class="button"', 1)[1][:200]
    assert "@media (prefers-color-scheme: dark)" in head(shipped)


def test_the_smtp_message_carries_the_rule_inlined(folder):
    loaded = templates.load_all(folder)
    smtp = SmtpProvider(SmtpSettings(host="127.0.0.1", tls="none"), "Mailroom <noreply@example.com>", loaded)
    record = Record(PASSWORD_RECOVERY, "ada@example.com", "Ada <3", "S" * 86, "54321")
    data = {**json.loads(default_template_data(APP_URL)), **json.loads(template_data(record))}
    message = smtp.message(PASSWORD_RECOVERY, loaded["password_recovery"], "ada@example.com", data)
    html_part = message.get_body(("html",)).get_content()
    assert f"{INLINED}Hello Ada &lt;3, your code: 54321</p>" in html_part
    assert f'href="{APP_URL}/recover?token={"S" * 86}&amp;lang=en"' in html_part
    assert MEDIA in head(html_part)


def test_the_debug_output_shows_the_html_part_with_the_rule_inlined(folder):
    out = io.StringIO()
    record = Record(PASSWORD_RECOVERY, "ada@example.com", "ada", "S" * 86, "54321")
    send = BulkSend(
        PASSWORD_RECOVERY,
        "passwordrecoveryv1",
        "noreply@example.com",
        "",
        default_template_data(APP_URL),
        [Destination("ada@example.com", template_data(record))],
    )
    DebugProvider(out, templates.load_all(folder)).send_bulk(send)
    rows = [line for line in out.getvalue().splitlines() if line.startswith("        html | ")]
    assert f"        html | {INLINED}Hello ada, your code: 54321</p>" in rows


def test_a_placeholder_the_html_parser_would_move_is_refused_at_load(folder):
    body = folder / "password_recovery" / "body.html"
    body.write_text(BODY.replace('<p class="hello">', '<table>{{code}}<tr><td>x</td></tr></table><p class="hello">'))
    with pytest.raises(
        templates.TemplateError, match=r"inlining the CSS moved or changed the placeholder \{\{code\}\}"
    ):
        templates.load("password_recovery", folder)
