"""A local renderer for the Handlebars subset our SES templates use, with SES's semantics.

`{{name}}` is replaced by the value HTML-escaped (as Handlebars and SES do), `{{{name}}}`
by the raw value. A name missing from the data renders as an empty string (SES would fail
the message instead; the sender's DefaultTemplateData gives every name a value, so the two
agree for our templates). Any other Handlebars construct ({{#if}}, partials, ...) is an
error here, so the templates cannot silently grow beyond what this renderer checks.

Templates live in `templates/<action>/` as `subject.txt`, `body.txt` and `body.html`, or in
a folder of your own with the same layout (MAILROOM_TEMPLATES_DIR). They are all checked
at start (`load_all`), and a problem is one line that names the file, the line and what
is supported (`exit_on_error`), never a traceback in the middle of the run.

The data each message is rendered with is built here too (`template_data`,
`default_template_data`): the sender sends it to SES, the SMTP provider and the debug output
render it locally, and `mailroom templates render` shows it, all from the same JSON.
Template data is built with a JSON encoder from the record's fields, never by string
concatenation, so a login holding `"`, `\\`, `{{` or any Unicode arrives as it was.

An HTML body is written with a normal `<style>` block; `load` inlines its rules into `style=`
attributes (css-inline), before any placeholder is filled, so the sender's SMTP and debug
paths, the preview and `mailroom templates push` all use the same inlined template. Rules
that cannot be inlined (media queries, `:hover`) stay in the head. Inlining must not move or
change a `{{placeholder}}` (the HTML parser would, for text put straight inside a `<table>`):
if it did, that is a TemplateError.

Locales: the files directly in `<action>/` are the default locale (DEFAULT_LOCALE); a
subfolder `<action>/<locale>/` (`fr`, `pt-BR`) with the same three files is another one.
`locales` lists them; `mailroom templates check` requires every action to have every locale.
"""

from __future__ import annotations

import html
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import css_inline

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, Action
from mailroom.resources import resource_dir
from mailroom.wire import Record

_TAG = re.compile(r"\{\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\}|\{\{\s*([^{}]*?)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The characters Handlebars' escapeExpression replaces.
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "`": "&#x60;", "=": "&#x3D;"}
_ESCAPE_RE = re.compile("[&<>\"'`=]")

FILES = {"subject": "subject.txt", "text": "body.txt", "html": "body.html"}
SUPPORTED = "supported: {{name}} (HTML-escaped) and {{{name}}} (raw), a name being letters, digits and _"
LAYOUT = "a templates folder holds activation/ and password_recovery/, each with subject.txt, body.txt and body.html"
TEMPLATE_EXIT_STATUS = 2

DEFAULT_LOCALE = "en"
_LOCALE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")

# The <style> block stays, holding only what could not be inlined (media queries, :hover);
# nothing is fetched from the network while loading a template.
_INLINER = css_inline.CSSInliner(keep_style_tags=True, remove_inlined_selectors=True, load_remote_stylesheets=False)

# redirect_prefix: `[to: original@address] ` on a redirected email, else empty (mailroom/redirect.py)
TEMPLATE_VARIABLES = ("login", "login_html", "secret", "code", "app_url", "redirect_prefix")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # built once: it runs per record


class TemplateError(ValueError):
    """A template uses something outside the supported subset, or a part is missing."""


def escape(value: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value)


def check(template: str, where: str) -> None:
    """TemplateError naming `where`, the line and what is supported, for the first construct
    outside the subset (or a lone `{{` or `}}`, which Handlebars would not take either)."""
    position = 0
    for match in [*_TAG.finditer(template), None]:
        gap = template[position : match.start() if match else len(template)]
        for stray in ("{{", "}}"):
            if stray in gap:
                at = position + gap.index(stray)
                raise TemplateError(f"{where}, line {_line(template, at)}: a lone {stray!r}; {SUPPORTED}")
        if match is None:
            return
        if match.group(2) is not None and not _NAME.match(match.group(2)):
            raise TemplateError(
                f"{where}, line {_line(template, match.start())}: unsupported Handlebars expression "
                f"{match.group(0)}; {SUPPORTED}"
            )
        position = match.end()


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def render(template: str, data: Mapping[str, object]) -> str:
    def substitute(match: re.Match[str]) -> str:
        raw_name, name = match.group(1), match.group(2)
        if raw_name is not None:
            return _text(data.get(raw_name))
        if not _NAME.match(name):
            raise TemplateError(f"unsupported Handlebars expression {{{{{name}}}}}")
        return escape(_text(data.get(name)))

    return _TAG.sub(substitute, template)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def variables(template: str) -> set[str]:
    names = set()
    for match in _TAG.finditer(template):
        names.add(match.group(1) or match.group(2))
    return names


@dataclass(frozen=True)
class EmailTemplate:
    """One action's subject, text body and HTML body, as pushed to SES."""

    action: str  # the action's name (its folder)
    subject: str
    text: str
    html: str

    def render(self, data: Mapping[str, object]) -> dict[str, str]:
        return {"subject": render(self.subject, data), "text": render(self.text, data), "html": render(self.html, data)}


