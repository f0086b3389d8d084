"""`mailroom templates check`: each check fails on a crafted bad template and passes on the shipped ones;
`mailroom templates push` pushes nothing when one fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailroom import cli, template_checks, templates
from mailroom.actions import ACTIVATION
from mailroom.template_fixtures import samples

APP_URL = "http://localhost:8000"


def mine(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), folder)
    return folder


def lines(folder: Path) -> list[str]:
    return [p.line() for p in template_checks.run(folder, APP_URL)]


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new))


def test_the_shipped_templates_pass_every_check():
    assert template_checks.run(None, APP_URL) == []
    assert template_checks.run(None, "https://app.example.com") == []


def test_the_check_command_passes_on_the_shipped_templates_with_one_line_per_action_and_locale(capsys):
    assert cli.main(["templates", "check"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert [line.split(" (")[0] for line in out.splitlines()] == ["ok activation", "ok password_recovery"]


def test_a_variable_missing_from_the_template_data_fails(tmp_path):
    folder = mine(tmp_path)
    replace(folder / "activation" / "body.txt", "Hello {{{login}}},", "Hello {{{login}}} {{first_name}},")
    replace(folder / "activation" / "body.html", '{{secret}}">', '{{secret}}&c={{code}}">')  # no code in activation
    assert lines(folder) == [
        (
            f"{folder / 'activation' / 'body.txt'}: {{{{first_name}}}} is not in the template data of activation "
            "(it has app_url, login, login_html, redirect_prefix, secret); it would render empty"
        ),
        (
            f"{folder / 'activation' / 'body.html'}: {{{{code}}}} is not in the template data of activation "
            "(it has app_url, login, login_html, redirect_prefix, secret); it would render empty"
        ),
    ]


@pytest.mark.parametrize(
    "link,fault",
    [
        ("http://example.com/help", "is not https"),
        ("/help", "is not absolute"),
        ("javascript:alert(1)", "is not https"),
    ],
)
def test_a_link_that_is_not_https_nor_the_app_url_fails(tmp_path, link, fault):
    folder = mine(tmp_path)
    html = folder / "password_recovery" / "body.html"
    replace(html, "<h1>Reset your password</h1>", f'<h1>Reset your password</h1><p><a href="{link}">help</a></p>')
    assert lines(folder) == [
        f"{html}: link {link!r} {fault}"
        + (
            " (an email has no page to be relative to): use https://, or start it with {{app_url}}"
            if fault == "is not absolute"
            else ": use https://, or start it with {{app_url}}"
        )
    ]


def test_a_plain_http_url_in_the_text_part_fails_and_https_passes(tmp_path):
    folder = mine(tmp_path)
    text = folder / "activation" / "body.txt"
    text.write_text(text.read_text() + "\nHelp: https://help.example.com and http://help.example.com\n")
    assert lines(folder) == [
        f"{text}: link 'http://help.example.com' is not https: use https://, or start it with {{{{app_url}}}}"
    ]


def test_a_subject_longer_than_78_characters_with_the_fixtures_fails(tmp_path):
    folder = mine(tmp_path)
    (folder / "activation" / "subject.txt").write_text("Welcome aboard, {{{login}}}\n")  # 16 + the 64-character login
    assert lines(folder) == [
        (
            f"{folder / 'activation' / 'subject.txt'}: rendered with the fixture '64 characters' the subject is "
            "80 characters; it must be one line of at most 78 characters"
        )
    ]
    (folder / "activation" / "subject.txt").write_text("Hi, {{{login}}}\n")  # 68: fits
    assert lines(folder) == []


def test_a_subject_of_two_lines_fails(tmp_path):
    folder = mine(tmp_path)
    (folder / "password_recovery" / "subject.txt").write_text("Reset your password\nnow\n")
    assert lines(folder) == [
        (
            f"{folder / 'password_recovery' / 'subject.txt'}: rendered with the fixture 'script and quotes' the "
            "subject is 2 lines; it must be one line of at most 78 characters"
        )
    ]


def test_an_html_part_of_100_kb_or_more_once_rendered_fails(tmp_path):
    folder = mine(tmp_path)
    html = folder / "activation" / "body.html"
    filler = "<div>" + "x" * 1000 + "</div>\n"  # no rule matches a div: 1012 bytes once inlined and rendered
    end = "</td></tr>\n</table>\n</td></tr>"
    biggest = max(
        len(templates.load(ACTIVATION).render(s.data(ACTIVATION, APP_URL))["html"].encode())
        for s in samples(ACTIVATION)
    )
    under = (template_checks.HTML_MAX_BYTES - 1 - biggest) // len(filler)
    replace(html, end, filler * under + end)
    assert lines(folder) == []  # one byte to 1012 under the limit
    replace(html, end, filler + end)
    [problem] = lines(folder)
    assert problem.startswith(f"{html}: rendered with the fixture ")
    assert problem.endswith("bytes; keep it under 102400 (Gmail clips a message's HTML at 102 KB)")


def test_every_action_needs_its_three_parts_in_every_locale(tmp_path):
    folder = mine(tmp_path)
    french = folder / "activation" / "fr"
    french.mkdir()
    for name in ("subject.txt", "body.txt", "body.html"):
        shutil.copy(folder / "activation" / name, french / name)
    assert templates.locales(ACTIVATION, folder) == ["en", "fr"]
    (french / "body.txt").unlink()
    recovery_fr = folder / "password_recovery" / "fr"
    assert lines(folder) == [
        f"{french / 'body.txt'}: missing: every action needs subject.txt, body.txt and body.html in locale fr",
        *(
            f"{recovery_fr / name}: missing: every action needs subject.txt, body.txt and body.html in locale fr"
            for name in ("subject.txt", "body.txt", "body.html")
        ),
    ]


def test_a_template_outside_the_subset_and_a_placeholder_the_inliner_would_move_fail(tmp_path):
    folder = mine(tmp_path)
    replace(folder / "activation" / "body.txt", "Hello {{{login}}},", "Hello {{#if login}}x{{/if}},")
    html = folder / "password_recovery" / "body.html"
    replace(html, "<tr><td>\n<h1>", "{{login_html}}<tr><td>\n<h1>")  # straight inside <table>: foster-parented
    line = next(i for i, row in enumerate(html.read_text().splitlines(), 1) if row.startswith("{{login_html}}"))
    [subset, moved] = lines(folder)
    assert subset.startswith(f"{folder / 'activation' / 'body.txt'}: line 1: unsupported Handlebars expression")
    assert moved.startswith(
        f"{html}: line {line}: inlining the CSS moved or changed the placeholder {{{{login_html}}}}"
    )


def test_bad_fixtures_are_named(tmp_path):
    folder = mine(tmp_path)
    (folder / "activation" / "fixtures.json").write_text('{"samples": [{"name": "x"}]}')
    assert lines(folder)[0].endswith(
        'fixtures.json: sample 1: expected {"samples": [{"name": "...", "login": "...", "email": "...", '
        '"code": "...", "secret": "..."}, ...]} with name and login required, every value a string'
    )


def test_check_and_push_print_one_line_per_problem_exit_2_and_push_nothing(tmp_path, monkeypatch, capsys, moto_ses):
    folder = mine(tmp_path)
    (folder / "activation" / "subject.txt").write_text("Welcome aboard, {{{login}}}\n")
    replace(folder / "password_recovery" / "body.txt", "{{{app_url}}}/recover", "http://example.com/recover")
    monkeypatch.setenv("MAILROOM_TEMPLATES_DIR", str(folder))
    monkeypatch.setenv("MAILROOM_SES_TEMPLATE_ACTIVATION", "mine-activation")
    monkeypatch.setenv("MAILROOM_SES_TEMPLATE_RECOVERY", "mine-recovery")
    for command in ("check", "push"):
        assert cli.main(["templates", command]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.splitlines() == [
            (
                f"mailroom templates {command}: {folder / 'activation' / 'subject.txt'}: rendered with the fixture "
                "'64 characters' the subject is 80 characters; it must be one line of at most 78 characters"
            ),
            (
                f"mailroom templates {command}: {folder / 'password_recovery' / 'body.txt'}: link "
                "'http://example.com/recover?token={{{secret}}}' is not https: use https://, or start it with {{app_url}}"
            ),
        ]
    names = [t["Name"] for t in moto_ses.list_templates()["TemplatesMetadata"]]
    assert "mine-activation" not in names and "mine-recovery" not in names
