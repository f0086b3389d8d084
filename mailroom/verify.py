"""Verifying the signed token of a link that came back to the app.

An app checks the link's signature here (or with the same algorithm in its own language,
see `mailroom.signing`) and then consumes the token in the database with
`SELECT mailroom_consume_token(secret, code)`. The signature check runs first so the
database only ever sees secrets this key signed.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
from collections.abc import Mapping

from mailroom import settings
from mailroom.signing import Action, InvalidToken, decode_token, verify

__all__ = ["InvalidToken", "parse_action", "verify_link_token"]


def parse_action(action: Action | str | int) -> Action:
    """An Action from itself, its database label (`activation`, `password_recovery`) or number."""
    if isinstance(action, Action):
        return action
    if isinstance(action, int):
        return Action(action)
    try:
        return Action.from_db(action)
    except KeyError:
        raise ValueError(f"unknown action {action!r} (expected activation or password_recovery)") from None


def verify_link_token(key: bytes, token: str, action: Action | str | int, code: str | None = None) -> bytes:
    """The 32-byte secret behind a valid signed `token`; InvalidToken says what is wrong otherwise.

    `code` is the 5-digit code the user typed, needed for password recovery (it is part of
    the signed message) and ignored for activation. The signature is compared in constant
    time (hmac.compare_digest in mailroom.signing.verify). Only the canonical spelling of a
    token is accepted: base64url leaves 4 unused bits in the last character, and a token
    that sets them is an altered one.
    """
    if not isinstance(token, str):
        raise InvalidToken(f"a signed token is text, not {type(token).__name__}")
    secret = verify(key, token, parse_action(action), code)
    if base64.urlsafe_b64encode(decode_token(token)).rstrip(b"=").decode("ascii") != token:
        raise InvalidToken("not the canonical base64url spelling of the token (an altered token)")
    return secret


# `mailroom verify`: the command-line face of verify_link_token (wired up in mailroom/cli.py).

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
