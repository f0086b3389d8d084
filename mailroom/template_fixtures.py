"""The sample data the templates are previewed and checked with (`templates/<action>/fixtures.json`).

Each action's fixtures are a short list of named samples, one recipient each. They are editable
next to the templates, and the shipped ones are hostile on purpose: a login holding `<script>`,
quotes, right-to-left text and a 64-character name, so a template that forgets to escape, or a
layout that breaks on a long name, shows it in `mailroom templates preview` and fails
`mailroom templates check` (a subject too long once filled in). A templates folder without a
fixtures file is previewed and checked with DEFAULT_SAMPLES (the same values).

The data is built exactly as the sender builds it (`template_data` over
`default_template_data`), so what the preview shows is what a recipient gets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mailroom.actions import Action
from mailroom.templates import TemplateError, default_template_data, template_data, template_dir
from mailroom.wire import Record

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


@dataclass(frozen=True)
class Sample:
    """One recipient to render a template for."""

    name: str
    login: str
    email: str = SAMPLE_EMAIL
    code: str = SAMPLE_CODE
    secret: str = SAMPLE_SECRET

    def data(self, action: Action, app_url: str) -> dict[str, str]:
        """The template data the sender would send for this recipient (defaults, then the record's)."""
        record = Record(action, self.email, self.login, self.secret, self.code)
        merged: dict[str, str] = {**json.loads(default_template_data(app_url)), **json.loads(template_data(record))}
        return merged


DEFAULT_SAMPLES = (
    Sample("script and quotes", '<script>alert("pwned")</script> O\'Brien & "Ada"'),
    Sample("right-to-left", "مريم الأحمد"),
    Sample("64 characters", "Maximiliana-Alexandrina Konstantinopoulou-Wolfeschlegelsteinhause"[:64]),
)


def fixtures_path(action: Action, directory: Path | None = None) -> Path:
    return template_dir(directory) / action.name / FIXTURES_FILE


def samples(action: Action, directory: Path | None = None) -> list[Sample]:
    """The action's samples from its fixtures file, or DEFAULT_SAMPLES when it has none;
    TemplateError naming the file for one that is not valid JSON of the expected shape."""
    path = fixtures_path(action, directory)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return list(DEFAULT_SAMPLES)
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
    return found
