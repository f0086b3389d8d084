"""The README documents what the code does."""

from __future__ import annotations

from pathlib import Path

from mailroom import settings

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def test_the_readme_configuration_table_lists_every_variable_with_its_default() -> None:
    # Regenerate with: .venv/bin/python -c "from mailroom.settings import markdown_table; print(markdown_table())"
    assert settings.markdown_table() in README


def test_the_readme_puts_the_two_commands_at_the_top() -> None:
    head = README[:1500]
    assert "make demo" in head and "make test" in head
