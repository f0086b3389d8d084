"""`mailroom verify`: the command-line face of `mailroom.verify.verify_link_token`."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping

from mailroom import settings
from mailroom.signing import Action
from mailroom.verify import InvalidToken, verify_link_token

VERIFY_VARIABLES = ("MAILROOM_SECRET_KEY", "MAILROOM_LOG_LEVEL")
_TOKEN_ARGUMENT = re.compile(r"[A-Za-z0-9_-]{86}")


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "token", metavar="TOKEN", help="the signed token from the link; '-' reads it from stdin (keeps it out of ps)"
    )
    parser.add_argument("--action", required=True, choices=[a.db_name for a in Action], help="what the link is for")
    parser.add_argument("--code", help="the 5-digit code the user was sent (password_recovery)")


def protect_token_argument(argv: list[str]) -> list[str]:
    """Move a signed token that starts with '-' (1 in 64 do) behind '--' so argparse does
    not take it for an option: `mailroom verify -AbC…` works as the user typed it."""
    if "--" in argv:
        return argv
    tokens = [a for a in argv if a.startswith("-") and _TOKEN_ARGUMENT.fullmatch(a)]
    return [a for a in argv if a not in tokens] + (["--", *tokens] if tokens else [])


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Exit 0 and print the secret's hex when the token is valid; exit 1 with the reason if not."""
    key = settings.read(environ, "MAILROOM_SECRET_KEY")["MAILROOM_SECRET_KEY"]
    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    try:
        secret = verify_link_token(key, token, args.action, args.code)
    except InvalidToken as exc:
        print(f"mailroom verify: invalid token: {exc}", file=sys.stderr)
        return 1
    print(secret.hex())
    return 0
