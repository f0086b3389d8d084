"""Reading `mailroom demo`'s stdout back: the sender's bulk sends and the narration around them."""

from __future__ import annotations

from mailroom.debug_output import END_RULE, RULE


def blocks(screen: str) -> tuple[list[str], list[str]]:
    """The screen's bulk sends (RULE ... END_RULE, each as its text) and the lines outside them.
    AssertionError when a line that is not the sender's appears inside a block."""
    found: list[str] = []
    outside: list[str] = []
    current: list[str] | None = None
    for line in screen.splitlines(keepends=True):
        mark = line.rstrip("\n")
        if current is None and mark == RULE:
            current = [line]
        elif current is not None:
            assert not line.startswith("[demo] "), f"narration inside an email: {line!r} after {''.join(current)}"
            current.append(line)
            if mark == END_RULE:
                found.append("".join(current))
                current = None
        else:
            outside.append(line)
    assert current is None, "a bulk send printed only in part"
    return found, outside
