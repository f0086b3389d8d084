"""What the shipped emails promise about expiry matches the schema: a token expires a fixed
time after it was created (tokens.expires_at), whenever its email was sent."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from mailroom import templates
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, Action
from mailroom.template_fixtures import Sample


def _words(text: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


@pytest.mark.parametrize("action", [ACTIVATION, PASSWORD_RECOVERY])
def test_the_emails_count_the_expiry_from_the_tokens_creation_as_the_schema_does(action: Action) -> None:
    schema = (ROOT / "migrations" / "0001_schema.sql").read_text()
    (lifetime,) = re.findall(r"expires_at\s+timestamptz NOT NULL DEFAULT now\(\) \+ interval '(\d+) minutes'", schema)
    message = templates.load(action).render(Sample("ada", "ada").data(action, "https://app.example.com"))
    for part in (message["text"], message["html"]):
        words = _words(part)
        assert "after this email was sent" not in words  # a slow email has less time left, not more
        expected = "after it was created" if action is ACTIVATION else "after the reset was requested"
        assert f"{lifetime} minutes {expected}" in words
