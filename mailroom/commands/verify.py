"""`mailroom verify`: the command-line face of `mailroom.verify.verify_link_token`."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping

from mailroom import settings
from mailroom.actions import ALIASES, STANDARD_SPECS, Action, ActionSpec, UnknownAction, spec_for
from mailroom.verify import InvalidToken, verify_link_token

VERIFY_VARIABLES = ("MAILROOM_SECRET_KEY", "MAILROOM_PREVIOUS_SECRET_KEYS", "MAILROOM_LOG_LEVEL")
_TOKEN_ARGUMENT = re.compile(r"[A-Za-z0-9_-]{86}")
CUSTOM_NUMBER = 32767  # a custom action checked by --path alone: its number is not part of the signature


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "token", metavar="TOKEN", help="the signed token from the link; '-' reads it from stdin (keeps it out of ps)"
    )
    parser.add_argument(
        "--action",
        required=True,
        metavar="NAME",
        help=f"what the link is for: {', '.join(STANDARD_SPECS)} (or their numbers, or `recovery`), "
        "or a custom action's name with --path",
    )
    parser.add_argument("--code", help="the 5-digit code the user was sent (password_recovery)")
    parser.add_argument(
        "--path",
        help="a custom action's signed link path (its `actions.path`, e.g. /team-invite); not for the standard ones",
    )
    parser.add_argument(
        "--signs-code", action="store_true", help="the custom action of --path signs its code (`actions.signs_code`)"
    )


def protect_token_argument(argv: list[str]) -> list[str]:
    """Move a signed token that starts with '-' (1 in 64 do) behind '--' so argparse does
    not take it for an option: `mailroom verify -AbC…` works as the user typed it."""
    if "--" in argv:
        return argv
    tokens = [a for a in argv if a.startswith("-") and _TOKEN_ARGUMENT.fullmatch(a)]
    return [a for a in argv if a not in tokens] + (["--", *tokens] if tokens else [])


def _spec(args: argparse.Namespace) -> ActionSpec:
    """The action's spec; ConfigError (exit 2) for an unknown name, or --path with a standard one."""
    name = ALIASES.get(args.action, args.action)
    standard = name in STANDARD_SPECS or (name.isdigit() and int(name) in {s.number for s in STANDARD_SPECS.values()})
    if args.path is None:
        if args.signs_code:
            raise settings.ConfigError("--signs-code", "goes with --path (a custom action)")
        try:
            return spec_for(name)
        except UnknownAction as exc:
            raise settings.ConfigError(
                "--action", f"{exc}; for a custom action give --path (and --signs-code)"
            ) from None
    if standard:
        raise settings.ConfigError("--path", f"{args.action} is a standard action: its path is known, drop --path")
    try:
        return ActionSpec(Action(CUSTOM_NUMBER, name), args.path, signs_code=args.signs_code)
    except ValueError as exc:
        raise settings.ConfigError("--action" if "name" in str(exc) else "--path", str(exc)) from None


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Exit 0 and print the secret's hex when the token is valid; exit 1 with the reason if not."""
    values = settings.read(environ, "MAILROOM_SECRET_KEY", "MAILROOM_PREVIOUS_SECRET_KEYS")
    spec = _spec(args)
    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    try:
        secret = verify_link_token(
            values["MAILROOM_SECRET_KEY"], token, spec, args.code, previous_keys=values["MAILROOM_PREVIOUS_SECRET_KEYS"]
        )
    except InvalidToken as exc:
        print(f"mailroom verify: invalid token: {exc}", file=sys.stderr)
        return 1
    print(secret.hex())
    return 0
