"""`mailroom templates preview` in a real browser: Playwright driving Debian's Chromium.

The real console script serves a copy of the shipped templates (MAILROOM_TEMPLATES_DIR): six actions,
each in English and Portuguese, so the index has every action and locale to click through. A screenshot of each
email goes to test-artifacts/preview/ (git-ignored, kept by CI as an artifact; never compared
pixel by pixel: a person looks at them).

Chromium or Playwright missing is a failure that says how to install them, never a skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import script

from mailroom import templates

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "preview"
WAIT_MS = 15_000


def sync_playwright():  # -> playwright's context manager
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        pytest.fail("Playwright for Python is not installed: run `make browser` (or pip install -e '.[test]')", False)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install -y chromium)", pytrace=False)
    return start()


GREETING = {"en": "Hello {login},", "pt": "Olá, {login},"}
PATHS = "activate|recover|email-change|magic-link|invitation"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped templates (the test edits one)."""
    mine = tmp_path / "templates"
    shutil.copytree(templates.template_dir(), mine)
    return mine


@pytest.fixture
def preview_url(folder: Path, base_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    env = {**base_env, "MAILROOM_TEMPLATES_DIR": str(folder), "MAILROOM_APP_URL": "https://app.example.com"}
    proc = subprocess.Popen(
        [script("mailroom"), "templates", "preview", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), "the preview did not log its URL"
        yield found[0]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        reader.join(5)


def test_the_preview_shows_every_email_escaped_at_both_widths_and_in_dark_mode_and_reloads_on_an_edit(
    preview_url, folder
):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(preview_url)
        expect(page.locator("#checks")).to_have_text(re.compile("every template passes"))
        emails = page.locator("a.email").all_inner_texts()
        assert emails == [
            f"{action} ({locale})"
            for action in ("activation", "email_change", "invitation", "magic_link", "password_recovery", "welcome")
            for locale in ("en", "pt")
        ]
        for name in emails:
            action, locale = re.fullmatch(r"(\w+) \((\w+)\)", name).groups()
            page.goto(preview_url)
            page.get_by_role("link", name=name, exact=True).click()
            expect(page.locator("h1")).to_have_text(name)
            samples = json.loads((folder / action / "fixtures.json").read_text())["samples"]
            hostile = next(i for i, s in enumerate(samples) if "<script>" in s["login"])
            if hostile:
                page.get_by_role("link", name=samples[hostile]["name"]).click()
            login = samples[hostile]["login"]
            frame = page.frame_locator("#html-part")
            if action == "invitation":  # to an address with no account: no login to greet by
                expect(frame.locator("body")).not_to_contain_text("pwned")
                expect(page.locator("#text-part")).not_to_contain_text("pwned")
            else:  # the hostile login is shown as the text it is, in the HTML part and in the text part
                greeting = GREETING[locale].format(login=login)
                expect(frame.locator("body")).to_contain_text(greeting)
                expect(page.locator("#text-part")).to_contain_text(greeting)
            assert frame.locator("script").count() == 0
            if action == "welcome":  # no link at all
                expect(page.locator("#links a.link")).to_have_count(0)
            else:
                expect(page.locator("#links a.link")).to_have_attribute(
                    "href", re.compile(rf"^https://app\.example\.com/({PATHS})\?token=[\w-]{{86}}$")
                )
                expect(frame.locator("a.button")).to_have_css("display", "inline-block")
            if action == "password_recovery":
                expect(page.locator("#code")).to_have_text(re.compile(r"^\d{5}$"))
                expect(frame.locator("p.code")).to_have_text(page.locator("#code").inner_text())
            page.locator("#html-part").screenshot(path=str(ARTIFACTS / f"{action}-{locale}-desktop.png"))

            page.locator("#mobile").click()
            expect(page.locator("#mobile")).to_have_attribute("aria-pressed", "true")
            assert page.locator("#html-part").evaluate("e => e.clientWidth") == 375
            if action != "welcome":
                expect(frame.locator("a.button")).to_have_css("display", "block")  # the mobile media query
            page.locator("#html-part").screenshot(path=str(ARTIFACTS / f"{action}-{locale}-mobile.png"))

            page.locator("#dark").click()
            expect(frame.locator("body")).to_have_css("background-color", "rgb(13, 17, 23)")
            page.locator("#html-part").screenshot(path=str(ARTIFACTS / f"{action}-{locale}-mobile-dark.png"))

            if action != "invitation":
                for other in (s for i, s in enumerate(samples) if i != hostile):
                    page.get_by_role("link", name=other["name"]).click()
                    expect(frame.locator("body")).to_contain_text(GREETING[locale].format(login=other["login"]))
        assert dialogs == []  # no fixture's script ever ran

        # An edit of a template file shows without touching the browser.
        page.goto(preview_url + "email/activation/en")
        frame = page.frame_locator("#html-part")
        expect(frame.locator("h1")).to_have_text("Activate your account")
        body = folder / "activation" / "body.html"
        body.write_text(body.read_text().replace("<h1>Activate your account</h1>", "<h1>Welcome, activate now</h1>"))
        expect(frame.locator("h1")).to_have_text("Welcome, activate now", timeout=WAIT_MS)
        subject = folder / "activation" / "subject.txt"
        subject.write_text("Your new account\n")
        expect(page.locator("#subject")).to_have_text("Your new account", timeout=WAIT_MS)
        browser.close()
    for name in ("activation-en-desktop.png", "password_recovery-pt-mobile-dark.png", "welcome-pt-mobile.png"):
        assert (ARTIFACTS / name).stat().st_size > 1000


def test_a_missing_chromium_or_playwright_fails_saying_how_to_install_them(monkeypatch, tmp_path):
    import sys

    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception, match=r"no-chromium is missing: run `make browser`"):
        sync_playwright()
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # import fails as if not installed
    with pytest.raises(pytest.fail.Exception, match=r"Playwright for Python is not installed: run `make browser`"):
        sync_playwright()
