"""The README is the short front page: the two commands first, the rest in the docs site."""

from __future__ import annotations

from pathlib import Path

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def test_the_readme_puts_the_two_commands_at_the_top() -> None:
    head = README[:1500]
    assert "make demo" in head and "make test" in head


def test_the_readme_fits_on_a_few_screens_and_links_into_the_site() -> None:
    assert len(README.splitlines()) <= 200
    for page in ("tutorial/first-token.md", "how-to/integrate.md", "reference/settings.md"):
        assert f"(docs/{page})" in README, page
