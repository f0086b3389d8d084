"""`mailroom`: the admin command (schema migrations and other operator tasks)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence

import psycopg

from mailroom import __version__, extras, settings
from mailroom.commands import verify  # the light install's one command: it needs no pipeline extra
from mailroom.db import describe, first_line, permanent_failure
from mailroom.logs import setup_logging

log = logging.getLogger("mailroom")

Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]
Command = tuple[str, tuple[str, ...], Handler, Callable[[argparse.ArgumentParser], None]]

_VERIFY: Command = (
    "check a signed token from a link: print its secret (hex) and exit 0, or exit 1 with the reason",
    verify.VERIFY_VARIABLES,
    verify.cli_main,
    verify.add_cli_arguments,
)


def _all_commands() -> dict[str, Command]:
    """Every command. Their modules import the pipeline extra's packages: call this only when it is installed."""
    from mailroom.commands import (
        actions,
        check,
        demo,  # `mailroom demo` (make demo)
        events,
        migrate,
        prune,
        requeue,
        run,
        status,
        suppressions,
        templates,
    )

    return {
        "templates": (
            "push the SES email templates (create or update), render one locally, check them, or preview them",
            templates.PUSH_VARIABLES,
            templates.handle,
            templates.add_arguments,
        ),
        "migrate": (
            (
                "apply the schema migrations into MAILROOM_SCHEMA (idempotent; moves an earlier release's objects "
                "out of public); --rollback undoes the last one, --sql prints the DDL"
            ),
            migrate.MIGRATE_VARIABLES,
            migrate.cli_main,
            migrate.add_cli_arguments,
        ),
        "verify": _VERIFY,
        "prune": (
            "delete tokens consumed or expired more than MAILROOM_PRUNE_AFTER ago, in small batches",
            prune.PRUNE_VARIABLES,
            prune.cli_main,
            prune.add_cli_arguments,
        ),
        "requeue": (
            "put still-valid tokens (unconsumed, unexpired) back on the queue, to be emailed again; --dry-run shows them",
            requeue.REQUEUE_VARIABLES,
            requeue.cli_main,
            requeue.add_cli_arguments,
        ),
        "check": (
            (
                "check the deployment (database, schema, queue, backlog, key, then the mail provider as "
                "`sender --check` does, with the sender's variables and AWS_* settings): one line per check, "
                "exit 0 when all pass"
            ),
            check.CHECK_VARIABLES,
            check.cli_main,
            check.add_cli_arguments,
        ),
        "run": (
            "run `collector | sender` supervised: exit non-zero when either dies; SIGTERM stops both",
            tuple(dict.fromkeys(settings.COLLECTOR_VARIABLES + settings.SENDER_VARIABLES)),
            run.cli_main,
            run.add_cli_arguments,
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
        "events": (
            (
                "record the SES events of an SQS queue (bounces, complaints, deliveries) in PostgreSQL: "
                "the suppression list and each token's delivery status"
            ),
            events.EVENTS_VARIABLES,
            events.cli_main,
            events.add_cli_arguments,
        ),
        "actions": (
            "the registry of actions (the kinds of email): list them, add one",
            actions.ACTIONS_VARIABLES,
            actions.cli_main,
            actions.add_arguments,
        ),
        "suppressions": (
            "the suppression list: list it, add an address by hand, remove one",
            suppressions.SUPPRESSIONS_VARIABLES,
            suppressions.cli_main,
            suppressions.add_arguments,
        ),
        "demo": (
            (
                "the whole job on a throwaway database (embedded unless MAILROOM_DATABASE_URL is set), "
                "no AWS: shows the emails, then stops everything"
            ),
            demo.DEMO_VARIABLES,
            demo.cli_main,
            demo.add_cli_arguments,
        ),
    }


# Without the pipeline extra (the light install) only `mailroom verify` is there; every other
# command says in one line what to install (main below).
MISSING_MODULE = extras.missing_module()
COMMANDS: dict[str, Command] = _all_commands() if MISSING_MODULE is None else {"verify": _VERIFY}


class _Parser(argparse.ArgumentParser):
    """Reports arguments it does not know itself, with its own usage: `mailroom prune --x`
    shows prune's usage, not the top-level one (argparse leaves unknown arguments to the
    top-level parser)."""

    # typeshed overloads parse_known_args on the namespace's type; this one passes both through.
    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, argparse.Namespace() if namespace is None else namespace)
        if extras:
            self.error("unrecognized arguments: " + " ".join(extras))
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    every = tuple(dict.fromkeys(name for _, names, _, _ in COMMANDS.values() for name in names))
    parser = _Parser(
        prog="mailroom",
        description="mailroom admin: schema migrations and operator tasks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=settings.help_epilog(every)
        + ("" if MISSING_MODULE is None else f"\n\nThe other commands need the pipeline extra: {extras.INSTALL}"),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    if MISSING_MODULE is not None and argv[:1] and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        return extras.refuse(f"mailroom {argv[0]}", MISSING_MODULE)
    if argv[:1] == ["verify"]:
        argv = verify.protect_token_argument(argv)
    args = build_parser().parse_args(argv)
    environ = settings.load_environment()
    _, names, handler, _ = COMMANDS[args.command]
    try:
        logging_settings = settings.read(environ, "MAILROOM_LOG_LEVEL", "MAILROOM_LOG_FORMAT")
        setup_logging("mailroom", logging_settings["MAILROOM_LOG_LEVEL"], logging_settings["MAILROOM_LOG_FORMAT"])
        if args.command != "run":  # `run`'s collector and sender say it themselves
            settings.warn_unknown_variables(environ, log)
        # Every variable the command reads is checked before it does anything; the demo
        # uses MAILROOM_DATABASE_URL only when it is set (else an embedded server), `migrate --sql`
        # only prints (it needs no database), and `check` is there to report bad settings as its own ✗ lines.
        by_design = args.command == "demo" or (args.command == "migrate" and args.sql)
        unset_by_design = {"MAILROOM_DATABASE_URL"} - set(environ) if by_design else set()
        if args.command != "check":
            settings.read(environ, *(name for name in names if name not in unset_by_design))
        return handler(args, environ)
    except settings.ConfigError as exc:
        settings.exit_on_config_error("mailroom", exc)
    except psycopg.OperationalError as exc:
        url = environ.get("MAILROOM_DATABASE_URL", "")
        if (reason := permanent_failure(exc)) is not None:
            print(
                f"mailroom {args.command}: cannot connect to {describe(url)}: {reason} "
                f"({first_line(exc)}); check MAILROOM_DATABASE_URL",
                file=sys.stderr,
            )
            return settings.CONFIG_EXIT_STATUS
        print(f"mailroom {args.command}: cannot reach the database: {str(exc).strip()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
