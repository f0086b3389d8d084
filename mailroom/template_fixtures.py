"""The sample data the templates are previewed and checked with (`templates/<action>/fixtures.json`).

Each action's fixtures are a short list of named samples, one recipient each. They are editable
next to the templates, and the shipped ones are hostile on purpose: a login holding `<script>`,
quotes, right-to-left text and a 64-character name, so a template that forgets to escape, or a
layout that breaks on a long name, shows it in `mailroom templates preview` and fails
`mailroom templates check` (a subject too long once filled in). A templates folder without a
fixtures file is previewed and checked with DEFAULT_SAMPLES (the same values).

An action of the app's own (not one of the six standard ones, whose registry rows the checks
know) may say there what its registry row says of its templates, since the checks run without a
database: `"link": false` (an email without the signed link) and `"code": true` (it shows the
signed code). `Fixtures.link` and `.code` are None when the file does not say.

The data is built exactly as the sender builds it (`template_data` over
`default_template_data`), so what the preview shows is what a recipient gets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mailroom.templates import TemplateError, TemplateSpec, default_template_data, message_data, template_dir

FIXTURES_FILE = "fixtures.json"
# A well-formed signed token (its signature matches no key): the links look real.
SAMPLE_SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8aH0JcHFNfvoS14NYH1nxRRX8Z5XBVz34bO5O-ngKuFQ"
SAMPLE_CODE = "12345"
SAMPLE_EMAIL = "ada@example.com"
FIELDS = ("name", "login", "email", "code", "secret")
FORMAT = (
    'expected {"samples": [{"name": "...", "login": "...", "email": "...", "code": "...", "secret": "..."}, ...]} '
    "with name and login required, every value a string"
)
OPTIONS = ("link", "code")  # what an app's own action says of its templates (true or false)


@dataclass(frozen=True)
class Sample:
    """One recipient to render a template for."""

    name: str
    login: str
    email: str = SAMPLE_EMAIL
    code: str = SAMPLE_CODE
    secret: str = SAMPLE_SECRET

    def data(self, app_url: str, spec: TemplateSpec | None = None) -> dict[str, str]:
        """The template data the sender would send this recipient of an action of `spec` (the
        defaults, then the record's: the code only when the action signs one)."""
        code = self.code if spec is not None and spec.code else None
        return {**json.loads(default_template_data(app_url)), **message_data(self.login, self.secret, code)}


DEFAULT_SAMPLES = (
    Sample("script and quotes", '<script>alert("pwned")</script> O\'Brien & "Ada"'),
    Sample("right-to-left", "مريم الأحمد"),
    Sample("64 characters", "Maximiliana-Alexandrina Konstantinopoulou-Wolfeschlegelsteinhause"[:64]),
)


@dataclass(frozen=True)
class Fixtures:
    """An action's fixtures file: its samples, and what it says of the action's templates."""

    samples: list[Sample]
    link: bool | None = None
    code: bool | None = None


def fixtures_path(action: str, directory: Path | None = None) -> Path:
    return template_dir(directory) / action / FIXTURES_FILE


def samples(action: str, directory: Path | None = None) -> list[Sample]:
    """The action's samples from its fixtures file, or DEFAULT_SAMPLES when it has none;
    TemplateError naming the file for one that is not valid JSON of the expected shape."""
    return fixtures(action, directory).samples


def fixtures(action: str, directory: Path | None = None) -> Fixtures:
    """The action's fixtures file read and checked (DEFAULT_SAMPLES and no option when there is none);
    TemplateError naming the file for one that is not valid JSON of the expected shape."""
    path = fixtures_path(action, directory)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Fixtures(list(DEFAULT_SAMPLES))
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path} cannot be read: {exc}") from None
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    entries = document.get("samples") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise TemplateError(f"{path}: {FORMAT}")
    found = []
    for i, entry in enumerate(entries, 1):
        if (
            not isinstance(entry, dict)
            or not {"name", "login"} <= entry.keys() <= set(FIELDS)
            or not all(isinstance(v, str) for v in entry.values())
        ):
            raise TemplateError(f"{path}: sample {i}: {FORMAT}")
        found.append(Sample(**entry))
    options: dict[str, bool] = {}
    for key in sorted(document.keys() - {"samples"}):
        if key not in OPTIONS or not isinstance(document[key], bool):
            raise TemplateError(
                f"{path}: {key!r}: besides samples, a fixtures file may hold only "
                '"link": true|false and "code": true|false (what the action\'s registry row says)'
            )
        options[key] = document[key]
    return Fixtures(found, options.get("link"), options.get("code"))
