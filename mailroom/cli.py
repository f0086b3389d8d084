"""`mailroom`: the admin command (schema migrations and other operator tasks)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence

import psycopg

from mailroom import (  # app-side commands: verify, prune, run
    demo,  # `mailroom demo` (make demo)
    migrate,
    pipeline,
    prune,
    settings,
    templates_cmd,
    verify,
)
from mailroom.commands import status
from mailroom.db import describe
from mailroom.logs import setup_logging

log = logging.getLogger("mailroom")

Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]


def _cmd_migrate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    url = settings.read(environ, "MAILROOM_DATABASE_URL")["MAILROOM_DATABASE_URL"]
    if args.rollback:
        result = migrate.rollback_last(url)
        print("rolled back: " + (", ".join(result.rolled_back) or "nothing (no migration applied)"))
    else:
        result = migrate.apply(url)
        print("applied: " + (", ".join(result.applied) or "nothing (schema is up to date)"))
    log.info("migrations done on %s", describe(url))
    return 0


COMMANDS: dict[str, tuple[str, tuple[str, ...], Handler, Callable[[argparse.ArgumentParser], None]]] = {
    "templates": (
        "push the SES email templates (create or update), or render one locally",
        templates_cmd.PUSH_VARIABLES + templates_cmd.RENDER_VARIABLES[:1],
        templates_cmd.handle,
        templates_cmd.add_arguments,
    ),
    "migrate": (
        "apply the schema migrations (idempotent); --rollback undoes the last one",
        ("MAILROOM_DATABASE_URL", "MAILROOM_LOG_LEVEL"),
        _cmd_migrate,
        lambda p: p.add_argument("--rollback", action="store_true", help="undo the last applied migration"),
    ),
    "verify": (
        "check a signed token from a link: print its secret (hex) and exit 0, or exit 1 with the reason",
        verify.VERIFY_VARIABLES,
        verify.cli_main,
        verify.add_cli_arguments,
    ),
    "prune": (
        "delete tokens consumed or expired more than MAILROOM_PRUNE_AFTER ago, in small batches",
        prune.PRUNE_VARIABLES,
        prune.cli_main,
        prune.add_cli_arguments,
    ),
    "run": (
        "run `collector | sender` supervised: exit non-zero when either dies; SIGTERM stops both",
        tuple(dict.fromkeys(settings.COLLECTOR_VARIABLES + settings.SENDER_VARIABLES)),
        pipeline.cli_main,
        pipeline.add_cli_arguments,
    ),
    "status": (
        (
            "one screen: each queue's backlog and oldest entry, the active collector, the sender's last "
            "outcomes and its journal; --json for scripts"
        ),
        status.STATUS_VARIABLES,
        status.cli_main,
        status.add_arguments,
    ),
    "demo": (
        "the whole job on a throwaway database (embedded unless MAILROOM_DATABASE_URL is set), "
        "no AWS: shows the emails, then stops everything",
        demo.DEMO_VARIABLES,
        demo.cli_main,
        demo.add_cli_arguments,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    every = tuple(dict.fromkeys(name for _, names, _, _ in COMMANDS.values() for name in names))
    parser = argparse.ArgumentParser(
        prog="mailroom",
        description="mailroom admin: schema migrations and operator tasks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=settings.help_epilog(every),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (summary, names, _, add_arguments) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=summary,
            description=summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=settings.help_epilog(names),
        )
        add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["verify"]:
        argv = verify.protect_token_argument(argv)
    args = build_parser().parse_args(argv)
    environ = settings.load_environment()
    try:
        logging_settings = settings.read(environ, "MAILROOM_LOG_LEVEL", "MAILROOM_LOG_FORMAT")
        setup_logging("mailroom", logging_settings["MAILROOM_LOG_LEVEL"], logging_settings["MAILROOM_LOG_FORMAT"])
        _, _, handler, _ = COMMANDS[args.command]
        return handler(args, environ)
    except settings.ConfigError as exc:
        settings.exit_on_config_error("mailroom", exc)
    except psycopg.OperationalError as exc:
        print(f"mailroom {args.command}: cannot reach the database: {str(exc).strip()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
