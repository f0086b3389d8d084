"""The `sender` console script (and `python -m sender`).

It checks for the pipeline extra before importing the sender (boto3, prometheus_client,
css-inline), so that a light install prints one line instead of a traceback.
"""

from __future__ import annotations

import sys

from mailroom import extras


def main() -> int:
    if (module := extras.missing_module()) is not None:
        return extras.refuse("sender", module)
    from sender.cli import main as sender_main

    return sender_main()


if __name__ == "__main__":
    sys.exit(main())
