"""Typed settings for each program, built once from the environment and validated at start-up.

Every `MAILROOM_*` variable is declared once in `VARIABLES` below: its default, what it
means and how its value is checked. Programs build a frozen settings object from the
variables they read and pass it down explicitly; nothing else reads `os.environ`.

An invalid value is never replaced by a default: `ConfigError` names the variable, the bad
value (never for secrets) and what is expected, and the program exits with status 2.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

CONFIG_EXIT_STATUS = 2

# Every pattern is used with fullmatch: `$` also matches before a trailing newline.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
_HEX = re.compile(r"[0-9a-fA-F]*")
_SES_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Unicode category Cc: C0, DEL and C1 (a value with one would reach a mail header, a link or a path).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# `value   # comment`: python-dotenv drops such a comment, docker --env-file and systemd's
# EnvironmentFile keep it as part of the value.
_INLINE_COMMENT = re.compile(r"\s#")
INLINE_COMMENT_HINT = (
    "; it looks like it has an inline comment: docker --env-file and systemd EnvironmentFile "
    "keep it as part of the value, so put comments on their own line"
)
# Largest whole number any integer setting accepts, whatever its own bound: it fits every
# place a setting ends up (a PostgreSQL integer, a thread count, a timeout).
MAX_INT = 2**31 - 1
_LOG_FORMATS = ("text", "json")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


# Said wherever the key is missing or malformed.
SECRET_KEY_HINT = "generate one with: openssl rand -hex 32"


class ConfigError(Exception):
    """A setting is missing or invalid; the message is meant for the operator as it is."""

    def __init__(self, name: str, message: str, expected: str | None = None) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        self.expected = expected


@dataclass(frozen=True)
class Variable:
    """One environment variable: its default (None means required), meaning and parser.

    `hint` is added to the message when a required variable is not set: what to set it to."""

    name: str
    default: str | None
    meaning: str
    parse: Callable[[str, str], Any]
    secret: bool = False
    hint: str = ""

    def describe_default(self) -> str:
        if self.default is None:
            return "(required)"
        return repr(self.default) if self.default == "" else self.default


def _bad(name: str, raw: str, expected: str) -> NoReturn:
    raise ConfigError(name, f"{raw!r} is invalid; expected {expected}", expected)


def positive_int(name: str, raw: str, maximum: int = MAX_INT) -> int:
    expected = f"a positive whole number, at most {maximum}"
    if len(raw.strip()) > 20:  # int() of a huge string is slow, and no setting is that large
        _bad(name, raw, expected)
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        _bad(name, raw, expected)
    if not 0 < value <= maximum:
        _bad(name, raw, expected)
    return value


def positive_int_at_most(maximum: int) -> Callable[[str, str], int]:
    """A positive_int parser with its own upper bound (at most MAX_INT)."""

    def parse(name: str, raw: str) -> int:
        return positive_int(name, raw, min(maximum, MAX_INT))

    return parse


def positive_number(name: str, raw: str, maximum: float = float(MAX_INT)) -> float:
    expected = f"a positive number, at most {maximum:g}"
    try:
        value = float(raw.strip())
    except ValueError:
        _bad(name, raw, expected)
    if not 0 < value <= maximum:  # also refuses nan and inf
        _bad(name, raw, expected)
    return value


def positive_number_at_most(maximum: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        return positive_number(name, raw, maximum)

    return parse


def optional_positive_number(name: str, raw: str) -> float | None:
    """Empty means "not set" (the program decides, and says so in the variable's meaning)."""
    return None if raw.strip() == "" else positive_number(name, raw)


def optional_positive_number_at_most(maximum: float) -> Callable[[str, str], float | None]:
    def parse(name: str, raw: str) -> float | None:
        return None if raw.strip() == "" else positive_number(name, raw, maximum)

    return parse


def optional_send_rate(name: str, raw: str) -> float | None:
    """Empty means "ask the provider"; below 1 email/s no call of one destination could ever start."""
    value = optional_positive_number_at_most(1_000_000.0)(name, raw)
    if value is not None and value < 1:
        _bad(name, raw, "at least 1 (emails per second), or empty for the account's MaxSendRate")
    return value


def boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    _bad(name, raw, "true or false (also 1/0, yes/no, on/off)")


def identifier(name: str, raw: str) -> str:
    if not _IDENTIFIER.fullmatch(raw):
        _bad(name, raw, "a name of 1 to 63 letters, digits, '_' or '$', not starting with a digit")
    return raw


def nonempty(name: str, raw: str) -> str:
    if raw.strip() == "":
        _bad(name, raw, "a non-empty value")
    return raw


def text(name: str, raw: str) -> str:
    return raw


def log_level(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in _LOG_LEVELS:
        _bad(name, raw, "one of " + ", ".join(_LOG_LEVELS))
    return value


def secret_key(name: str, raw: str) -> bytes:
    value = raw.strip()
    if len(value) != 64 or not _HEX.fullmatch(value):
        raise ConfigError(
            name,
            f"expected 64 hex characters (a 32-byte key); got {len(value)} characters"
            + ("" if _HEX.fullmatch(value) else " including non-hex ones")
            + f" ({SECRET_KEY_HINT})",
        )
    return bytes.fromhex(value)


def previous_secret_keys(name: str, raw: str) -> tuple[bytes, ...]:
    """Comma-separated keys, each as MAILROOM_SECRET_KEY; blank: none."""
    from mailroom.verify import parse_keys

    try:
        return parse_keys(raw)
    except ValueError as exc:
        raise ConfigError(name, f"{exc} ({SECRET_KEY_HINT})") from None


def ses_name(name: str, raw: str) -> str:
    """An SES template or configuration set name."""
    if not _SES_NAME.fullmatch(raw):
        _bad(name, raw, "a name of 1 to 64 letters, digits, '_' or '-'")
    return raw


def optional_ses_name(name: str, raw: str) -> str:
    return raw if raw == "" else ses_name(name, raw)


def directory(name: str, raw: str) -> Path:
    if raw.strip() == "" or _CONTROL.search(raw):
        _bad(name, raw, "a directory path")
    if _INLINE_COMMENT.search(raw):  # a legal path, but far more likely a comment
        raise ConfigError(name, f"{raw!r} is refused{INLINE_COMMENT_HINT}", "a directory path")
    return Path(raw)


def optional_existing_directory(name: str, raw: str) -> Path | None:
    """Empty means "not set"; otherwise a directory that exists now."""
    if raw.strip() == "":
        return None
    if not Path(raw).is_dir():
        _bad(name, raw, "an existing directory (or empty)")
    return Path(raw)


def optional_http_url(name: str, raw: str) -> str:
    """Empty means "not set" (the command that needs it says so)."""
    return "" if raw.strip() == "" else http_url(name, raw.strip())


def http_url(name: str, raw: str) -> str:
    # \S alone lets control characters such as \x01 or \x7f through: they would end up in every link.
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", raw) or _CONTROL.search(raw):
        _bad(name, raw, "an http:// or https:// URL")
    return raw.rstrip("/")


def email_address(name: str, raw: str) -> str:
    expected = "an email address such as noreply@example.com or 'Name <noreply@example.com>'"
    if _CONTROL.search(raw):  # it goes into a mail header
        _bad(name, raw, expected)
    match = re.fullmatch(r"\s*(?:[^<>]*<([^<>]*)>|([^<>]*))\s*", raw)
    if not match or not re.fullmatch(r"[^@\s]+@[^@\s]+", match.group(1) or match.group(2) or ""):
        _bad(name, raw, expected)
    return raw


_DURATION = re.compile(r"\s*(\d{1,15}(?:\.\d+)?)\s*(ms|[smhd]?)\s*")
# A plain number is seconds.
_DURATION_UNITS = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S = 3650 * 86400.0  # ten years: the bound of every duration without one of its own


def _spell_duration(seconds: float) -> str:
    """The largest unit that divides `seconds` exactly: 604800 -> '7d', 0.5 -> '500ms'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms"


def _duration(name: str, raw: str, allow_zero: bool, maximum: float = MAX_DURATION_S) -> float:
    kind = "duration" if allow_zero else "positive duration"
    expected = f"a {kind} such as 30 or 30s (seconds), 500ms, 10m, 2h or 7d, at most {_spell_duration(maximum)}" + (
        " (0 turns it off)" if allow_zero else ""
    )
    match = _DURATION.fullmatch(raw)
    if not match or (float(match.group(1)) <= 0 and not allow_zero):
        _bad(name, raw, expected)
    value = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if value > maximum:
        _bad(name, raw, expected)
    return value


def log_format(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in _LOG_FORMATS:
        _bad(name, raw, "one of " + ", ".join(_LOG_FORMATS))
    return value


def listen_address(name: str, raw: str) -> tuple[str, int] | None:
    """`host:port` (`[::1]:port` for IPv6) to serve metrics on; empty means off."""
    value = raw.strip()
    if value == "":
        return None
    match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$", value)
    if not match or not 0 < int(match.group(3)) < 65536:
        _bad(name, raw, "host:port such as 127.0.0.1:9101, 0.0.0.0:9101 or [::]:9101, or empty for off")
    return (match.group(1) or match.group(2), int(match.group(3)))


def seconds(name: str, raw: str) -> float:
    """A duration in seconds: a plain number is seconds, or a number with `ms`, `s`, `m`, `h` or `d`
    (`500ms`, `90s`, `15m`, `12h`, `7d`); at most 10 years."""
    return _duration(name, raw, allow_zero=False)


def seconds_at_most(maximum: float) -> Callable[[str, str], float]:
    """A `seconds` parser with its own upper bound."""

    def parse(name: str, raw: str) -> float:
        return _duration(name, raw, allow_zero=False, maximum=maximum)

    return parse


def seconds_or_zero(name: str, raw: str) -> float:
    """Like `seconds`, and `0` (any unit) too: for durations where 0 means "off"."""
    return _duration(name, raw, allow_zero=True)


def choice(*allowed: str) -> Callable[[str, str], str]:
    """One of a few fixed words (case-insensitive)."""

    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            _bad(name, raw, "one of " + ", ".join(allowed))
        return value

    return parse


def port(name: str, raw: str) -> int:
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        _bad(name, raw, "a TCP port from 1 to 65535")
    if not 0 < value <= 65535:
        _bad(name, raw, "a TCP port from 1 to 65535")
    return value


def optional_connections(name: str, raw: str) -> int | None:
    """Empty: not set (the older name decides); otherwise 1 to 256."""
    return None if raw.strip() == "" else positive_int_at_most(256)(name, raw)


def optional_email_address(name: str, raw: str) -> str:
    return "" if raw.strip() == "" else email_address(name, raw)


def optional_file(name: str, raw: str) -> Path | None:
    """Empty: not set. Otherwise a readable file, checked now rather than at the first send."""
    if raw.strip() == "":
        return None
    path = Path(raw)
    if not path.is_file() or not os.access(path, os.R_OK):
        _bad(name, raw, "the path of a readable file")
    return path


def database_url(name: str, raw: str) -> str:
    """A libpq conninfo (URL or key=value), checked as libpq would parse it.

    The messages never quote the value or psycopg's parse error, which may hold the password.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    expected = "a libpq URL such as postgresql://user@host:5432/dbname, or key=value pairs such as 'host=db dbname=app'"
    if raw.strip() == "":
        raise ConfigError(name, f"is empty; expected {expected}", expected)
    try:
        params = conninfo_to_dict(raw)
    except ProgrammingError:
        raise ConfigError(name, f"cannot be parsed as a connection string; expected {expected}", expected) from None
    for port in str(params.get("port") or "").split(","):
        if port.strip() and not (port.strip().isdigit() and 0 < int(port.strip()) < 65536):
            raise ConfigError(name, "the port is not a number from 1 to 65535", expected)
    return raw


def redirect_address(name: str, raw: str) -> str:
    """Empty: off. Otherwise one bare address (`qa@example.com`, no display name, no list)."""
    from mailroom.redirect import parse_address

    if raw.strip() == "":
        return ""
    from mailroom.addresses import problem

    expected = "one email address such as staging-inbox@example.com (no name, no list), or empty for off"
    value = parse_address(raw)
    if value is None or _CONTROL.search(raw):
        _bad(name, raw, expected)
    why = problem(value)  # the address rule every recipient meets (migrations/0006_email_rule.sql)
    if why is not None:
        _bad(name, raw, f"{expected}; this one is not sendable: {why}")
    return value


def redirect_exceptions(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated whole addresses and `@domain` entries (see mailroom/redirect.py)."""
    from mailroom.redirect import parse_exceptions

    entries = parse_exceptions(raw)
    if entries is None or _CONTROL.search(raw):
        _bad(name, raw, "a comma-separated list of whole addresses (qa@example.com) and @domain entries (@example.com)")
    return entries


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable(
            "MAILROOM_DATABASE_URL",
            None,
            "PostgreSQL connection: a libpq URL or key=value string. Required "
            "(`mailroom demo` alone starts a throwaway database when it is not set).",
            database_url,
            secret=True,
            hint="set it to your app's database, e.g. postgresql://user@db.internal:5432/app "
            "or 'host=db.internal dbname=app user=mailroom'",
        ),
        Variable(
            "MAILROOM_SCHEMA",
            "mailroom",
            "PostgreSQL schema that holds everything mailroom owns (tables, functions, yoyo's "
            "bookkeeping); every program sets its search_path to it alone.",
            identifier,
        ),
        Variable(
            "MAILROOM_SECRET_KEY",
            None,
            "HMAC-SHA256 key that signs the tokens in the links: 64 hex characters (32 bytes).",
            secret_key,
            secret=True,
            hint=f"64 hex characters, the key your app verifies links with ({SECRET_KEY_HINT})",
        ),
        Variable(
            "MAILROOM_PREVIOUS_SECRET_KEYS",
            "",
            "Keys that signed links before a key rotation, comma-separated, each 64 hex characters: "
            "`mailroom verify` (and apps passing them to mailroom.verify) still accept their links; "
            "nothing signs with them. Empty: none.",
            previous_secret_keys,
            secret=True,
            hint="comma-separated 64-hex-character keys, the keys MAILROOM_SECRET_KEY had before",
        ),
        Variable(
            "MAILROOM_CHANNEL_NAME",
            "token_insert",
            "NOTIFY channel the collector LISTENs on (registered with its queue).",
            identifier,
        ),
        Variable(
            "MAILROOM_QUEUE_NAME",
            "mailroom",
            "Name of this consumer's queue: its progress is kept per name.",
            identifier,
        ),
        Variable(
            "MAILROOM_HEALTHCHECK_INTERVAL",
            "270000",
            "Milliseconds of silence after which the collector checks its connection "
            "(and reads the queue). At least MAILROOM_BATCH_TIMEOUT, at most 86400000 (a day).",
            positive_int_at_most(86_400_000),
        ),
        Variable(
            "MAILROOM_BATCH_TIMEOUT",
            "5000",
            "Milliseconds after the first notification before the collector reads, "
            "unless MAILROOM_BATCH_LIMIT notifications come sooner. At most 3600000 (an hour).",
            positive_int_at_most(3_600_000),
        ),
        Variable(
            "MAILROOM_BATCH_LIMIT",
            "10",
            "Notifications that trigger a read early; also the most records per line (at most 10000).",
            positive_int_at_most(10_000),
        ),
        Variable("MAILROOM_LOG_LEVEL", "info", "Log level: debug, info, warning, error or critical.", log_level),
        Variable(
            "MAILROOM_LOG_FORMAT",
            "text",
            "Log lines on stderr: text (`time LEVEL program: message`) or json (one JSON object per line).",
            log_format,
        ),
        Variable(
            "MAILROOM_COLLECTOR_METRICS_ADDR",
            "",
            "host:port where the collector serves /metrics (Prometheus), /healthz and /readyz; empty: off.",
            listen_address,
        ),
        Variable(
            "MAILROOM_SENDER_METRICS_ADDR",
            "",
            "host:port where the sender serves /metrics (Prometheus), /healthz and /readyz; empty: off.",
            listen_address,
        ),
        Variable(
            "MAILROOM_DEBUG", "false", "true: the sender prints each email to stdout instead of calling SES.", boolean
        ),
        Variable(
            "MAILROOM_SES_CONFIG_SET",
            "",
            "SES configuration set for every send; empty (the default) sends none. "
            "(The earlier implementation defaulted to 'default', which a new SES account does not have.)",
            optional_ses_name,
        ),
        Variable(
            "MAILROOM_SES_SOURCE",
            "noreply@localhost",
            "Older name of MAILROOM_SOURCE, still honoured (both set to different values is an error).",
            email_address,
        ),
        Variable(
            "MAILROOM_SES_OUTPUT_PATH",
            "./output",
            "Directory of the sender's deliveries.jsonl, rejects.jsonl, journal and saved SES error responses.",
            directory,
        ),
        Variable("MAILROOM_SES_TEMPLATE_ACTIVATION", "activationv1", "SES template for activation emails.", ses_name),
        Variable(
            "MAILROOM_SES_TEMPLATE_RECOVERY",
            "passwordrecoveryv1",
            "SES template for password-recovery emails.",
            ses_name,
        ),
        Variable(
            "MAILROOM_TEMPLATES_DIR",
            "",
            "Folder of your own email templates (activation/ and password_recovery/, each with subject.txt, "
            "body.txt and body.html) for the sender's SMTP provider and debug mode and `mailroom templates push` "
            "and `render`; "
            "empty: the templates shipped with mailroom.",
            optional_existing_directory,
        ),
        Variable(
            "MAILROOM_SEND_DEADLINE",
            "600",
            "How long after a record is read it may still be sent (a duration: seconds, or 10m, 1h, ...); "
            "past it the record is rejected. At most 7d.",
            seconds_at_most(604_800.0),
        ),
        Variable(
            "MAILROOM_SES_CONCURRENCY",
            "4",
            "Older name of MAILROOM_CONNECTIONS, still honoured (both set to different values is an error).",
            positive_int_at_most(256),
        ),
        Variable(
            "MAILROOM_SES_MAX_SEND_RATE",
            "",
            "Most emails per second, at least 1 and at most 1000000; empty: the account's MaxSendRate from "
            "GetSendQuota (14 for SMTP). Debug mode is not paced.",
            optional_send_rate,
        ),
        Variable(
            "MAILROOM_APP_URL",
            "http://localhost:8000",
            "Base URL of the links in emails (filled into the templates).",
            http_url,
        ),
        Variable(
            "MAILROOM_PROVIDER",
            "ses",
            "How the sender sends: ses (the SES API) or smtp (any SMTP relay). MAILROOM_DEBUG=true prints instead.",
            choice("ses", "smtp"),
        ),
        Variable(
            "MAILROOM_SOURCE",
            "",
            "From address of every email, for either provider; empty: MAILROOM_SES_SOURCE.",
            optional_email_address,
        ),
        Variable(
            "MAILROOM_CONNECTIONS",
            "",
            "SES calls or SMTP connections in flight at once (at most 256); empty: MAILROOM_SES_CONCURRENCY.",
            optional_connections,
        ),
        Variable(
            "MAILROOM_SMTP_HOST", "", "SMTP server (relay) host name; required when MAILROOM_PROVIDER=smtp.", text
        ),
        Variable("MAILROOM_SMTP_PORT", "587", "SMTP server port (587 for starttls, 465 for tls).", port),
        Variable("MAILROOM_SMTP_USERNAME", "", "SMTP login; empty: no AUTH.", text),
        Variable(
            "MAILROOM_SMTP_PASSWORD", "", "SMTP password (or the relay's API key); never logged.", text, secret=True
        ),
        Variable(
            "MAILROOM_SMTP_TLS",
            "starttls",
            "starttls (upgrade on connect, required), tls (implicit TLS, port 465) or none (loopback hosts only, "
            "unless MAILROOM_SMTP_ALLOW_PLAINTEXT=true).",
            choice("starttls", "tls", "none"),
        ),
        Variable(
            "MAILROOM_SMTP_ALLOW_PLAINTEXT",
            "false",
            "true: allow MAILROOM_SMTP_TLS=none to a host that is not loopback (a sink on a private network).",
            boolean,
        ),
        Variable(
            "MAILROOM_SMTP_TIMEOUT",
            "10",
            "How long to wait for the SMTP server at each step (a duration: seconds, or 500ms, 30s, ...).",
            seconds,
        ),
        Variable(
            "MAILROOM_SMTP_CA_FILE",
            "",
            "PEM bundle of CAs to trust for the SMTP server, besides the system's; empty: the system's only.",
            optional_file,
        ),
        Variable(
            "MAILROOM_REDIRECT_TO",
            "",
            "Staging: deliver every email to this one address instead of its recipient, the subject starting "
            "with `[to: original@address]` (SES, SMTP and debug mode); empty: off.",
            redirect_address,
        ),
        Variable(
            "MAILROOM_REDIRECT_EXCEPT",
            "",
            "With MAILROOM_REDIRECT_TO: the addresses still sent to their own recipient, comma-separated whole "
            "addresses (qa@example.com) and @domain entries (@example.com: that domain exactly, any case).",
            redirect_exceptions,
        ),
        Variable(
            "MAILROOM_PRUNE_AFTER",
            "7d",
            "How long consumed or expired tokens are kept before `mailroom prune` deletes them (at most 3650d).",
            seconds,
        ),
        Variable(
            "MAILROOM_RECOVERY_COOLDOWN",
            "60s",
            "At most one email per account and action (password recovery, activation) per this duration: "
            "the collector skips a token created within it of the last one emailed. 0 turns it off.",
            seconds_or_zero,
        ),
        Variable(
            "MAILROOM_EVENTS_QUEUE_URL",
            "",
            "URL of the SQS queue SES events arrive on (through SNS or EventBridge); required by `mailroom events`.",
            optional_http_url,
        ),
        Variable(
            "MAILROOM_TRANSIENT_BOUNCE_LIMIT",
            "3",
            "Transient bounces of one address within MAILROOM_TRANSIENT_BOUNCE_WINDOW that suppress it (at most 1000).",
            positive_int_at_most(1000),
        ),
        Variable(
            "MAILROOM_TRANSIENT_BOUNCE_WINDOW",
            "7d",
            "The window in which MAILROOM_TRANSIENT_BOUNCE_LIMIT transient bounces suppress an address.",
            seconds,
        ),
        Variable(
            "MAILROOM_EVENTS_METRICS_ADDR",
            "",
            "host:port where `mailroom events` serves /metrics (Prometheus), /healthz and /readyz; empty: off.",
            listen_address,
        ),
    )
}


def load_environment(dotenv_path: str | os.PathLike[str] = ".env") -> Mapping[str, str]:
    """The process environment, with an optional `.env` file under it (the environment wins).

    The `.env` values are also put into `os.environ` so that libraries configured by the
    environment (boto3's AWS_* variables) see them too.
    """
    path = Path(dotenv_path)
    if path.is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)
    return os.environ


def read(environ: Mapping[str, str], *names: str) -> dict[str, Any]:
    """Parse the named variables from `environ`, falling back to their defaults."""
    values: dict[str, Any] = {}
    for name in names:
        var = VARIABLES[name]
        raw = environ.get(name)
        if raw is None:
            if var.default is None:
                raise ConfigError(name, "is required but not set; " + (var.hint or var.meaning), var.hint or None)
            raw = var.default
        try:
            values[name] = var.parse(name, raw)
        except ConfigError as exc:
            message = exc.message
            if (
                var.secret and exc.expected and raw.strip() and raw in message
            ):  # say what is wrong, never show the value
                message = f"the value is invalid; expected {exc.expected}"
            if _INLINE_COMMENT.search(raw) and INLINE_COMMENT_HINT not in message:
                message += INLINE_COMMENT_HINT
            raise ConfigError(name, message, exc.expected) from None
    return values


# Names with the MAILROOM_ prefix that are not settings of the programs but are read by
# the test suite and the benchmarks: no warning for them.
NOT_SETTINGS = frozenset({"MAILROOM_TEST_DATABASE_URL", "MAILROOM_BENCH_DATABASE_URL"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One message per `MAILROOM_*` name in `environ` that is no setting, with the closest one.

    A misspelled variable (MAILROOM_BATCH_LIMT) is otherwise ignored in silence and its
    setting keeps the default.
    """
    messages = []
    for name in sorted(environ):
        if not name.startswith("MAILROOM_") or name in VARIABLES or name in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(name, VARIABLES, n=1, cutoff=0.6)
        messages.append(
            f"{name} is not a mailroom setting; " + (f"did you mean {close[0]}?" if close else "it is ignored")
        )
    return messages


def warn_unknown_variables(environ: Mapping[str, str], logger: logging.Logger) -> None:
    """Log one warning per unknown `MAILROOM_*` name; every program calls this at start,
    after `load_environment` (so names from `.env` are included) and logging is set up."""
    for message in unknown_variables(environ):
        logger.warning("%s", message)


def help_epilog(names: tuple[str, ...]) -> str:
    """The `--help` text that lists each variable a program reads."""
    lines = ["environment variables (also read from ./.env; the environment wins):"]
    for name in names:
        var = VARIABLES[name]
        lines.append(f"  {name}  [default: {var.describe_default()}]")
        lines.append(f"      {var.meaning}")
    return "\n".join(lines)


def exit_on_config_error(program: str, error: ConfigError) -> NoReturn:
    """Print the one-line configuration error and exit with status 2."""
    print(f"{program}: invalid configuration: {error}", file=sys.stderr)
    raise SystemExit(CONFIG_EXIT_STATUS)


COLLECTOR_VARIABLES = (
    "MAILROOM_DATABASE_URL",
    "MAILROOM_SCHEMA",
    "MAILROOM_SECRET_KEY",
    "MAILROOM_CHANNEL_NAME",
    "MAILROOM_QUEUE_NAME",
    "MAILROOM_HEALTHCHECK_INTERVAL",
    "MAILROOM_BATCH_TIMEOUT",
    "MAILROOM_BATCH_LIMIT",
    "MAILROOM_RECOVERY_COOLDOWN",
    "MAILROOM_LOG_LEVEL",
    "MAILROOM_LOG_FORMAT",
    "MAILROOM_COLLECTOR_METRICS_ADDR",
)


@dataclass(frozen=True)
class CollectorSettings:
    database_url: str
    secret_key: bytes
    channel_name: str
    queue_name: str
    healthcheck_interval_ms: int
    batch_timeout_ms: int
    batch_limit: int
    log_level: str
    recovery_cooldown_s: float
    log_format: str = "text"
    metrics_addr: tuple[str, int] | None = None
    schema: str = "mailroom"

    def __repr__(self) -> str:  # never print the key or the password in the URL
        return (
            f"CollectorSettings(schema={self.schema!r}, channel_name={self.channel_name!r}, queue_name={self.queue_name!r}, "
            f"batch_limit={self.batch_limit}, batch_timeout_ms={self.batch_timeout_ms}, "
            f"healthcheck_interval_ms={self.healthcheck_interval_ms}, recovery_cooldown_s={self.recovery_cooldown_s:g})"
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CollectorSettings:
        v = read(environ, *COLLECTOR_VARIABLES)
        _check_healthcheck_covers_batch_timeout(
            environ, v["MAILROOM_HEALTHCHECK_INTERVAL"], v["MAILROOM_BATCH_TIMEOUT"]
        )
        return cls(
            database_url=v["MAILROOM_DATABASE_URL"],
            secret_key=v["MAILROOM_SECRET_KEY"],
            channel_name=v["MAILROOM_CHANNEL_NAME"],
            queue_name=v["MAILROOM_QUEUE_NAME"],
            healthcheck_interval_ms=v["MAILROOM_HEALTHCHECK_INTERVAL"],
            batch_timeout_ms=v["MAILROOM_BATCH_TIMEOUT"],
            batch_limit=v["MAILROOM_BATCH_LIMIT"],
            log_level=v["MAILROOM_LOG_LEVEL"],
            recovery_cooldown_s=v["MAILROOM_RECOVERY_COOLDOWN"],
            log_format=v["MAILROOM_LOG_FORMAT"],
            metrics_addr=v["MAILROOM_COLLECTOR_METRICS_ADDR"],
            schema=v["MAILROOM_SCHEMA"],
        )


def _check_healthcheck_covers_batch_timeout(environ: Mapping[str, str], interval: int, timeout: int) -> None:
    """MAILROOM_HEALTHCHECK_INTERVAL >= MAILROOM_BATCH_TIMEOUT, blaming what the user set."""
    if interval >= timeout:
        return
    interval_name, timeout_name = "MAILROOM_HEALTHCHECK_INTERVAL", "MAILROOM_BATCH_TIMEOUT"
    set_interval, set_timeout = interval_name in environ, timeout_name in environ
    if set_timeout and not set_interval:
        raise ConfigError(
            timeout_name,
            f"'{timeout}' is invalid; expected at most {interval_name} ({interval} ms, its default)",
        )
    if set_interval and not set_timeout:
        raise ConfigError(
            interval_name,
            f"'{interval}' is invalid; expected at least {timeout_name} ({timeout} ms, its default)",
        )
    raise ConfigError(
        f"{timeout_name} and {interval_name}",
        f"the batch timeout ({timeout} ms) is longer than the health check interval ({interval} ms); "
        "expected the interval to be at least the timeout",
    )


SENDER_VARIABLES = (
    "MAILROOM_DEBUG",
    "MAILROOM_PROVIDER",
    "MAILROOM_SOURCE",
    "MAILROOM_SES_SOURCE",
    "MAILROOM_SES_CONFIG_SET",
    "MAILROOM_SES_TEMPLATE_ACTIVATION",
    "MAILROOM_SES_TEMPLATE_RECOVERY",
    "MAILROOM_SES_OUTPUT_PATH",
    "MAILROOM_SEND_DEADLINE",
    "MAILROOM_CONNECTIONS",
    "MAILROOM_SES_CONCURRENCY",
    "MAILROOM_SES_MAX_SEND_RATE",
    "MAILROOM_APP_URL",
    "MAILROOM_TEMPLATES_DIR",
    "MAILROOM_LOG_LEVEL",
    "MAILROOM_SMTP_HOST",
    "MAILROOM_SMTP_PORT",
    "MAILROOM_SMTP_USERNAME",
    "MAILROOM_SMTP_PASSWORD",
    "MAILROOM_SMTP_TLS",
    "MAILROOM_SMTP_ALLOW_PLAINTEXT",
    "MAILROOM_SMTP_TIMEOUT",
    "MAILROOM_SMTP_CA_FILE",
    "MAILROOM_LOG_FORMAT",
    "MAILROOM_SENDER_METRICS_ADDR",
    "MAILROOM_REDIRECT_TO",
    "MAILROOM_REDIRECT_EXCEPT",
)


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how the SMTP provider connects; validated as a whole when it is the provider."""

    host: str = ""
    port: int = 587
    username: str = ""
    password: str = field(default="", repr=False)
    tls: str = "starttls"
    allow_plaintext: bool = False
    timeout_s: float = 10.0
    ca_file: Path | None = None

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> SmtpSettings:
        return cls(
            host=v["MAILROOM_SMTP_HOST"].strip(),
            port=v["MAILROOM_SMTP_PORT"],
            username=v["MAILROOM_SMTP_USERNAME"],
            password=v["MAILROOM_SMTP_PASSWORD"],
            tls=v["MAILROOM_SMTP_TLS"],
            allow_plaintext=v["MAILROOM_SMTP_ALLOW_PLAINTEXT"],
            timeout_s=v["MAILROOM_SMTP_TIMEOUT"],
            ca_file=v["MAILROOM_SMTP_CA_FILE"],
        )

    def validate(self) -> None:
        """What only makes sense together: raised only when SMTP is the provider."""
        if not self.host:
            raise ConfigError("MAILROOM_SMTP_HOST", "is required when MAILROOM_PROVIDER=smtp; the SMTP server's name")
        if self.tls == "none" and not self.allow_plaintext and not is_loopback(self.host):
            raise ConfigError(
                "MAILROOM_SMTP_TLS",
                f"'none' sends mail (and any password) in clear text to {self.host!r}, which is not a loopback host;"
                " use starttls or tls, or set MAILROOM_SMTP_ALLOW_PLAINTEXT=true to force it",
            )
        if self.password and not self.username:
            raise ConfigError("MAILROOM_SMTP_USERNAME", "is empty but MAILROOM_SMTP_PASSWORD is set; set both or none")
        if self.username and not self.password:
            raise ConfigError("MAILROOM_SMTP_PASSWORD", "is empty but MAILROOM_SMTP_USERNAME is set; set both or none")


def is_loopback(host: str) -> bool:
    """localhost or a loopback address: mail that never leaves the machine."""
    import ipaddress

    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def renamed(environ: Mapping[str, str], v: Mapping[str, Any], new: str, old: str) -> Any:
    """A variable with an older name: the new name wins when only it is set; the old one is still
    honoured; both set to different values is an error, since one of them would be silently ignored."""
    if environ.get(new, "").strip() != "" and old in environ and v[new] != v[old]:
        raise ConfigError(new, f"'{v[new]}' differs from {old} '{v[old]}'; set only {new}")
    if environ.get(new, "").strip() != "":
        return v[new]
    return v[old]


@dataclass(frozen=True)
class SenderSettings:
    debug: bool
    source: str
    config_set: str
    template_activation: str
    template_recovery: str
    output_path: Path
    send_deadline_s: float
    concurrency: int
    max_send_rate: float | None
    app_url: str
    log_level: str
    provider: str = "ses"
    smtp: SmtpSettings = SmtpSettings()
    templates_dir: Path | None = None  # None: the shipped templates
    log_format: str = "text"
    metrics_addr: tuple[str, int] | None = None
    redirect_to: str = ""  # empty: not redirecting
    redirect_except: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SenderSettings:
        v = read(environ, *SENDER_VARIABLES)
        smtp = SmtpSettings.from_values(v)
        if v["MAILROOM_PROVIDER"] == "smtp" and not v["MAILROOM_DEBUG"]:
            smtp.validate()
        if v["MAILROOM_REDIRECT_EXCEPT"] and not v["MAILROOM_REDIRECT_TO"]:
            raise ConfigError(
                "MAILROOM_REDIRECT_EXCEPT",
                "is set but MAILROOM_REDIRECT_TO is empty, so nothing is redirected and the list means nothing; "
                "set MAILROOM_REDIRECT_TO (staging) or empty MAILROOM_REDIRECT_EXCEPT",
            )
        return cls(
            debug=v["MAILROOM_DEBUG"],
            provider=v["MAILROOM_PROVIDER"],
            smtp=smtp,
            source=renamed(environ, v, "MAILROOM_SOURCE", "MAILROOM_SES_SOURCE"),
            config_set=v["MAILROOM_SES_CONFIG_SET"],
            template_activation=v["MAILROOM_SES_TEMPLATE_ACTIVATION"],
            template_recovery=v["MAILROOM_SES_TEMPLATE_RECOVERY"],
            output_path=v["MAILROOM_SES_OUTPUT_PATH"],
            send_deadline_s=v["MAILROOM_SEND_DEADLINE"],
            concurrency=renamed(environ, v, "MAILROOM_CONNECTIONS", "MAILROOM_SES_CONCURRENCY"),
            max_send_rate=v["MAILROOM_SES_MAX_SEND_RATE"],
            app_url=v["MAILROOM_APP_URL"],
            log_level=v["MAILROOM_LOG_LEVEL"],
            templates_dir=v["MAILROOM_TEMPLATES_DIR"],
            log_format=v["MAILROOM_LOG_FORMAT"],
            metrics_addr=v["MAILROOM_SENDER_METRICS_ADDR"],
            redirect_to=v["MAILROOM_REDIRECT_TO"],
            redirect_except=v["MAILROOM_REDIRECT_EXCEPT"],
        )


def markdown_table() -> str:
    """The README's configuration table, generated so that it cannot drift from the code."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for var in VARIABLES.values():
        default = "*(required)*" if var.default is None else ("*(empty)*" if var.default == "" else f"`{var.default}`")
        rows.append(f"| `{var.name}` | {default} | {var.meaning.replace('|', '/')} |")
    return "\n".join(rows)


EVENTS_VARIABLES = (
    "MAILROOM_DATABASE_URL",
    "MAILROOM_SCHEMA",
    "MAILROOM_EVENTS_QUEUE_URL",
    "MAILROOM_TRANSIENT_BOUNCE_LIMIT",
    "MAILROOM_TRANSIENT_BOUNCE_WINDOW",
    "MAILROOM_EVENTS_METRICS_ADDR",
    "MAILROOM_LOG_LEVEL",
    "MAILROOM_LOG_FORMAT",
)


@dataclass(frozen=True)
class EventsSettings:
    """`mailroom events`: where SES events come from and when transient bounces suppress."""

    database_url: str = field(repr=False)
    queue_url: str
    transient_limit: int = 3
    transient_window_s: float = 7 * 86400.0
    metrics_addr: tuple[str, int] | None = None
    schema: str = "mailroom"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, need_queue: bool = True) -> EventsSettings:
        v = read(environ, *EVENTS_VARIABLES)
        if need_queue and not v["MAILROOM_EVENTS_QUEUE_URL"]:
            raise ConfigError(
                "MAILROOM_EVENTS_QUEUE_URL",
                "is required by `mailroom events`: the URL of the SQS queue SES events arrive on "
                "(https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)",
            )
        return cls(
            database_url=v["MAILROOM_DATABASE_URL"],
            queue_url=v["MAILROOM_EVENTS_QUEUE_URL"],
            transient_limit=v["MAILROOM_TRANSIENT_BOUNCE_LIMIT"],
            transient_window_s=v["MAILROOM_TRANSIENT_BOUNCE_WINDOW"],
            metrics_addr=v["MAILROOM_EVENTS_METRICS_ADDR"],
            schema=v["MAILROOM_SCHEMA"],
        )
