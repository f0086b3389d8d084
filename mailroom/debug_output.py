"""The frame of each bulk send the sender prints in debug mode (sender/debug.py).

Each block runs from RULE to END_RULE and is written at once, so a program that shows this
output among lines of its own (`mailroom demo`) can tell where a block ends and never
print inside one.
"""

from __future__ import annotations

RULE = "=" * 72
END_RULE = "-" * 72
