"""The result of one deployment check (`mailroom check`), and how a list of them is shown.

One line per check, so that a deploy pipeline's log and a person at 3 a.m. read the same
thing: `✓ name: detail`, or `✗ name: detail — fix: what to do`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PASS_MARK = "✓"
FAIL_MARK = "✗"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"{PASS_MARK} {self.name}: {self.detail}"
        return f"{FAIL_MARK} {self.name}: {self.detail}" + (f" — fix: {self.fix}" if self.fix else "")


def render(checks: Iterable[Check]) -> list[str]:
    """One line per check, in order."""
    return [check.line() for check in checks]


def all_passed(checks: Iterable[Check]) -> bool:
    return all(check.ok for check in checks)
