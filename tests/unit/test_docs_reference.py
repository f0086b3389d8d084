"""The settings and CLI reference pages are generated from the code, so they cannot drift from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from mailroom import settings

DOCS = Path(__file__).parents[2] / "docs"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_settings_page_shows_the_registry_table_with_every_variable_and_who_reads_it() -> None:
    page = (DOCS / "reference" / "settings.md").read_text(encoding="utf-8")
    assert "<!-- generated: settings-table -->" in page
    rendered = _hook().render(page, "reference/settings.md")
    assert settings.markdown_table() in rendered
    for name in settings.VARIABLES:
        assert f"| `{name}` | `" in rendered.split("### Who reads what", 1)[1], f"no command reads {name}?"


def test_the_cli_page_documents_every_program_and_subcommand_with_its_help() -> None:
    hook = _hook()
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert hook.missing_cli_markers(page) == []
    rendered = hook.render(page, "reference/cli.md")
    for path, parser in hook.all_commands().items():
        assert f"$ {' '.join(path)} --help\n{hook.help_text(parser)}\n" in rendered, path
    assert "MAILROOM_SES_SOURCE" in rendered and "--drain" in rendered
