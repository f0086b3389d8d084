"""Typed settings for each program, built once from the environment and validated at start-up.

Every `MAILROOM_*` variable is declared once in `VARIABLES` below: its default, what it
means and how its value is checked. Programs build a frozen settings object from the
variables they read and pass it down explicitly; nothing else reads `os.environ`.

An invalid value is never replaced by a default: `ConfigError` names the variable, the bad
value (never for secrets) and what is expected, and the program exits with status 2.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

CONFIG_EXIT_STATUS = 2

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_HEX = re.compile(r"^[0-9a-fA-F]*$")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_LOG_FORMATS = ("text", "json")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(Exception):
    """A setting is missing or invalid; the message is meant for the operator as it is."""

    def __init__(self, name: str, message: str, expected: str | None = None) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.expected = expected


@dataclass(frozen=True)
class Variable:
    """One environment variable: its default (None means required), meaning and parser."""

    name: str
    default: str | None
    meaning: str
    parse: Callable[[str, str], Any]
    secret: bool = False

    def describe_default(self) -> str:
        if self.default is None:
            return "(required)"
        return repr(self.default) if self.default == "" else self.default


def _bad(name: str, raw: str, expected: str) -> NoReturn:
    raise ConfigError(name, f"{raw!r} is invalid; expected {expected}", expected)


def positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        _bad(name, raw, "a positive whole number")
    if value <= 0:
        _bad(name, raw, "a positive whole number")
    return value


def positive_number(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        _bad(name, raw, "a positive number")
    if not value > 0 or value == float("inf"):
        _bad(name, raw, "a positive number")
    return value


def optional_positive_number(name: str, raw: str) -> float | None:
    """Empty means "not set" (the program decides, and says so in the variable's meaning)."""
    return None if raw.strip() == "" else positive_number(name, raw)


def optional_send_rate(name: str, raw: str) -> float | None:
    """Empty means "ask the provider"; below 1 email/s no call of one destination could ever start."""
    value = optional_positive_number(name, raw)
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
    if not _IDENTIFIER.match(raw):
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
    if len(value) != 64 or not _HEX.match(value):
        raise ConfigError(
            name,
            f"expected 64 hex characters (a 32-byte key); got {len(value)} characters"
            + ("" if _HEX.match(value) else " including non-hex ones")
            + " (generate one with: openssl rand -hex 32)",
        )
    return bytes.fromhex(value)


def directory(name: str, raw: str) -> Path:
    if raw.strip() == "":
        _bad(name, raw, "a directory path")
    return Path(raw)


def http_url(name: str, raw: str) -> str:
    if not re.match(r"^https?://[^\s/]+", raw):
        _bad(name, raw, "an http:// or https:// URL")
    return raw.rstrip("/")


def email_address(name: str, raw: str) -> str:
    if not re.match(r"^[^@\s]+@[^@\s]+$", raw.split("<")[-1].rstrip(">").strip()):
        _bad(name, raw, "an email address such as noreply@example.com or 'Name <noreply@example.com>'")
    return raw


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
    """A duration such as `90`, `90s`, `15m`, `12h` or `7d`, in seconds."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", raw)
    if not match or float(match.group(1)) <= 0:
        _bad(name, raw, "a positive duration such as 3600, 90s, 15m, 12h or 7d")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * unit


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable(
            "MAILROOM_DATABASE_URL",
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "PostgreSQL connection: a libpq URL or key=value string.",
            nonempty,
            secret=True,
        ),
        Variable(
            "MAILROOM_SECRET_KEY",
            None,
            "HMAC-SHA256 key that signs secrets: 64 hex characters (32 bytes).",
            secret_key,
            secret=True,
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
            "(and reads the queue). At least MAILROOM_BATCH_TIMEOUT.",
            positive_int,
        ),
        Variable(
            "MAILROOM_BATCH_TIMEOUT",
            "5000",
            "Milliseconds after the first notification before the collector reads, "
            "unless MAILROOM_BATCH_LIMIT notifications come sooner.",
            positive_int,
        ),
        Variable(
            "MAILROOM_BATCH_LIMIT",
            "10",
            "Notifications that trigger a read early; also the most records per line.",
            positive_int,
        ),
        Variable("MAILROOM_LOG_LEVEL", "info", "Log level: debug, info, warning or error.", log_level),
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
            text,
        ),
        Variable("MAILROOM_SES_SOURCE", "noreply@localhost", "From address of every email.", email_address),
        Variable(
            "MAILROOM_SES_OUTPUT_PATH",
            "./output",
            "Directory of the sender's deliveries.jsonl, rejects.jsonl, journal and saved SES error responses.",
            directory,
        ),
        Variable("MAILROOM_SES_TEMPLATE_ACTIVATION", "activationv1", "SES template for activation emails.", nonempty),
        Variable(
            "MAILROOM_SES_TEMPLATE_RECOVERY",
            "passwordrecoveryv1",
            "SES template for password-recovery emails.",
            nonempty,
        ),
        Variable(
            "MAILROOM_SEND_DEADLINE",
            "600",
            "Seconds after a record is read past which it is no longer sent (rejected).",
            positive_number,
        ),
        Variable("MAILROOM_SES_CONCURRENCY", "4", "SES calls in flight at once.", positive_int),
        Variable(
            "MAILROOM_SES_MAX_SEND_RATE",
            "",
            "Most emails per second, at least 1; empty: the account's MaxSendRate from GetSendQuota. "
            "Debug mode is not paced.",
            optional_send_rate,
        ),
        Variable(
            "MAILROOM_APP_URL",
            "http://localhost:8000",
            "Base URL of the links in emails (filled into the templates).",
            http_url,
        ),
        Variable(
            "MAILROOM_PRUNE_AFTER",
            "7d",
            "How long consumed or expired tokens are kept before `mailroom prune` deletes them.",
            seconds,
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
                raise ConfigError(name, "is required but not set; " + var.meaning)
            raw = var.default
        try:
            values[name] = var.parse(name, raw)
        except ConfigError as exc:
            if var.secret and exc.expected:  # say what is wrong, never show the value
                raise ConfigError(name, f"the value is invalid; expected {exc.expected}") from None
            raise
    return values


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
    "MAILROOM_SECRET_KEY",
    "MAILROOM_CHANNEL_NAME",
    "MAILROOM_QUEUE_NAME",
    "MAILROOM_HEALTHCHECK_INTERVAL",
    "MAILROOM_BATCH_TIMEOUT",
    "MAILROOM_BATCH_LIMIT",
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
    log_format: str = "text"
    metrics_addr: tuple[str, int] | None = None

    def __repr__(self) -> str:  # never print the key or the password in the URL
        return (
            f"CollectorSettings(channel_name={self.channel_name!r}, queue_name={self.queue_name!r}, "
            f"batch_limit={self.batch_limit}, batch_timeout_ms={self.batch_timeout_ms}, "
            f"healthcheck_interval_ms={self.healthcheck_interval_ms})"
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CollectorSettings:
        v = read(environ, *COLLECTOR_VARIABLES)
        if v["MAILROOM_HEALTHCHECK_INTERVAL"] < v["MAILROOM_BATCH_TIMEOUT"]:
            raise ConfigError(
                "MAILROOM_HEALTHCHECK_INTERVAL",
                f"'{v['MAILROOM_HEALTHCHECK_INTERVAL']}' is invalid; expected at least "
                f"MAILROOM_BATCH_TIMEOUT ({v['MAILROOM_BATCH_TIMEOUT']} ms)",
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
            log_format=v["MAILROOM_LOG_FORMAT"],
            metrics_addr=v["MAILROOM_COLLECTOR_METRICS_ADDR"],
        )


SENDER_VARIABLES = (
    "MAILROOM_DEBUG",
    "MAILROOM_SES_SOURCE",
    "MAILROOM_SES_CONFIG_SET",
    "MAILROOM_SES_TEMPLATE_ACTIVATION",
    "MAILROOM_SES_TEMPLATE_RECOVERY",
    "MAILROOM_SES_OUTPUT_PATH",
    "MAILROOM_SEND_DEADLINE",
    "MAILROOM_SES_CONCURRENCY",
    "MAILROOM_SES_MAX_SEND_RATE",
    "MAILROOM_APP_URL",
    "MAILROOM_LOG_LEVEL",
    "MAILROOM_LOG_FORMAT",
    "MAILROOM_SENDER_METRICS_ADDR",
)


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
    log_format: str = "text"
    metrics_addr: tuple[str, int] | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SenderSettings:
        v = read(environ, *SENDER_VARIABLES)
        return cls(
            debug=v["MAILROOM_DEBUG"],
            source=v["MAILROOM_SES_SOURCE"],
            config_set=v["MAILROOM_SES_CONFIG_SET"],
            template_activation=v["MAILROOM_SES_TEMPLATE_ACTIVATION"],
            template_recovery=v["MAILROOM_SES_TEMPLATE_RECOVERY"],
            output_path=v["MAILROOM_SES_OUTPUT_PATH"],
            send_deadline_s=v["MAILROOM_SEND_DEADLINE"],
            concurrency=v["MAILROOM_SES_CONCURRENCY"],
            max_send_rate=v["MAILROOM_SES_MAX_SEND_RATE"],
            app_url=v["MAILROOM_APP_URL"],
            log_level=v["MAILROOM_LOG_LEVEL"],
            log_format=v["MAILROOM_LOG_FORMAT"],
            metrics_addr=v["MAILROOM_SENDER_METRICS_ADDR"],
        )


def markdown_table() -> str:
    """The README's configuration table, generated so that it cannot drift from the code."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for var in VARIABLES.values():
        default = "*(required)*" if var.default is None else ("*(empty)*" if var.default == "" else f"`{var.default}`")
        rows.append(f"| `{var.name}` | {default} | {var.meaning.replace('|', '/')} |")
    return "\n".join(rows)