def inline_css(html_template: str, where: str) -> str:
    """The HTML template with its `<style>` rules moved into `style=` attributes; TemplateError
    when the HTML parser moved or changed a placeholder (SES fills them in after us)."""
    inlined: str = _INLINER.inline(html_template)
    if html_template.endswith("\n") and not inlined.endswith("\n"):
        inlined += "\n"  # the serializer drops it; a MIME part would add it back, and differ
    before, after = _placements(html_template), _placements(inlined)
    # Compared as multisets: the serializer may reorder an element's attributes, which is harmless.
    missing = Counter(p[:2] for p in before) - Counter(p[:2] for p in after)
    if missing or len(before) != len(after):
        moved = next((p for p in before if p[:2] in missing), before[0] if before else ("{{", "", 1))
        raise TemplateError(
            f"{where}, line {moved[2]}: inlining the CSS moved or changed the placeholder {moved[0]} "
            f"(after <{moved[1]}>); put placeholders in an element that holds text "
            "(<td>, <p>, <a>, ...), not straight inside a <table> or <tr>"
        )
    return inlined


_TAG_OPEN = re.compile(r"<(/?[A-Za-z][A-Za-z0-9]*)")


def _placements(text: str) -> list[tuple[str, str, int]]:
    """Each placeholder with the tag it follows (the parser's foster-parenting changes that) and its
    line in `text`; the comparison ignores the line."""
    found = []
    for match in _TAG.finditer(text):
        tags = _TAG_OPEN.findall(text, 0, match.start())
        found.append((match.group(0), tags[-1].lower() if tags else "", _line(text, match.start())))
    return found


def template_dir(configured: Path | None = None) -> Path:
    """The templates folder: MAILROOM_TEMPLATES_DIR when set, else the shipped one."""
    return configured or resource_dir("templates")


def _name(action: str | Action) -> str:
    """An action's folder name: its name."""
    return action if isinstance(action, str) else action.name


def locale_dir(action: str | Action, locale: str = DEFAULT_LOCALE, directory: Path | None = None) -> Path:
    """Where the files of the action named `action` for `locale` live: `<action>/` for the
    default, `<action>/<locale>/` else."""
    base = template_dir(directory) / _name(action)
    return base if locale == DEFAULT_LOCALE else base / locale


def locales(action: str | Action, directory: Path | None = None) -> list[str]:
    """The locales the action named `action` has a folder for: the default first, then
    `<action>/<locale>/` sorted."""
    base = template_dir(directory) / _name(action)
    found = [p.name for p in base.iterdir() if p.is_dir() and _LOCALE.match(p.name)] if base.is_dir() else []
    return [DEFAULT_LOCALE, *sorted(name for name in found if name != DEFAULT_LOCALE)]


def resolve_locale(available: Iterable[str], wanted: str | None, default: str) -> str:
    """The locale of `available` to send a recipient of locale `wanted` (None: the default):
    `wanted` itself, else each shorter prefix of it (`pt-BR` -> `pt`), else `default`.
    Language tags compare case-insensitively (`pt-br` is `pt-BR`)."""
    if wanted:
        have = {a.lower(): a for a in available}
        parts = wanted.split("-")
        while parts:
            found = have.get("-".join(parts).lower())
            if found is not None:
                return found
            parts.pop()
    return default


def load(action: str | Action, directory: Path | None = None, locale: str = DEFAULT_LOCALE) -> EmailTemplate:
    """Read, check and inline `<directory>/<action>/` (or its `<locale>/`); TemplateError names
    the file that is missing, unreadable or outside the supported subset."""
    base = locale_dir(action, locale, directory)
    parts = {}
    for key, name in FILES.items():
        path = base / name
        try:
            parts[key] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateError(f"{path} is missing ({LAYOUT})") from None
        except UnicodeDecodeError as exc:
            raise TemplateError(f"{path} is not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise TemplateError(f"{path} cannot be read: {exc.strerror or exc}") from None
        check(parts[key], str(path))
    html_part = inline_css(parts["html"], str(base / FILES["html"]))
    return EmailTemplate(_name(action), parts["subject"].strip(), parts["text"], html_part)


def load_all(directory: Path | None = None) -> dict[str, EmailTemplate]:
    """The default-locale templates of activation and password_recovery, by name, all checked;
    TemplateError for the first problem."""
    return {action.name: load(action.name, directory) for action in (ACTIVATION, PASSWORD_RECOVERY)}


def exit_on_error(program: str, error: TemplateError) -> NoReturn:
    """Print the one-line template error and exit with status 2 (as for invalid configuration)."""
    print(f"{program}: invalid template: {error}", file=sys.stderr)
    raise SystemExit(TEMPLATE_EXIT_STATUS)


def template_data(record: Record, redirect_prefix: str = "") -> str:
    """ReplacementTemplateData: login, its HTML-escaped form, secret, the code for every action
    but activation (the sender has no registry to tell which sign it: an email may show it),
    and the subject prefix of an email redirected by MAILROOM_REDIRECT_TO."""
    data = {"login": record.login, "login_html": html.escape(record.login, quote=True), "secret": record.secret}
    if record.action.number != ACTIVATION.number:
        data["code"] = record.code
    if redirect_prefix:
        data["redirect_prefix"] = redirect_prefix
    return _JSON.encode(data)


def default_template_data(app_url: str) -> str:
    """DefaultTemplateData: every variable has a value, so SES never fails on a missing one."""
    return _JSON.encode({**dict.fromkeys(TEMPLATE_VARIABLES, ""), "app_url": app_url})
