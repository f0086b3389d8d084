"""MkDocs hook: the reference pages' generated parts, built from the code at every build.

A page asks for a generated part with an HTML comment on a line of its own:

- `<!-- generated: settings-table -->`: every `MAILROOM_*` variable with its default and
  meaning (`mailroom.settings.markdown_table()`), and which command reads it;
- `<!-- generated: cli-help PROG [SUBCOMMAND ...] -->`: the `--help` of that program or
  subcommand, from the argparse parser the program itself uses.

So the settings and CLI reference cannot drift from the code. `reference/cli.md` must hold
a `cli-help` marker for every program and subcommand: a command without one fails the build.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

try:
    from mkdocs.exceptions import PluginError
except ImportError:  # the unit tests load this module where MkDocs is not installed
    PluginError = ValueError  # type: ignore[misc,assignment]

MARKER = re.compile(r"^<!-- generated: ([a-z-]+)((?: [a-z_-]+)*) -->$", re.MULTILINE)


def _parsers() -> dict[str, Callable[[], argparse.ArgumentParser]]:
    from collector.cli import build_parser as collector_parser
    from mailroom.cli import build_parser as mailroom_parser
    from sender.cli import build_parser as sender_parser

    return {"collector": collector_parser, "sender": sender_parser, "mailroom": mailroom_parser}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command path, parser) below and including `parser`."""
    yield path, parser
    for name, sub in _subcommands(parser).items():
        yield from walk(sub, (*path, name))


def all_commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    return {path: p for prog, build in _parsers().items() for path, p in walk(build(), (prog,))}


def help_text(parser: argparse.ArgumentParser) -> str:
    """`--help` as a terminal 100 columns wide shows it, whatever terminal runs the build."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return parser.format_help().rstrip()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def cli_help(path: tuple[str, ...]) -> str:
    commands = all_commands()
    if path not in commands:
        raise PluginError(f"<!-- generated: cli-help {' '.join(path)} -->: no such command")
    return f"```text\n$ {' '.join(path)} --help\n{help_text(commands[path])}\n```"


def readers() -> dict[str, list[str]]:
    """For each variable, the commands whose --help lists it (what reads it)."""
    from mailroom import settings

    found: dict[str, list[str]] = {name: [] for name in settings.VARIABLES}
    for path, parser in all_commands().items():
        epilog = parser.epilog or ""
        for name, commands in found.items():
            if re.search(rf"^\s+{re.escape(name)}\s", epilog, re.MULTILINE):
                commands.append(" ".join(path))
    return found


def settings_table() -> str:
    from mailroom import settings

    table = settings.markdown_table()
    by = readers()
    lines = ["| Variable | Read by |", "| --- | --- |"]
    for name, commands in by.items():
        lines.append(f"| `{name}` | {', '.join(f'`{c}`' for c in commands) or '(no command)'} |")
    return f"{table}\n\n### Who reads what\n\n" + "\n".join(lines)


def render(markdown: str, page_path: str) -> str:
    """`markdown` with every marker replaced by its generated part."""

    def replace(match: re.Match[str]) -> str:
        kind, args = match.group(1), tuple(match.group(2).split())
        if kind == "settings-table" and not args:
            return settings_table()
        if kind == "cli-help" and args:
            return cli_help(args)
        raise PluginError(f"{page_path}: unknown marker {match.group(0)}")

    return MARKER.sub(replace, markdown)


def missing_cli_markers(markdown: str) -> list[str]:
    covered = {tuple(m.group(2).split()) for m in MARKER.finditer(markdown) if m.group(1) == "cli-help"}
    return [" ".join(path) for path in all_commands() if path not in covered]


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """The MkDocs event: every page's Markdown passes through here before it is rendered."""
    src = page.file.src_uri
    if src == "reference/cli.md":
        missing = missing_cli_markers(markdown)
        if missing:
            raise PluginError(
                "reference/cli.md documents no "
                + ", ".join(missing)
                + ": add a `<!-- generated: cli-help COMMAND -->` line for each"
            )
    return render(markdown, src)
