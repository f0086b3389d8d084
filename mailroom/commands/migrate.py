"""`mailroom migrate`: apply the schema migrations, or undo the last one (`mailroom.migrate` does the work)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping

from mailroom import migrate, settings
from mailroom.db import describe

log = logging.getLogger("mailroom")

MIGRATE_VARIABLES = ("MAILROOM_DATABASE_URL", "MAILROOM_LOG_LEVEL")


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rollback", action="store_true", help="undo the last applied migration")


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    url = settings.read(environ, "MAILROOM_DATABASE_URL")["MAILROOM_DATABASE_URL"]
    if args.rollback:
        result = migrate.rollback_last(url)
        print("rolled back: " + (", ".join(result.rolled_back) or "nothing (no migration applied)"))
    else:
        try:
            result = migrate.apply(url)
        except migrate.MigrationFailed as exc:
            print(f"mailroom migrate: failed: {exc}", file=sys.stderr)
            return 1
        print("applied: " + (", ".join(result.applied) or "nothing (schema is up to date)"))
    log.info("migrations done on %s", describe(url))
    return 0
