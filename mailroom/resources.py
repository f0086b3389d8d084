"""Where the schema, the SQL queries and the email templates are found.

They live at the top of the repository so that people read them first; an installed wheel
carries them inside the package (see `force-include` in pyproject.toml). An editable
install or a source checkout finds them at the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Return the directory `name` (`migrations`, `sql` or `templates`)."""
    for candidate in (_PACKAGE / "_resources" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mailroom resource directory {name!r} is missing from the installation")
