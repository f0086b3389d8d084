"""Named checks with a verdict and a fix, as `mailroom check` and `sender --check` print them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.name}: {self.detail}" + ("" if self.ok or not self.fix else f" — fix: {self.fix}")


def render(checks: Iterable[Check]) -> str:
    return "\n".join(c.line() for c in checks)
