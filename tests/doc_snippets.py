"""The fenced code blocks of the README and the docs site, with the markers that say how to test them.

An HTML comment on the line just before a fence marks the block (see DEVELOPERS.md,
"Documentation"):

- `<!-- snippet: skip (reason) -->`: not run; the reason says why, or which test covers it;
- `<!-- snippet: continues -->`: a Python block that goes on from the one before it (it
  runs in the same interpreter, after it); every other runnable block runs on its own, so
  a block that a reader copies alone has its own imports;
- `<!-- snippet: tutorial -->`: a shell block the tutorial test runs.

Python blocks are runnable unless marked skip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
_MARKER = re.compile(r"^\s*<!-- snippet: (?P<kind>skip|tutorial|continues)(?: \((?P<reason>[^)]*)\))? -->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None  # "skip", "tutorial", "continues" or None
    reason: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """README.md and every page of the site (docs/drafts/ is not part of it)."""
    found = sorted(p for p in DOCS.rglob("*.md") if "drafts" not in p.relative_to(DOCS).parts)
    return [ROOT / "README.md", *found]


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^{re.escape(indent)}{re.escape(fence)}\s*$", lines[i]):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(previous)
        out.append(
            Block(
                path=path,
                line=start + 1,
                lang=opening["lang"],
                code="\n".join(body) + "\n",
                marker=marker["kind"] if marker else None,
                reason=marker["reason"] if marker else None,
            )
        )
    return out


def runnable_python(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang == "python" and b.marker != "skip"]


def python_programs(path: Path) -> list[list[Block]]:
    """The runnable Python blocks of a page, grouped: a block marked `continues` joins the group before it."""
    groups: list[list[Block]] = []
    for block in runnable_python(path):
        if block.marker == "continues" and groups:
            groups[-1].append(block)
        else:
            groups.append([block])
    return groups
