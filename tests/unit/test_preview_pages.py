"""`mailroom templates preview` serves every action folder in each locale it has (the browser test,
tests/process/test_preview_browser.py, clicks through them; this one asks the real server for each
page over HTTP, without a browser)."""

from __future__ import annotations

import html
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from mailroom import templates
from mailroom.preview import Preview, make_handler

APP_URL = "https://app.example.com"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), mine)
    shutil.copytree(mine / "welcome", mine / "order_shipped")  # an action of the app's own, English only
    shutil.rmtree(mine / "order_shipped" / "pt")
    (mine / "order_shipped" / "fixtures.json").write_text('{"link": false, "samples": [{"name": "a", "login": "Bo"}]}')
    return mine


@pytest.fixture
def url(folder: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Preview(folder, APP_URL)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def get(address: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(address, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_index_lists_every_action_in_each_of_its_locales_and_each_page_renders(url, folder):
    status, index = get(url + "/")
    assert status == 200
    listed = re.findall(r'<a class="email" href="/email/(\w+)/([\w-]+)">', index)
    expected = [
        (action, locale)
        for action in ("activation", "email_change", "invitation", "magic_link", "order_shipped")
        + ("password_recovery", "welcome")
        for locale in (("en",) if action == "order_shipped" else ("en", "pt"))
    ]
    assert listed == expected
    assert "every template passes" in index
    for action, locale in listed:
        status, page = get(f"{url}/email/{action}/{locale}")
        assert status == 200, page
        assert f"<h1>{action} ({locale})</h1>" in page
        subject = html.unescape(re.search(r'<span id="subject">(.*?)</span>', page).group(1))
        assert subject == templates.load(action, folder, locale).subject
        links = re.findall(r'<a class="link" href="([^"]+)"', page)
        if action in ("welcome", "order_shipped"):
            assert links == []
        else:
            assert [html.unescape(link).split("?token=")[0] for link in links] == [
                APP_URL
                + {"activation": "/activate", "password_recovery": "/recover"}.get(
                    action, "/" + action.replace("_", "-")
                )
            ]
        assert ('id="code"' in page) is (action == "password_recovery")
        status, part = get(f"{url}/html/{action}/{locale}?scheme=dark")
        assert status == 200 and f'lang="{locale}"' in part


def test_an_action_or_a_locale_without_a_folder_is_not_found(url):
    assert get(url + "/email/order_shipped/pt")[0] == 404  # falls back when sent; the preview shows what exists
    assert get(url + "/email/no_such_action/en")[0] == 404
    assert get(url + "/html/Activation/en")[0] == 404
