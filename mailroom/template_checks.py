"""`mailroom templates check`: what must hold before a template is pushed or an email is sent.

Each problem is one line naming the file and what is wrong, and all of them are reported at
once (an author fixes a template in one pass). The checks, on every action folder in every
locale it has (see `mailroom.templates.actions` and `.locales`):

- the three parts exist (subject.txt, body.txt, body.html) in the default locale and in each
  locale folder (an action need not have every locale: a recipient's locale falls back, see
  `resolve_locale`; but a locale folder is complete, or its recipients would get a mix), and stay
  in the supported Handlebars subset, and inlining the CSS keeps every placeholder where it was;
- every variable a part uses is in the template data the sender gives that action (a `{{code}}`
  in the activation email would be empty);
- an action with a link (its registry row's `link`) has the signed token `{{secret}}` in its text
  and HTML parts; one without (welcome) uses it nowhere;
- every link is absolute `https://`, or starts with the app URL (`{{app_url}}`), whose scheme
  the operator chose (MAILROOM_APP_URL);
- rendered with each fixture sample, the subject is one line of at most 78 characters (RFC 5322's
  line length: longer subjects are folded, and clients cut them) and the HTML part is under
  100 KB (Gmail clips a message's HTML at 102 KB and hides the rest, the links included).

`mailroom templates push` refuses to push when any fails, and the sender runs them in its
preflight (`preflight_checks`), so a template that breaks one of them sends nothing.

The checks run without a database, so what the registry says of the six standard actions'
templates is known here (STANDARD); an app's own action says it in its fixtures.json
(`"link": false`, `"code": true`), else it has a link and no code (the registry's defaults).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from mailroom import templates
from mailroom.actions import STANDARD_SPECS
from mailroom.checks import Check
from mailroom.template_fixtures import FIXTURES_FILE, Fixtures, Sample, fixtures
from mailroom.templates import FILES, TemplateError, TemplateSpec, locale_dir, locales

SUBJECT_MAX_CHARS = 78
HTML_MAX_BYTES = 100 * 1024
LINK_ATTRIBUTES = frozenset({"href", "src", "action", "background", "poster"})
_APP_URL_PREFIX = re.compile(r"^\{\{\{?\s*app_url\s*\}?\}\}")
_TEXT_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://\S*")
LINK_VARIABLE = "secret"  # the signed token: a link to the app carries it

# The standard actions' registry rows, as far as templates care (`link` and `signs_code`), from
# mailroom.actions' shipped specs: the checks know them without a database.
STANDARD: dict[str, TemplateSpec] = {
    name: TemplateSpec(link=spec.link, code=spec.signs_code) for name, spec in STANDARD_SPECS.items()
}


@dataclass(frozen=True)
class Problem:
    where: str
    what: str

    def line(self) -> str:
        return f"{self.where}: {self.what}"


def spec(action: str, found: Fixtures | None = None) -> TemplateSpec:
    """What `action`'s templates get: a standard action's registry row (STANDARD), else what its
    fixtures file says (`link`, `code`), else a link and no code."""
    if action in STANDARD:
        return STANDARD[action]
    defaults = TemplateSpec()
    if found is None:
        return defaults
    return TemplateSpec(
        link=defaults.link if found.link is None else found.link,
        code=defaults.code if found.code is None else found.code,
    )


def spec_of(action: str, directory: Path | None = None) -> TemplateSpec:
    """`spec` of `action` with its fixtures file read (a bad file counts as saying nothing)."""
    try:
        return spec(action, fixtures(action, directory))
    except TemplateError:
        return spec(action)


def action_variables(action: str, directory: Path | None = None) -> frozenset[str]:
    """The names the sender's template data holds for `action` (its record's, app_url, and the
    redirect_prefix that a staging sender fills, empty otherwise)."""
    return spec_of(action, directory).variables()


def run(directory: Path | None, app_url: str) -> list[Problem]:
    """Every problem of every action folder's template in every locale it has, in a stable order."""
    root = templates.template_dir(directory)
    problems: list[Problem] = []
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.name.startswith((".", "_")) and not templates.ACTION_NAME.match(path.name):
            problems.append(
                Problem(
                    str(path),
                    "not an action: a folder of the templates folder is named as its action "
                    "(a lower-case letter, then lower-case letters, digits and _)",
                )
            )
    names = templates.actions(directory)
    if not names:
        problems.append(Problem(str(root), f"holds no action folder ({templates.LAYOUT})"))
    for action in names:
        try:
            found: Fixtures | None = fixtures(action, directory)
        except TemplateError as exc:
            problems.append(Problem(str(root / action), str(exc)))
            found = None
        problems.extend(_spec_problems(action, found, root))
        if (root / action / templates.DEFAULT_LOCALE).is_dir():
            problems.append(
                Problem(
                    str(root / action / templates.DEFAULT_LOCALE),
                    f"{templates.DEFAULT_LOCALE} is the default locale: its files go straight in {action}/, "
                    "not in a folder of their own (which would never be used)",
                )
            )
        action_spec = spec(action, found)
        samples = found.samples if found is not None else []
        for locale in locales(action, directory):
            problems.extend(_check_one(action, action_spec, locale, directory, app_url, samples))
    return problems


