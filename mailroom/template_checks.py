"""`mailroom templates check`: what must hold before a template is pushed or an email is sent.

Each problem is one line naming the file and what is wrong, and all of them are reported at
once (an author fixes a template in one pass). The checks, on every action in every locale
(see `mailroom.templates.locales`):

- the three parts exist (subject.txt, body.txt, body.html) and stay in the supported
  Handlebars subset, and inlining the CSS keeps every placeholder where it was;
- every variable a part uses is in the template data the sender gives that action (a `{{code}}`
  in the activation email would be empty);
- every link is absolute `https://`, or starts with the app URL (`{{app_url}}`), whose scheme
  the operator chose (MAILROOM_APP_URL);
- rendered with each fixture sample, the subject is one line of at most 78 characters (RFC 5322's
  line length: longer subjects are folded, and clients cut them) and the HTML part is under
  100 KB (Gmail clips a message's HTML at 102 KB and hides the rest, the links included).

`mailroom templates push` refuses to push when any fails, and the sender runs them in its
preflight (`preflight_checks`), so a template that breaks one of them sends nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from mailroom import templates
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, Action
from mailroom.checks import Check
from mailroom.template_fixtures import Sample, samples
from mailroom.templates import FILES, TemplateError, locale_dir, locales, template_data
from mailroom.wire import Record

SUBJECT_MAX_CHARS = 78
HTML_MAX_BYTES = 100 * 1024
LINK_ATTRIBUTES = frozenset({"href", "src", "action", "background", "poster"})
_APP_URL_PREFIX = re.compile(r"^\{\{\{?\s*app_url\s*\}?\}\}")
_TEXT_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://\S*")


@dataclass(frozen=True)
class Problem:
    where: str
    what: str

    def line(self) -> str:
        return f"{self.where}: {self.what}"


_CHECKED = (ACTIVATION, PASSWORD_RECOVERY)  # the actions whose templates are checked


def action_variables(action: Action) -> frozenset[str]:
    """The names the sender's template data holds for `action` (its record's, app_url, and the
    redirect_prefix that a staging sender fills, empty otherwise)."""
    record = Record(action, "a@example.com", "a", "s", "12345")
    return frozenset(json.loads(template_data(record))) | {"app_url", "redirect_prefix"}


def run(directory: Path | None, app_url: str, every_locale: bool = True) -> list[Problem]:
    """Every problem of every action's template in every locale, in a stable order. Without
    `every_locale` (the sender's preflight), only the locales each action has: the templates
    that can be sent (a recipient of a missing locale gets the fallback's)."""
    everywhere = sorted({loc for action in _CHECKED for loc in locales(action.name, directory)})
    everywhere.sort(key=lambda loc: loc != templates.DEFAULT_LOCALE)
    problems: list[Problem] = []
    for action in _CHECKED:
        try:
            fixtures = samples(action, directory)
        except TemplateError as exc:
            problems.append(Problem(str(templates.template_dir(directory) / action.name), str(exc)))
            fixtures = []
        for locale in everywhere if every_locale else locales(action.name, directory):
            problems.extend(_check_one(action, locale, directory, app_url, fixtures))
    return problems


def _check_one(
    action: Action, locale: str, directory: Path | None, app_url: str, fixtures: list[Sample]
) -> Iterator[Problem]:
    base = locale_dir(action.name, locale, directory)
    parts: dict[str, str] = {}
    for key, name in FILES.items():
        path = base / name
        try:
            parts[key] = path.read_text(encoding="utf-8")
            templates.check(parts[key], str(path))
        except FileNotFoundError:
            yield Problem(
                str(path), f"missing: every action needs subject.txt, body.txt and body.html in locale {locale}"
            )
            parts.pop(key, None)
        except (OSError, UnicodeDecodeError) as exc:
            yield Problem(str(path), f"cannot be read: {exc}")
            parts.pop(key, None)
        except TemplateError as exc:
            yield Problem(str(path), _without_path(exc, path))
            parts.pop(key, None)
    known = action_variables(action)
    for key, text in parts.items():
        for name in sorted(templates.variables(text) - known):
            yield Problem(
                str(base / FILES[key]),
                f"{{{{{name}}}}} is not in the template data of {action.name} "
                f"(it has {', '.join(sorted(known))}); it would render empty",
            )
    if "html" in parts:
        for link in html_links(parts["html"]):
            if not _is_allowed_link(link):
                yield Problem(str(base / FILES["html"]), f"link {link!r} {_link_fault(link)}")
    if "text" in parts:
        for match in _TEXT_URL.finditer(parts["text"]):
            if match.group(1).lower() != "https":
                yield Problem(str(base / FILES["text"]), f"link {match.group(0)!r} {_link_fault(match.group(0))}")
    if set(parts) != set(FILES):
        return
    try:
        template = templates.load(action.name, directory, locale)
    except TemplateError as exc:  # inlining moved a placeholder
        yield Problem(str(base / FILES["html"]), _without_path(exc, base / FILES["html"]))
        return
    yield from _rendered_problems(template, base, action, app_url, fixtures)


def _without_path(error: TemplateError, path: Path) -> str:
    """A TemplateError's text after the file it names (the Problem names it)."""
    return str(error).removeprefix(f"{path}, ").removeprefix(f"{path}: ")


def _rendered_problems(
    template: templates.EmailTemplate, base: Path, action: Action, app_url: str, fixtures: list[Sample]
) -> Iterator[Problem]:
    subject_fault = html_fault = False
    for sample in fixtures:
        message = template.render(sample.data(action, app_url))
        subject = message["subject"]
        if not subject_fault and ("\n" in subject or len(subject) > SUBJECT_MAX_CHARS):
            subject_fault = True
            shape = f"{subject.count(chr(10)) + 1} lines" if "\n" in subject else f"{len(subject)} characters"
            yield Problem(
                str(base / FILES["subject"]),
                f"rendered with the fixture {sample.name!r} the subject is {shape}; "
                f"it must be one line of at most {SUBJECT_MAX_CHARS} characters",
            )
        size = len(message["html"].encode("utf-8"))
        if not html_fault and size >= HTML_MAX_BYTES:
            html_fault = True
            yield Problem(
                str(base / FILES["html"]),
                f"rendered with the fixture {sample.name!r} and its CSS inlined the HTML is {size} bytes; "
                f"keep it under {HTML_MAX_BYTES} (Gmail clips a message's HTML at 102 KB)",
            )


def _is_allowed_link(link: str) -> bool:
    return link.lower().startswith("https://") or bool(_APP_URL_PREFIX.match(link))


def _link_fault(link: str) -> str:
    if "://" in link or ":" in link.split("/", 1)[0]:
        return "is not https: use https://, or start it with {{app_url}}"
    return "is not absolute (an email has no page to be relative to): use https://, or start it with {{app_url}}"


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links.extend(value.strip() for name, value in attrs if name in LINK_ATTRIBUTES and value is not None)

    handle_startendtag = handle_starttag


def html_links(html_text: str) -> list[str]:
    """The URLs of an HTML part's links and embedded resources (href, src, ...), in order."""
    parser = _LinkCollector()
    parser.feed(html_text)
    parser.close()
    return parser.links


def preflight_checks(directory: Path | None, app_url: str) -> list[Check]:
    """The sender's preflight view: one passing check, or one failing check per problem."""
    problems = run(directory, app_url, every_locale=False)
    if not problems:
        return [Check("templates", True, "every action and locale passes `mailroom templates check`")]
    fix = "correct the template (`mailroom templates check` lists every problem)"
    return [Check("templates", False, problem.line(), fix) for problem in problems]
