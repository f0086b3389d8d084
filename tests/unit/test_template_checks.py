"""`mailroom templates check`: each check fails on a crafted bad template and passes on the shipped ones;
`mailroom templates push` pushes nothing when one fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailroom import cli, template_checks, templates
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
    assert [line.split(":")[0] for line in out.splitlines()] == [
        f"ok {action} ({locale})" for action in sorted(template_checks.STANDARD) for locale in ("en", "pt")
    ]


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
        len(templates.load("activation").render(s.data(APP_URL))["html"].encode()) for s in samples("activation")
    )
    under = (template_checks.HTML_MAX_BYTES - 1 - biggest) // len(filler)
    replace(html, end, filler * under + end)
    assert lines(folder) == []  # one byte to 1012 under the limit
    replace(html, end, filler + end)
    [problem] = lines(folder)
    assert problem.startswith(f"{html}: rendered with the fixture ")
    assert problem.endswith("bytes; keep it under 102400 (Gmail clips a message's HTML at 102 KB)")


def test_a_locale_folder_needs_its_three_parts_but_an_action_need_not_have_every_locale(tmp_path):
    folder = mine(tmp_path)
    french = folder / "activation" / "fr"
    french.mkdir()
    for name in ("subject.txt", "body.txt", "body.html"):
        shutil.copy(folder / "activation" / name, french / name)
    assert templates.locales("activation", folder) == ["en", "fr", "pt"]
    assert lines(folder) == []  # password_recovery has no fr: its French readers fall back to English
    (french / "body.txt").unlink()
    (folder / "welcome" / "subject.txt").unlink()  # the default locale is every action's fallback
    assert lines(folder) == [
        (
            f"{french / 'body.txt'}: missing: every action needs subject.txt, body.txt and body.html in the default "
            "locale and in each locale folder it has (locale fr)"
        ),
        (
            f"{folder / 'welcome' / 'subject.txt'}: missing: every action needs subject.txt, body.txt and body.html "
            "in the default locale and in each locale folder it has (locale en)"
        ),
    ]


def test_an_action_with_a_link_carries_the_signed_token_in_its_text_and_html_parts(tmp_path):
    folder = mine(tmp_path)
    text = folder / "magic_link" / "pt" / "body.txt"
    replace(text, "{{{app_url}}}/magic-link?token={{{secret}}}", "{{{app_url}}}/magic-link")
    html = folder / "email_change" / "body.html"
    html.write_text(html.read_text().replace("?token={{secret}}", ""))
    assert lines(folder) == [  # in the order of the actions' names
        (
            f"{html}: has no link with the signed token: email_change carries a link (link = true in the registry); "
            "add {{app_url}}/...?token={{secret}}"
        ),
        (
            f"{text}: has no link with the signed token: magic_link carries a link (link = true in the registry); "
            "add {{app_url}}/...?token={{secret}}"
        ),
    ]


def test_an_email_without_a_link_and_every_subject_never_use_the_signed_token(tmp_path):
    folder = mine(tmp_path)
    welcome = folder / "welcome" / "pt" / "body.html"
    replace(welcome, "<p>Você entra", '<p><a href="{{app_url}}/welcome?token={{secret}}">Entrar</a></p><p>Você entra')
    subject = folder / "activation" / "subject.txt"
    subject.write_text("Go {{secret}}\n")
    assert lines(folder) == [
        f"{subject}: uses {{{{secret}}}}, the signed token, in a subject: remove it",
        (  # 86 characters of token: no subject holds one anyway
            f"{subject}: rendered with the fixture 'script and quotes' the subject is 89 characters; "
            "it must be one line of at most 78 characters"
        ),
        (
            f"{welcome}: uses {{{{secret}}}}, the signed token, in an email without a link (link = false in the "
            "registry): remove it"
        ),
    ]


def test_an_action_of_your_own_has_a_link_unless_its_fixtures_say_link_false(tmp_path):
    folder = mine(tmp_path)
    shutil.copytree(folder / "welcome", folder / "order_shipped")  # a copy of welcome: no link
    (folder / "order_shipped" / "fixtures.json").unlink()
    assert lines(folder) == [
        (
            f"{folder / 'order_shipped' / part}: has no link with the signed token: order_shipped carries a link "
            "(link = true in the registry); add {{app_url}}/...?token={{secret}}"
        )
        for part in ("body.txt", "body.html", "pt/body.txt", "pt/body.html")
    ]
    (folder / "order_shipped" / "fixtures.json").write_text('{"link": false, "samples": [{"name": "a", "login": "a"}]}')
    assert lines(folder) == []
    assert template_checks.spec_of("order_shipped", folder) == templates.TemplateSpec(link=False, code=False)


def test_an_action_of_your_own_with_a_code_says_so_in_its_fixtures(tmp_path):
    folder = mine(tmp_path)
    shutil.copytree(folder / "password_recovery", folder / "delete_account")
    fixtures = folder / "delete_account" / "fixtures.json"
    problem = "{{code}} is not in the template data of delete_account"
    assert sum(problem in line for line in lines(folder)) == 4  # text and HTML, en and pt
    fixtures.write_text(fixtures.read_text().replace('"samples"', '"code": true, "samples"', 1))
    assert lines(folder) == []


def test_a_standard_actions_fixtures_cannot_contradict_the_registry_and_other_options_are_refused(tmp_path):
    folder = mine(tmp_path)
    fixtures = folder / "welcome" / "fixtures.json"
    fixtures.write_text(fixtures.read_text().replace('"samples"', '"link": true, "samples"', 1))
    assert lines(folder) == [
        f'{fixtures}: "link": true contradicts the registry, where welcome has link = false; remove it'
    ]
    fixtures.write_text(fixtures.read_text().replace('"link": true', '"lifetime": "1 day"', 1))
    assert lines(folder) == [
        (
            f"{folder / 'welcome'}: {fixtures}: 'lifetime': besides samples, a fixtures file may hold only "
            '"link": true|false and "code": true|false (what the action\'s registry row says)'
        )
    ]


def test_a_folder_not_named_as_an_action_and_a_folder_for_the_default_locale_are_named(tmp_path):
    folder = mine(tmp_path)
    (folder / "Order-Shipped").mkdir()
    (folder / ".git").mkdir()  # hidden: not the templates' business
    shutil.copytree(folder / "welcome" / "pt", folder / "welcome" / "en")
    assert lines(folder) == [
        (
            f"{folder / 'Order-Shipped'}: not an action: a folder of the templates folder is named as its action "
            "(a lower-case letter, then lower-case letters, digits and _)"
        ),
        (
            f"{folder / 'welcome' / 'en'}: en is the default locale: its files go straight in welcome/, "
            "not in a folder of their own (which would never be used)"
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
