"""A local renderer for the Handlebars subset our SES templates use, with SES's semantics.

`{{name}}` is replaced by the value HTML-escaped (as Handlebars and SES do), `{{{name}}}`
by the raw value. A name missing from the data renders as an empty string (SES would fail
the message instead; the sender's DefaultTemplateData gives every name a value, so the two
agree for our templates). Any other Handlebars construct ({{#if}}, partials, ...) is an
error here, so the templates cannot silently grow beyond what this renderer checks.

Templates live in `templates/<action>/` as `subject.txt`, `body.txt` and `body.html`, or in
a folder of your own with the same layout (MAILROOM_TEMPLATES_DIR). Every folder is an
action, named as in the registry (`actions`): the templates need no code and no database.
They are all checked at start (`load_every`), and a problem is one line that names the file,
the line and what is supported (`exit_on_error`), never a traceback in the middle of the run.

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
subfolder `<action>/<locale>/` (`pt`, `pt-BR`) with the same three files is another one.
`locales` lists an action's; each action has the locales it has (one may have `pt` and another
not), and a recipient's locale is resolved per action by `resolve_locale`: `pt-BR`, then
`pt`, then the default, so every email has a template in some language. The SES template of
each action and locale is named by `ses_template_name`.
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
from typing import NoReturn, TypeVar

import css_inline

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.resources import resource_dir
from mailroom.wire import Record

_TAG = re.compile(r"\{\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\}|\{\{\s*([^{}]*?)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The characters Handlebars' escapeExpression replaces.
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "`": "&#x60;", "=": "&#x3D;"}
_ESCAPE_RE = re.compile("[&<>\"'`=]")

FILES = {"subject": "subject.txt", "text": "body.txt", "html": "body.html"}
SUPPORTED = "supported: {{name}} (HTML-escaped) and {{{name}}} (raw), a name being letters, digits and _"
LAYOUT = (
    "a templates folder holds a folder per action (activation/, password_recovery/, ...), each with "
    "subject.txt, body.txt and body.html, and a folder per other locale (pt/, ...) with the same three"
)
TEMPLATE_EXIT_STATUS = 2

DEFAULT_LOCALE = "en"
# A folder of the templates folder is an action when its name is one (the registry's rule, actions.name);
# a folder of an action's folder is a locale: a BCP 47 tag (language, then subtags: pt, pt-BR, zh-Hant-TW).
ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
# The SES templates of the two original actions keep the names their settings give; another action's is
# `<name>v1`, and a locale other than the default appends `-<locale>` (activationv1-pt, magic_linkv1-pt-BR).
SES_NAME_SUFFIX = "v1"
SES_NAME_MAX = 64  # SES: 1 to 64 ASCII letters, digits, _ and -
T = TypeVar("T")

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
    """One action's subject, text body and HTML body in one locale, as pushed to SES."""

    action: str
    subject: str
    text: str
    html: str
    locale: str = DEFAULT_LOCALE

    def render(self, data: Mapping[str, object]) -> dict[str, str]:
        return {"subject": render(self.subject, data), "text": render(self.text, data), "html": render(self.html, data)}


@dataclass(frozen=True)
class TemplateSpec:
    """What an action's templates get, from its registry row: `link` (the email carries the signed
    link, `{{secret}}`; false for an email that only informs, such as welcome) and `code` (the
    action signs the 5-digit code, which the email shows: password recovery)."""

    link: bool = True
    code: bool = False

    def variables(self) -> frozenset[str]:
        """The names the sender's template data holds for such an action: the recipient's (login,
        login_html, secret, and code when signed), app_url, and redirect_prefix (empty unless a
        staging sender redirects). `secret` is there even without a link: every record carries one."""
        return frozenset(message_data("", "", "" if self.code else None)) | {"app_url", "redirect_prefix"}


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


def locale_dir(action: str, locale: str = DEFAULT_LOCALE, directory: Path | None = None) -> Path:
    """Where `action`'s files for `locale` live: `<action>/` for the default, `<action>/<locale>/` else."""
    base = template_dir(directory) / action
    return base if locale == DEFAULT_LOCALE else base / locale


def actions(directory: Path | None = None) -> list[str]:
    """The actions the templates folder has a folder for, sorted: each folder named as an action is one
    (`activation`, `magic_link`, an app's own `order_shipped`); others (`.git`) are not."""
    root = template_dir(directory)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and ACTION_NAME.match(p.name))


def locales(action: str, directory: Path | None = None) -> list[str]:
    """The locales `action` has: the default first, then each `<action>/<locale>/` folder, sorted."""
    base = template_dir(directory) / action
    found = [p.name for p in base.iterdir() if p.is_dir() and _LOCALE.match(p.name)] if base.is_dir() else []
    return [DEFAULT_LOCALE, *sorted(name for name in found if name != DEFAULT_LOCALE)]


