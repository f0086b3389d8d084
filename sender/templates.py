"""A local renderer for the Handlebars subset our SES templates use, with SES's semantics.

`{{name}}` is replaced by the value HTML-escaped (as Handlebars and SES do), `{{{name}}}`
by the raw value. A name missing from the data renders as an empty string (SES would fail
the message instead; the sender's DefaultTemplateData gives every name a value, so the two
agree for our templates). Any other Handlebars construct ({{#if}}, partials, ...) is an
error here, so the templates cannot silently grow beyond what this renderer checks.

Templates live in `templates/<action>/` as `subject.txt`, `body.txt` and `body.html`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailroom.resources import resource_dir
from mailroom.signing import Action

_TAG = re.compile(r"\{\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\}|\{\{\s*([^{}]*?)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The characters Handlebars' escapeExpression replaces.
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "`": "&#x60;", "=": "&#x3D;"}
_ESCAPE_RE = re.compile("[&<>\"'`=]")

FILES = {"subject": "subject.txt", "text": "body.txt", "html": "body.html"}


class TemplateError(ValueError):
    """A template uses something outside the supported subset."""


def escape(value: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value)


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

    action: Action
    subject: str
    text: str
    html: str

    def render(self, data: Mapping[str, object]) -> dict[str, str]:
        return {"subject": render(self.subject, data), "text": render(self.text, data), "html": render(self.html, data)}


def template_dir() -> Path:
    return resource_dir("templates")


def load(action: Action, directory: Path | None = None) -> EmailTemplate:
    """Read `<directory>/<action>/`; raises FileNotFoundError when a part is missing."""
    base = (directory or template_dir()) / action.db_name
    parts = {key: (base / name).read_text(encoding="utf-8") for key, name in FILES.items()}
    template = EmailTemplate(action, parts["subject"].strip(), parts["text"], parts["html"])
    for part in (template.subject, template.text, template.html):
        render(part, {})  # validates the subset
    return template


def load_all(directory: Path | None = None) -> dict[Action, EmailTemplate] | None:
    """Every action's template, or None when the templates are not available (debug prints less)."""
    try:
        return {action: load(action, directory) for action in Action}
    except (FileNotFoundError, TemplateError):
        return None
