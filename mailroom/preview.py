"""`mailroom templates preview`: every email rendered with its fixtures on a local web page.

Standard library only (http.server, one thread per request), no build step: the page is
server-rendered HTML with a few lines of script. Routes:

- `/`: the index, every action × locale, and the problems `mailroom templates check` finds;
- `/email/<action>/<locale>?sample=N&width=600|375&scheme=light|dark`: one email as its
  recipient sees it: the subject, the link(s) and the code, the text part, and the HTML part
  in a sandboxed iframe (no script runs, whatever a fixture holds);
- `/html/<action>/<locale>?sample=N&scheme=...`: the rendered HTML part alone, for the iframe;
- `/version`: a fingerprint of the templates folder; the page polls it and reloads when a
  file changes (a template, or a fixtures file).

Every request reads the files again, so an edit shows at the next reload, and a template
broken mid-edit shows its problem on the page instead of stopping the server.

Dark mode is previewed as the clients that honour `prefers-color-scheme` (Apple Mail, iOS
Mail, Outlook for Mac) show it: the template's `(prefers-color-scheme: dark)` rules are made
to apply, and the light ones not. Clients that invert colours on their own are not imitated.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import signal
import sys
import threading
from dataclasses import dataclass
from html.parser import HTMLParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from mailroom import template_checks, templates
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, Action, spec_for
from mailroom.template_fixtures import Sample, samples
from mailroom.templates import TemplateError

log = logging.getLogger("mailroom")
_TEMPLATED = (ACTIVATION, PASSWORD_RECOVERY)  # the actions previewed (shipped templates)

WIDTHS = {"desktop": 600, "mobile": 375}
POLL_INTERVAL_MS = 300
_DARK = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_LIGHT = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)
# The iframe's document may not run script nor reach anything: what an email client allows, at most.
_FRAME_CSP = "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; font-src https: data:"


def as_dark(document: str) -> str:
    """The HTML part as a dark-mode client shows it: dark rules always on, light rules off."""
    return _LIGHT.sub("(max-width: 0px)", _DARK.sub("(min-width: 0px)", document))


@dataclass(frozen=True)
class View:
    """What the page shows for one email: state from the query string, clamped to what exists."""

    action: Action
    locale: str
    sample: int
    width: int
    dark: bool

    def query(self, **changes: object) -> str:
        state = {"sample": self.sample, "width": self.width, "scheme": "dark" if self.dark else "light", **changes}
        return "&amp;".join(f"{k}={quote(str(v))}" for k, v in state.items())  # for an HTML attribute


class Preview:
    """Renders the pages from the templates folder, read afresh at each request."""

    def __init__(self, directory: Path | None, app_url: str) -> None:
        self.directory = directory
        self.app_url = app_url

    # -- what changes --------------------------------------------------------------------------
    def version(self) -> str:
        """A fingerprint of every file under the templates folder (name, size, mtime)."""
        digest = hashlib.sha256()
        root = templates.template_dir(self.directory)
        for path in sorted(root.rglob("*")):
            try:
                stat = path.stat()
            except OSError:
                continue
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def emails(self) -> list[tuple[Action, str]]:
        found = {loc for action in _TEMPLATED for loc in templates.locales(action.name, self.directory)}
        ordered = sorted(found, key=lambda loc: (loc != templates.DEFAULT_LOCALE, loc))
        return [(action, locale) for action in _TEMPLATED for locale in ordered]

    # -- pages ---------------------------------------------------------------------------------
    def index(self) -> str:
        rows = "".join(
            f'<li><a class="email" href="/email/{a.name}/{quote(loc)}">{a.name} ({html.escape(loc)})</a></li>'
            for a, loc in self.emails()
        )
        problems = template_checks.run(self.directory, self.app_url)
        checks = (
            '<p class="ok" id="checks">every template passes <code>mailroom templates check</code></p>'
            if not problems
            else '<ul class="problems" id="checks">'
            + "".join(f"<li>{html.escape(p.line())}</li>" for p in problems)
            + "</ul>"
        )
        body = f'<h1>mailroom templates</h1><ul id="index">{rows}</ul><h2>Checks</h2>{checks}'
        return self._page("mailroom templates", body, dark=False)

    def email(self, view: View) -> str:
        nav = " · ".join(
            f'<a href="/email/{a.name}/{quote(loc)}?{view.query(sample=0)}"'
            f"{' aria-current=page' if (a, loc) == (view.action, view.locale) else ''}>"
            f"{a.name} ({html.escape(loc)})</a>"
            for a, loc in self.emails()
        )
        try:
            fixtures = samples(view.action, self.directory)
            sample = fixtures[min(view.sample, len(fixtures) - 1)]
            template = templates.load(view.action.name, self.directory, view.locale)
            message = template.render(sample.data(view.action, self.app_url))
        except (TemplateError, OSError) as exc:
            body = f'<nav>{nav}</nav><p class="error" id="error">{html.escape(str(exc))}</p>'
            return self._page(f"{view.action.name}: error", body, dark=view.dark)
        samples_nav = " · ".join(
            f'<a href="?{view.query(sample=i)}"{" aria-current=page" if f is sample else ""}>{html.escape(f.name)}</a>'
            for i, f in enumerate(fixtures)
        )
        toggles = " ".join(
            f'<a class="toggle" id="{key}" href="?{view.query(**{name: value})}"'
            f"{' aria-pressed=true' if current else ''}>{label}</a>"
            for key, name, value, label, current in (
                ("desktop", "width", WIDTHS["desktop"], f"Desktop ({WIDTHS['desktop']} px)", view.width != 375),
                ("mobile", "width", WIDTHS["mobile"], f"Mobile ({WIDTHS['mobile']} px)", view.width == 375),
                ("light", "scheme", "light", "Light", not view.dark),
                ("dark", "scheme", "dark", "Dark", view.dark),
            )
        )
        body = (
            f"<nav>{nav}</nav>"
            f'<p class="samples">Fixture: {samples_nav}</p>'
            f"<h1>{view.action.name} ({html.escape(view.locale)})</h1>"
            f"<dl>{self._recipient(view.action, sample, message)}</dl>"
            f'<p class="toggles">{toggles}</p>'
            f"<h2>HTML part</h2>"
            f'<iframe id="html-part" title="HTML part" sandbox width="{view.width}" height="900" '
            f'style="width:{view.width}px" src="/html/{view.action.name}/{quote(view.locale)}?{view.query()}">'
            f"</iframe>"
            f'<h2>Text part</h2><pre id="text-part">{html.escape(message["text"])}</pre>'
        )
        return self._page(f"{view.action.name} ({view.locale})", body, dark=view.dark)

    def html_part(self, view: View) -> str:
        fixtures = samples(view.action, self.directory)
        sample = fixtures[min(view.sample, len(fixtures) - 1)]
        message = templates.load(view.action.name, self.directory, view.locale).render(
            sample.data(view.action, self.app_url)
        )
        return as_dark(message["html"]) if view.dark else message["html"]

    def _recipient(self, action: Action, sample: Sample, message: dict[str, str]) -> str:
        """The subject, the links and the code, as the recipient reads them."""
        links = "".join(
            f'<li><a class="link" href="{html.escape(href)}" rel="noreferrer">{html.escape(text or href)}</a>'
            f" → <code>{html.escape(href)}</code></li>"
            for text, href in _anchors(message["html"])
        )
        code = sample.data(action, self.app_url).get("code", "")
        rows = [
            ("To", f'<span id="to">{html.escape(sample.email)}</span>'),
            ("Subject", f'<span id="subject">{html.escape(message["subject"])}</span>'),
            ("Links", f'<ul id="links">{links}</ul>'),
        ]
        if action == PASSWORD_RECOVERY:
            rows.append(("Code", f'<code id="code">{html.escape(code)}</code>'))
        return "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)

    def _page(self, title: str, body: str, *, dark: bool) -> str:
        return PAGE.format(
            title=html.escape(title),
            body=body,
            scheme="dark" if dark else "light",
            version=json.dumps(self.version()),
            interval=POLL_INTERVAL_MS,
        )


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._open: list[str] | None = None
        self._href = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._open = []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.found.append((" ".join("".join(self._open).split()), self._href))
            self._open = None


def _anchors(document: str) -> list[tuple[str, str]]:
    parser = _Anchors()
    parser.feed(document)
    parser.close()
    return parser.found


PAGE = """<!DOCTYPE html>
<html lang="en" data-scheme="{scheme}">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px 24px; color: #1f2328; background: #ffffff; }}
html[data-scheme=dark] body {{ color: #e6edf3; background: #0d1117; }}
html[data-scheme=dark] a {{ color: #58a6ff; }}
nav a[aria-current], .samples a[aria-current] {{ font-weight: 700; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; }}
dt {{ font-weight: 600; }} dd {{ margin: 0; }} dd ul {{ margin: 0; padding-left: 18px; }}
.toggle {{ border: 1px solid #8c959f; border-radius: 6px; padding: 4px 10px; text-decoration: none; }}
.toggle[aria-pressed] {{ background: #1f6feb; color: #ffffff; border-color: #1f6feb; }}
iframe {{ border: 1px solid #8c959f; display: block; }}
pre {{ white-space: pre-wrap; max-width: 80ch; border: 1px solid #8c959f; padding: 12px; }}
.error, .problems {{ color: #cf222e; }} .ok {{ color: #1a7f37; }}
</style>
</head>
<body>
{body}
<script>
// Reload when a file of the templates folder changes (the server's fingerprint of it).
const shown = {version};
setInterval(async () => {{
  try {{
    const answer = await fetch("/version", {{cache: "no-store"}});
    if ((await answer.json()).version !== shown) location.reload();
  }} catch (e) {{ /* the server is restarting: try again at the next tick */ }}
}}, {interval});
</script>
</body>
</html>
"""


def _view(parts: list[str], query: dict[str, list[str]]) -> View | None:
    """The View a path `/<kind>/<action>/<locale>` and its query ask for, or None when it names nothing."""
    if len(parts) != 3:
        return None
    try:
        action = spec_for(parts[1]).action
    except ValueError:
        return None
    locale = parts[2]
    if not re.fullmatch(r"[A-Za-z0-9-]{1,20}", locale):
        return None

    def first(name: str, default: str) -> str:
        return query.get(name, [default])[0]

    sample = int(first("sample", "0")) if first("sample", "0").isdigit() else 0
    width = WIDTHS["mobile"] if first("width", "") == str(WIDTHS["mobile"]) else WIDTHS["desktop"]
    return View(action, locale, sample, width, first("scheme", "light") == "dark")


def make_handler(preview: Preview) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mailroom-preview"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            query = parse_qs(url.query)
            view = _view(parts, query)
            try:
                if not parts:
                    self._send(preview.index())
                elif parts == ["version"]:
                    self._send(json.dumps({"version": preview.version()}), "application/json")
                elif parts[0] == "email" and view is not None:
                    self._send(preview.email(view))
                elif parts[0] == "html" and view is not None:
                    self._send(preview.html_part(view), csp=_FRAME_CSP)
                else:
                    self._send("not found", "text/plain", HTTPStatus.NOT_FOUND)
            except (TemplateError, OSError) as exc:
                self._send(str(exc), "text/plain", HTTPStatus.UNPROCESSABLE_ENTITY)

        def _send(self, text: str, kind: str = "text/html", status: HTTPStatus = HTTPStatus.OK, csp: str = "") -> None:
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if csp:
                self.send_header("Content-Security-Policy", csp)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("preview: " + format, *args)

    return Handler


def serve(host: str, port: int, directory: Path | None, app_url: str) -> int:
    """Serve until Ctrl-C or SIGTERM (exit 0); the URL goes to stderr. An address it cannot
    listen on (a port in use, a host not of this machine) exits 2 with one line."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(Preview(directory, app_url)))
    except (OSError, OverflowError) as exc:  # EADDRINUSE, EADDRNOTAVAIL, a name not resolved, a port out of range
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(
            f"mailroom templates preview: cannot listen on {host}:{port}: {reason}; choose another --port"
            " (0 picks a free one) or --host",
            file=sys.stderr,
            flush=True,
        )
        return 2
    server.daemon_threads = True
    bound_host, bound_port = server.server_address[:2]
    name = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
    shown = f"[{name}]" if ":" in name else name
    url = f"http://{shown}:{bound_port}/"

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    # Both signals stop it the same way, installed before the URL is shown: a Ctrl-C right
    # after it is a clean stop, not a KeyboardInterrupt raised wherever the main thread is.
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"mailroom templates preview: serving {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("mailroom templates preview: stopped", file=sys.stderr, flush=True)
    return 0
