"""`mailroom migrate`: apply the schema migrations into MAILROOM_SCHEMA (moving an installation
of an earlier release out of `public` first), undo the last one, or print the DDL
(`mailroom.migrate` does the work)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping

from mailroom import migrate, settings
from mailroom.db import describe

log = logging.getLogger("mailroom")

MIGRATE_VARIABLES = ("MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA", "MAILROOM_LOG_LEVEL")


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--rollback", action="store_true", help="undo the last applied migration")
    what.add_argument(
        "--sql",
        action="store_true",
        help="print the whole schema's DDL (CREATE SCHEMA, every migration, the functions' search_path) "
        "for another migration tool, and change nothing (MAILROOM_DATABASE_URL is not needed)",
    )
    parser.add_argument(
        "--account-key",
        choices=migrate.ACCOUNT_KEYS,
        default=None,
        help="the type of the recipients' key, chosen at the first migrate and kept: bigint (the default) "
        "or uuid; asking an installation for the other one is an error",
    )


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    schema = settings.read(environ, "MAILROOM_SCHEMA")["MAILROOM_SCHEMA"]
    if args.sql:
        sys.stdout.write(migrate.sql_script(schema, args.account_key or "bigint"))
        return 0
    url = settings.read(environ, "MAILROOM_DATABASE_URL")["MAILROOM_DATABASE_URL"]
    try:
        if args.rollback:
            result = migrate.rollback_last(url, schema)
            print("rolled back: " + (", ".join(result.rolled_back) or "nothing (no migration applied)"))
        else:
            result = migrate.apply(url, schema, args.account_key)
            if result.moved:
                print(f"moved from public into schema {schema}: " + ", ".join(result.moved))
            print("applied: " + (", ".join(result.applied) or "nothing (schema is up to date)"))
    except (migrate.MigrationFailed, migrate.MigrateRefused) as exc:
        print(f"mailroom migrate: failed: {exc}", file=sys.stderr)
        return 1
    log.info("migrations done on %s (schema %s)", describe(url), schema)
    return 0