def resolve_locale(available: Iterable[str], wanted: str | None, default: str = DEFAULT_LOCALE) -> str:
    """The locale of `available` to send to someone who reads `wanted`: the tag itself, else the
    tag with its last subtag cut off, and so on (`pt-BR` -> `pt`; RFC 4647's lookup), else `default`.

    Tags compare case-insensitively (`pt-br` finds the folder `pt-BR`, which is returned as it is
    spelled), and `_` counts as `-` (`pt_BR`, a POSIX locale's spelling). No locale (None or '')
    is the default; so is a tag that leads to no folder (`fr` when there is no `fr/`)."""
    by_key = {name.lower(): name for name in available}
    by_key.setdefault(default.lower(), default)
    tag = (wanted or "").strip().replace("_", "-").lower()
    while tag:
        if tag in by_key:
            return by_key[tag]
        tag = tag.rpartition("-")[0]
        if len(tag) > 2 and tag[-2] == "-":  # a singleton (`x` of `x-private`) goes with what follows it
            tag = tag[:-2]
    return default


def pick(
    loaded: Mapping[tuple[str, str], T], action: str, wanted: str | None, default: str = DEFAULT_LOCALE
) -> T | None:
    """What `loaded` (keyed by action and locale, as `load_every` returns) holds for `action` in the
    locale `wanted` resolves to (`resolve_locale`), or None when the action has no folder."""
    locale = resolve_locale((loc for name, loc in loaded if name == action), wanted, default)
    return loaded.get((action, locale))


def ses_template_name(action: str, locale: str, configured: Mapping[str, str] | None = None) -> str:
    """The SES template of `action` in `locale`: `configured[action]` (the settings'
    MAILROOM_SES_TEMPLATE_ACTIVATION and _RECOVERY name the original two) or `<action>v1`, with
    `-<locale>` appended for a locale other than the default (`activationv1-pt`, `magic_linkv1-pt-BR`)."""
    base = (configured or {}).get(action) or f"{action}{SES_NAME_SUFFIX}"
    return base if locale == DEFAULT_LOCALE else f"{base}-{locale}"


def load(action: str, directory: Path | None = None, locale: str = DEFAULT_LOCALE) -> EmailTemplate:
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
    return EmailTemplate(action, parts["subject"].strip(), parts["text"], html_part, locale)


def load_every(directory: Path | None = None) -> dict[tuple[str, str], EmailTemplate]:
    """Every action's template in every locale it has, keyed by (action, locale), all checked;
    TemplateError for the first problem."""
    return {
        (name, locale): load(name, directory, locale)
        for name in actions(directory)
        for locale in locales(name, directory)
    }


def load_all(directory: Path | None = None) -> dict[str, EmailTemplate]:
    """The default-locale templates of activation and password_recovery, by name; every action
    and locale is loaded and checked too (the sender calls this before reading stdin, and picks
    each record's template by action and locale in sender/catalog.py), and TemplateError names
    the first problem."""
    every = load_every(directory)
    return {
        action.name: every.get((action.name, DEFAULT_LOCALE)) or load(action.name, directory)
        for action in (ACTIVATION, PASSWORD_RECOVERY)
    }


def exit_on_error(program: str, error: TemplateError) -> NoReturn:
    """Print the one-line template error and exit with status 2 (as for invalid configuration)."""
    print(f"{program}: invalid template: {error}", file=sys.stderr)
    raise SystemExit(TEMPLATE_EXIT_STATUS)


def message_data(login: str, secret: str, code: str | None = None, redirect_prefix: str = "") -> dict[str, str]:
    """One recipient's variables: login, its HTML-escaped form, the signed token (secret), the code
    when the action signs one, and the subject prefix of an email redirected by MAILROOM_REDIRECT_TO."""
    data = {"login": login, "login_html": html.escape(login, quote=True), "secret": secret}
    if code is not None:
        data["code"] = code
    if redirect_prefix:
        data["redirect_prefix"] = redirect_prefix
    return data


def template_data(record: Record, redirect_prefix: str = "") -> str:
    """ReplacementTemplateData: `message_data` of the record, as JSON. The code goes with every
    action but activation: the sender has no registry to tell which actions sign it, and an
    email may show it."""
    code = record.code if record.action.number != ACTIVATION.number else None
    return _JSON.encode(message_data(record.login, record.secret, code, redirect_prefix))


def default_template_data(app_url: str) -> str:
    """DefaultTemplateData: every variable has a value, so SES never fails on a missing one."""
    return _JSON.encode({**dict.fromkeys(TEMPLATE_VARIABLES, ""), "app_url": app_url})
