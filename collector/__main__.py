"""The `collector` console script (and `python -m collector`).

It checks for the pipeline extra before importing the collector (which imports psycopg, and
prometheus_client when it serves metrics), so that a light install prints one line instead of a
traceback.
"""

from __future__ import annotations

import sys

from mailroom import extras


def main() -> int:
    if (module := extras.missing_module()) is not None:
        return extras.refuse("collector", module)
    from collector.cli import main as collector_main

    return collector_main()


if __name__ == "__main__":
    sys.exit(main())
