"""What the shipped emails promise about expiry matches the schema: a token expires a fixed
time after it was created (tokens.expires_at, from the action's lifetime), whenever its email
was sent; and an email without a link promises nothing."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from mailroom import template_checks, templates
from mailroom.template_fixtures import Sample

# The registry's lifetimes (migration 0008's `actions.lifetime`; activation's and recovery's are
# read from 0001 below) and how each locale words them, counted from the token's creation.
LIFETIMES = {"email_change": "1 hour", "magic_link": "15 minutes", "invitation": "7 days"}
WORDS = {
    "en": {"minutes": "minutes", "hour": "hour", "days": "days"},
    "pt": {"minutes": "minutos", "hour": "hora", "days": "dias"},
}
SINCE_CREATION = {
    ("activation", "en"): "after it was created",
    ("password_recovery", "en"): "after the reset was requested",
    ("email_change", "en"): "after the change was requested",
    ("magic_link", "en"): "after it was requested",
    ("invitation", "en"): "after the invitation was made",
    ("activation", "pt"): "depois de ter sido criado",
    ("password_recovery", "pt"): "depois do pedido de redefinição",
    ("email_change", "pt"): "depois do pedido de troca",
    ("magic_link", "pt"): "depois de ter sido pedido",
    ("invitation", "pt"): "depois de o convite ter sido feito",
}
SENT = {"en": "after this email was sent", "pt": "depois do envio"}


def _words(text: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def _lifetime(action: str) -> str:
    if action in LIFETIMES:
        return LIFETIMES[action]
    schema = (ROOT / "migrations" / "0001_schema.sql").read_text()
    (minutes,) = re.findall(r"expires_at\s+timestamptz NOT NULL DEFAULT now\(\) \+ interval '(\d+) minutes'", schema)
    return f"{minutes} minutes"


@pytest.mark.parametrize("action,locale", sorted(SINCE_CREATION))
def test_the_emails_count_the_expiry_from_the_tokens_creation_as_the_schema_does(action: str, locale: str) -> None:
    number, unit = _lifetime(action).split()
    spec = template_checks.STANDARD[action]
    message = templates.load(action, None, locale).render(Sample("ada", "ada").data("https://app.example.com", spec))
    for part in (message["text"], message["html"]):
        words = _words(part)
        assert SENT[locale] not in words  # a slow email has less time left, not more
        assert f"{number} {WORDS[locale][unit]} {SINCE_CREATION[action, locale]}" in words


def test_every_action_with_a_link_says_when_it_expires_and_the_welcome_email_has_nothing_to_expire() -> None:
    linked = {action for action, spec in template_checks.STANDARD.items() if spec.link}
    assert {action for action, _ in SINCE_CREATION} == linked
    for locale in ("en", "pt"):
        welcome = templates.load("welcome", None, locale)
        assert not re.search(r"expir", welcome.text + welcome.html)
