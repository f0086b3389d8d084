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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

CONFIG_EXIT_STATUS = 2

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_HEX = re.compile(r"^[0-9a-fA-F]*$")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
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


def optional_existing_directory(name: str, raw: str) -> Path | None:
    """Empty means "not set"; otherwise a directory that exists now."""
    if raw.strip() == "":
        return None
    if not Path(raw).is_dir():
        _bad(name, raw, "an existing directory (or empty)")
    return Path(raw)


def http_url(name: str, raw: str) -> str:
    if not re.match(r"^https?://[^\s/]+", raw):
        _bad(name, raw, "an http:// or https:// URL")
    return raw.rstrip("/")


def email_address(name: str, raw: str) -> str:
    if not re.match(r"^[^@\s]+@[^@\s]+$", raw.split("<")[-1].rstrip(">").strip()):
        _bad(name, raw, "an email address such as noreply@example.com or 'Name <noreply@example.com>'")
    return raw


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(name: str, raw: str, allow_zero: bool) -> float:
    match = _DURATION.match(raw)
    if not match or (float(match.group(1)) <= 0 and not allow_zero):
        kind = "duration" if allow_zero else "positive duration"
        _bad(name, raw, f"a {kind} such as 3600, 90s, 15m, 12h or 7d" + (" (0 turns it off)" if allow_zero else ""))
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def seconds(name: str, raw: str) -> float:
    """A duration such as `90`, `90s`, `15m`, `12h` or `7d`, in seconds."""
    return _duration(name, raw, allow_zero=False)


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


def optional_positive_int(name: str, raw: str) -> int | None:
    return None if raw.strip() == "" else positive_int(name, raw)


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
            "MAILROOM_DEBUG", "false", "true: the sender prints each email to stdout instead of calling SES.", boolean
        ),
        Variable(
            "MAILROOM_SES_CONFIG_SET",
            "",
            "SES configuration set for every send; empty (the default) sends none. "
            "(The earlier implementation defaulted to 'default', which a new SES account does not have.)",
            text,
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
        Variable("MAILROOM_SES_TEMPLATE_ACTIVATION", "activationv1", "SES template for activation emails.", nonempty),
        Variable(
            "MAILROOM_SES_TEMPLATE_RECOVERY",
            "passwordrecoveryv1",
            "SES template for password-recovery emails.",
            nonempty,
        ),
        Variable(
            "MAILROOM_TEMPLATES_DIR",
            "",
            "Folder of your own email templates (activation/ and password_recovery/, each with subject.txt, "
            "body.txt and body.html) for the sender's debug mode and `mailroom templates push` and `render`; "
            "empty: the templates shipped with mailroom.",
            optional_existing_directory,
        ),
        Variable(
            "MAILROOM_SEND_DEADLINE",
            "600",
            "Seconds after a record is read past which it is no longer sent (rejected).",
            positive_number,
        ),
        Variable(
            "MAILROOM_SES_CONCURRENCY",
            "4",
            "Older name of MAILROOM_CONNECTIONS, still honoured (both set to different values is an error).",
            positive_int,
        ),
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
            "SES calls or SMTP connections in flight at once; empty: MAILROOM_SES_CONCURRENCY.",
            optional_positive_int,
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
        Variable("MAILROOM_SMTP_TIMEOUT", "10", "Seconds to wait for the SMTP server at each step.", seconds),
        Variable(
            "MAILROOM_SMTP_CA_FILE",
            "",
            "PEM bundle of CAs to trust for the SMTP server, besides the system's; empty: the system's only.",
            optional_file,
        ),
        Variable(
            "MAILROOM_PRUNE_AFTER",
            "7d",
            "How long consumed or expired tokens are kept before `mailroom prune` deletes them.",
            seconds,
        ),
        Variable(
            "MAILROOM_RECOVERY_COOLDOWN",
            "60s",
            "At most one email per account and action (password recovery, activation) per this duration: "
            "the collector skips a token created within it of the last one emailed. 0 turns it off.",
            seconds_or_zero,
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
    "MAILROOM_RECOVERY_COOLDOWN",
    "MAILROOM_LOG_LEVEL",
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

    def __repr__(self) -> str:  # never print the key or the password in the URL
        return (
            f"CollectorSettings(channel_name={self.channel_name!r}, queue_name={self.queue_name!r}, "
            f"batch_limit={self.batch_limit}, batch_timeout_ms={self.batch_timeout_ms}, "
            f"healthcheck_interval_ms={self.healthcheck_interval_ms}, recovery_cooldown_s={self.recovery_cooldown_s:g})"
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
            recovery_cooldown_s=v["MAILROOM_RECOVERY_COOLDOWN"],
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

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SenderSettings:
        v = read(environ, *SENDER_VARIABLES)
        smtp = SmtpSettings.from_values(v)
        if v["MAILROOM_PROVIDER"] == "smtp" and not v["MAILROOM_DEBUG"]:
            smtp.validate()
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
        )


def markdown_table() -> str:
    """The README's configuration table, generated so that it cannot drift from the code."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for var in VARIABLES.values():
        default = "*(required)*" if var.default is None else ("*(empty)*" if var.default == "" else f"`{var.default}`")
        rows.append(f"| `{var.name}` | {default} | {var.meaning.replace('|', '/')} |")
    return "\n".join(rows)