def _spec_problems(action: str, found: Fixtures | None, root: Path) -> Iterator[Problem]:
    """A standard action's fixtures file that says otherwise than its registry row."""
    if found is None or action not in STANDARD:
        return
    for key, said in (("link", found.link), ("code", found.code)):
        known = getattr(STANDARD[action], key)
        if said is not None and said != known:
            yield Problem(
                str(root / action / FIXTURES_FILE),
                f'"{key}": {str(said).lower()} contradicts the registry, where {action} has '
                f"{'signs_code' if key == 'code' else 'link'} = {str(known).lower()}; remove it",
            )


def _check_one(
    action: str, action_spec: TemplateSpec, locale: str, directory: Path | None, app_url: str, samples: list[Sample]
) -> Iterator[Problem]:
    base = locale_dir(action, locale, directory)
    parts: dict[str, str] = {}
    for key, name in FILES.items():
        path = base / name
        try:
            parts[key] = path.read_text(encoding="utf-8")
            templates.check(parts[key], str(path))
        except FileNotFoundError:
            yield Problem(
                str(path),
                f"missing: every action needs subject.txt, body.txt and body.html in the default locale and "
                f"in each locale folder it has (locale {locale})",
            )
            parts.pop(key, None)
        except (OSError, UnicodeDecodeError) as exc:
            yield Problem(str(path), f"cannot be read: {exc}")
            parts.pop(key, None)
        except TemplateError as exc:
            yield Problem(str(path), _without_path(exc, path))
            parts.pop(key, None)
    known = action_spec.variables()
    for key, text in parts.items():
        for name in sorted(templates.variables(text) - known):
            yield Problem(
                str(base / FILES[key]),
                f"{{{{{name}}}}} is not in the template data of {action} "
                f"(it has {', '.join(sorted(known))}); it would render empty",
            )
    yield from _link_problems(action, action_spec, base, parts)
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
        template = templates.load(action, directory, locale)
    except TemplateError as exc:  # inlining moved a placeholder
        yield Problem(str(base / FILES["html"]), _without_path(exc, base / FILES["html"]))
        return
    yield from _rendered_problems(template, base, action_spec, app_url, samples)


def _link_problems(action: str, action_spec: TemplateSpec, base: Path, parts: dict[str, str]) -> Iterator[Problem]:
    """The signed link where the registry says the email has one (text and HTML), and nowhere else."""
    for key, text in parts.items():
        uses = LINK_VARIABLE in templates.variables(text)
        if action_spec.link and key != "subject" and not uses:
            yield Problem(
                str(base / FILES[key]),
                f"has no link with the signed token: {action} carries a link (link = true in the registry); "
                f"add {{{{app_url}}}}/...?token={{{{{LINK_VARIABLE}}}}}",
            )
        elif uses and (not action_spec.link or key == "subject"):
            why = "an email without a link (link = false in the registry)" if not action_spec.link else "a subject"
            yield Problem(
                str(base / FILES[key]),
                f"uses {{{{{LINK_VARIABLE}}}}}, the signed token, in {why}: remove it",
            )


def _without_path(error: TemplateError, path: Path) -> str:
    """A TemplateError's text after the file it names (the Problem names it)."""
    return str(error).removeprefix(f"{path}, ").removeprefix(f"{path}: ")


def _rendered_problems(
    template: templates.EmailTemplate, base: Path, action_spec: TemplateSpec, app_url: str, samples: list[Sample]
) -> Iterator[Problem]:
    subject_fault = html_fault = False
    for sample in samples:
        message = template.render(sample.data(app_url, action_spec))
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
    problems = run(directory, app_url)
    if not problems:
        return [Check("templates", True, "every action and locale passes `mailroom templates check`")]
    fix = "correct the template (`mailroom templates check` lists every problem)"
    return [Check("templates", False, problem.line(), fix) for problem in problems]
