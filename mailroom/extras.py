"""The pipeline extra: what the light install lacks, and the one line that says so.

`pip install pg-mailroom` is what an app needs (mailroom.verify, mailroom.signing,
mailroom.wire, `mailroom verify`); `pip install 'pg-mailroom[pipeline]'` adds what the
collector, the sender and the operator commands need. Each console script asks
`missing_module()` before it imports anything of the pipeline's, so a light install gets one
line and status 2 instead of a traceback. Standard library only: this runs in both installs.
"""

from __future__ import annotations

import importlib.util
import sys

EXTRA = "pipeline"
INSTALL = "pip install 'pg-mailroom[pipeline]'"
# Status 2, as for invalid configuration: the host is not set up for the program.
MISSING_EXTRA_STATUS = 2

# The import name of each requirement of the pipeline extra (pyproject.toml), in its order:
# boto3 (SES), yoyo-migrations (`mailroom migrate`), idna (the address rule),
# prometheus_client (metrics), css-inline (the HTML templates).
# tests/unit/test_packaging.py keeps this list and the extra in step.
PIPELINE_MODULES = ("boto3", "yoyo", "idna", "prometheus_client", "css_inline")


def missing_module() -> str | None:
    """The first module of the pipeline extra that cannot be imported, or None when all are there.

    find_spec looks for a module without importing it, so asking costs no import time.
    """
    for name in PIPELINE_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):  # a broken install or a blocked module: missing all the same
            return name
    return None


def message(program: str, module: str) -> str:
    """The one line a program prints when the extra is missing."""
    return f"{program}: this command needs the {EXTRA} extra: {INSTALL} (missing module {module})"


def refuse(program: str, module: str) -> int:
    """Print the one line to stderr; the status to exit with."""
    print(message(program, module), file=sys.stderr)
    return MISSING_EXTRA_STATUS
