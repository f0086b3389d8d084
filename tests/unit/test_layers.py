"""The layers: `mailroom/` is what an app and both programs share, so it never imports up.

`collector/` and `sender/` import `mailroom`; nothing in `mailroom/` (its operator commands
included) imports `collector` or `sender`. A command that needs one of the programs runs it
as a process (`mailroom check` runs `sender --check`), which is not an import.
"""

from __future__ import annotations

import ast

from conftest import ROOT

UPPER_LAYERS = ("collector", "sender")


def imports_of_upper_layers(source: str, filename: str = "<source>") -> list[str]:
    """`line: module` for every import of collector or sender in `source`, at any depth
    (module level, inside functions, under `if TYPE_CHECKING:`), and for
    `importlib.import_module`/`__import__` calls with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        if isinstance(node, ast.stmt | ast.expr):
            found += [(node.lineno, name) for name in names if name.split(".")[0] in UPPER_LAYERS]
    return [f"{line}: {name}" for line, name in sorted(found)]


def test_nothing_in_mailroom_imports_the_collector_or_the_sender() -> None:
    files = sorted((ROOT / "mailroom").rglob("*.py"))
    scanned = {path.relative_to(ROOT).as_posix() for path in files}
    # The walk reaches the subpackage of commands too (where such an import would be tempting).
    assert {"mailroom/cli.py", "mailroom/templates.py", "mailroom/commands/templates.py"} <= scanned
    offending = {
        path.relative_to(ROOT).as_posix(): found
        for path in files
        if (found := imports_of_upper_layers(path.read_text(encoding="utf-8"), str(path)))
    }
    assert not offending, f"mailroom/ imports an upper layer: {offending}"


def test_the_layer_check_sees_every_spelling_of_an_import() -> None:
    source = """\
import sender
import collector.cli as c
from sender.templates import EmailTemplate
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from collector import queue
def later():
    from sender import ses
    importlib.import_module("sender.debug")
import sendmail, collectors
from mailroom import templates
"""
    assert imports_of_upper_layers(source) == [
        "1: sender",
        "2: collector.cli",
        "3: sender.templates",
        "6: collector",
        "8: sender",
        "9: sender.debug",
    ]
