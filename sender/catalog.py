"""Which template each record is sent with: by its action's name and the recipient's locale.

The sender needs no database and no registry: a record's action name picks the templates
folder (`templates/<name>/`), its locale the subfolder, with the fallback of
`mailroom.templates.resolve_locale` (`pt-BR` -> `pt` -> the default) among the locales that
folder has. The SES template of a choice is named after it (docs/how-to/templates.md):
MAILROOM_SES_TEMPLATE_ACTIVATION and MAILROOM_SES_TEMPLATE_RECOVERY for actions 1 and 2,
`<name>v1` for the others, `-<locale>` appended for a locale other than the default
(`activationv1-pt`, `magic_linkv1-pt-BR`).

An action with no templates folder here:
- with SES, is sent with its default-locale SES template (`<name>v1`): the templates live in
  SES, pushed from wherever they are kept; if SES has no such template, its answer
  (TemplateDoesNotExist) is an operator fault, as for any missing template;
- with SMTP or the debug output (they render locally), cannot be sent until the folder is
  added: `MissingTemplates`, an operator fault (exit 75, nothing written off, the records
  stay in the journal and go out once the folder is there and the sender restarted).
Choices are made once per (action, locale) and kept: the hot path is one dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from mailroom import templates
from mailroom.actions import NAME_PATTERN, Action
from mailroom.redirect import with_subject_tag
from mailroom.templates import EmailTemplate

ACTION_NAME = re.compile(NAME_PATTERN)


class TemplatesFault(Exception):
    """A record's templates cannot be had here: the operator's to fix (exit 75, nothing written off)."""


class BadTemplate(TemplatesFault):
    """A template of a locale folder fails to load (the checks at start cover the default ones)."""


class MissingTemplates(TemplatesFault):
    """No templates folder for an action whose emails are rendered here (SMTP, debug)."""

    def __init__(self, action: Action, folder: Path) -> None:
        super().__init__(f"no templates for action {action.name}: {folder}/ does not exist")
        self.action = action
        self.folder = folder


class Choice:
    """One (action, locale) to send with: its SES template name and, where the provider renders
    locally, its template. One object per pair (compared by identity): it keys the ready queues."""

    __slots__ = ("action", "locale", "ses_name", "template")

    def __init__(self, action: Action, locale: str, ses_name: str, template: EmailTemplate | None) -> None:
        self.action = action
        self.locale = locale
        self.ses_name = ses_name
        self.template = template

    def __repr__(self) -> str:
        return f"Choice({self.action.name}, {self.locale}, {self.ses_name})"


class Catalog:
    """The choice of template for every (action, locale) a record may carry."""

    def __init__(
        self,
        ses_names: Mapping[str, str],
        directory: Path | None = None,
        *,
        local: bool = False,
        redirect: bool = False,
        default_locale: str = templates.DEFAULT_LOCALE,
    ) -> None:
        self.ses_names = dict(ses_names)
        self.directory = directory
        self.local = local  # the provider renders the templates here: a missing folder is a fault
        self.redirect = redirect  # MAILROOM_REDIRECT_TO: the subjects start with the prefix variable
        self.default_locale = default_locale
        self._chosen: dict[tuple[Action, str | None], Choice] = {}
        self._resolved: dict[tuple[Action, str], Choice] = {}

    def choose(self, action: Action, locale: str | None) -> Choice:
        """The choice for a record of `action` to a recipient of `locale` (None: the default);
        MissingTemplates when the provider renders locally and the action has no folder."""
        choice = self._chosen.get((action, locale))
        if choice is None:
            choice = self._choose(action, locale)
            self._chosen[action, locale] = choice
        return choice

    def _choose(self, action: Action, wanted: str | None) -> Choice:
        folder = templates.template_dir(self.directory) / action.name
        if not folder.is_dir():
            if self.local:
                raise MissingTemplates(action, folder)
            resolved = self.default_locale
        else:
            resolved = templates.resolve_locale(
                templates.locales(action.name, self.directory), wanted, self.default_locale
            )
        choice = self._resolved.get((action, resolved))
        if choice is None:
            template = None
            if self.local:
                try:
                    template = templates.load(action.name, self.directory, resolved)
                except templates.TemplateError as exc:
                    raise BadTemplate(str(exc)) from None
                if self.redirect:
                    template = with_subject_tag(template)
            choice = Choice(action, resolved, self._ses(action.name, resolved), template)
            self._resolved[action, resolved] = choice
        return choice

    def ses_templates(self) -> dict[str, str]:
        """The SES templates the sender may send with, by label (`magic_link (pt)`): actions 1 and 2
        in the default locale always, and every (action, locale) with a local folder: what can
        be sent, each checked once by the preflight."""
        found = {name: self._ses(name, self.default_locale) for name in ("activation", "password_recovery")}
        base = templates.template_dir(self.directory)
        folders = (
            sorted(p for p in base.iterdir() if p.is_dir() and ACTION_NAME.fullmatch(p.name)) if base.is_dir() else []
        )
        for folder in folders:
            for locale in templates.locales(folder.name, self.directory):
                label = folder.name if locale == self.default_locale else f"{folder.name} ({locale})"
                found[label] = self._ses(folder.name, locale)
        return found

    def _ses(self, name: str, locale: str) -> str:
        base = self.ses_names.get(name) or f"{name}v1"
        return base if locale == self.default_locale else f"{base}-{locale}"
