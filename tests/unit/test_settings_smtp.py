"""Settings of the provider choice, the SMTP provider, and the provider-neutral names."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom.settings import ConfigError, SenderSettings

SMTP = {"MAILROOM_PROVIDER": "smtp", "MAILROOM_SMTP_HOST": "smtp.example.com"}


def test_ses_is_the_default_provider_and_smtp_has_documented_defaults() -> None:
    s = SenderSettings.from_environ({})
    assert s.provider == "ses"
    assert (s.smtp.port, s.smtp.tls, s.smtp.timeout_s, s.smtp.ca_file) == (587, "starttls", 10.0, None)


def test_smtp_settings_are_read() -> None:
    s = SenderSettings.from_environ(
        {
            **SMTP,
            "MAILROOM_SMTP_PORT": "465",
            "MAILROOM_SMTP_TLS": "TLS",
            "MAILROOM_SMTP_USERNAME": "apikey",
            "MAILROOM_SMTP_PASSWORD": "pw",
            "MAILROOM_SMTP_TIMEOUT": "30s",
        }
    )
    assert (s.provider, s.smtp.host, s.smtp.port, s.smtp.tls, s.smtp.timeout_s) == (
        "smtp",
        "smtp.example.com",
        465,
        "tls",
        30.0,
    )
    assert (s.smtp.username, s.smtp.password) == ("apikey", "pw")


def test_the_smtp_password_is_not_in_the_settings_repr() -> None:
    s = SenderSettings.from_environ({**SMTP, "MAILROOM_SMTP_USERNAME": "u", "MAILROOM_SMTP_PASSWORD": "hunter2-secret"})
    assert "hunter2-secret" not in repr(s)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"MAILROOM_PROVIDER": "sendgrid"}, "MAILROOM_PROVIDER"),
        ({"MAILROOM_PROVIDER": "smtp"}, "MAILROOM_SMTP_HOST"),
        ({**SMTP, "MAILROOM_SMTP_PORT": "0"}, "MAILROOM_SMTP_PORT"),
        ({**SMTP, "MAILROOM_SMTP_PORT": "70000"}, "MAILROOM_SMTP_PORT"),
        ({**SMTP, "MAILROOM_SMTP_PORT": "smtp"}, "MAILROOM_SMTP_PORT"),
        ({**SMTP, "MAILROOM_SMTP_TLS": "ssl"}, "MAILROOM_SMTP_TLS"),
        ({**SMTP, "MAILROOM_SMTP_TLS": "none"}, "MAILROOM_SMTP_TLS"),
        ({**SMTP, "MAILROOM_SMTP_TIMEOUT": "0"}, "MAILROOM_SMTP_TIMEOUT"),
        ({**SMTP, "MAILROOM_SMTP_ALLOW_PLAINTEXT": "sure"}, "MAILROOM_SMTP_ALLOW_PLAINTEXT"),
        ({**SMTP, "MAILROOM_SMTP_CA_FILE": "/nonexistent/ca.pem"}, "MAILROOM_SMTP_CA_FILE"),
        ({**SMTP, "MAILROOM_SMTP_USERNAME": "u"}, "MAILROOM_SMTP_PASSWORD"),
        ({**SMTP, "MAILROOM_SMTP_PASSWORD": "p"}, "MAILROOM_SMTP_USERNAME"),
        ({"MAILROOM_SOURCE": "nobody"}, "MAILROOM_SOURCE"),
        ({"MAILROOM_CONNECTIONS": "0"}, "MAILROOM_CONNECTIONS"),
        ({"MAILROOM_SOURCE": "a@example.com", "MAILROOM_SES_SOURCE": "b@example.com"}, "MAILROOM_SOURCE"),
        ({"MAILROOM_CONNECTIONS": "8", "MAILROOM_SES_CONCURRENCY": "4"}, "MAILROOM_CONNECTIONS"),
    ],
)
def test_invalid_smtp_and_provider_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as err:
        SenderSettings.from_environ(env)
    assert err.value.name == name


def test_an_invalid_smtp_password_never_appears_in_the_error() -> None:
    with pytest.raises(ConfigError) as err:
        SenderSettings.from_environ({**SMTP, "MAILROOM_SMTP_PASSWORD": "hunter2-secret"})
    assert "hunter2-secret" not in str(err.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.53", "mail.localhost"])
def test_plain_text_smtp_is_allowed_to_a_loopback_host(host: str) -> None:
    s = SenderSettings.from_environ({**SMTP, "MAILROOM_SMTP_HOST": host, "MAILROOM_SMTP_TLS": "none"})
    assert s.smtp.tls == "none"


def test_plain_text_smtp_to_another_host_needs_the_explicit_force() -> None:
    env = {**SMTP, "MAILROOM_SMTP_HOST": "mailpit", "MAILROOM_SMTP_TLS": "none"}
    with pytest.raises(ConfigError, match="MAILROOM_SMTP_ALLOW_PLAINTEXT"):
        SenderSettings.from_environ(env)
    assert SenderSettings.from_environ({**env, "MAILROOM_SMTP_ALLOW_PLAINTEXT": "true"}).smtp.host == "mailpit"


def test_debug_mode_needs_no_smtp_host_whatever_the_provider() -> None:
    assert SenderSettings.from_environ({"MAILROOM_PROVIDER": "smtp", "MAILROOM_DEBUG": "true"}).debug


def test_a_ca_file_that_exists_is_taken(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert SenderSettings.from_environ({**SMTP, "MAILROOM_SMTP_CA_FILE": str(ca)}).smtp.ca_file == ca


@pytest.mark.parametrize(
    ("env", "source", "connections"),
    [
        ({}, "noreply@localhost", 4),
        ({"MAILROOM_SOURCE": "a@example.com", "MAILROOM_CONNECTIONS": "8"}, "a@example.com", 8),
        ({"MAILROOM_SES_SOURCE": "b@example.com", "MAILROOM_SES_CONCURRENCY": "2"}, "b@example.com", 2),
        (
            {
                "MAILROOM_SOURCE": "a@example.com",
                "MAILROOM_SES_SOURCE": "a@example.com",
                "MAILROOM_CONNECTIONS": "3",
                "MAILROOM_SES_CONCURRENCY": "3",
            },
            "a@example.com",
            3,
        ),
        ({"MAILROOM_SOURCE": "", "MAILROOM_SES_SOURCE": "b@example.com"}, "b@example.com", 4),
    ],
)
def test_the_older_ses_names_are_still_honoured(env: dict[str, str], source: str, connections: int) -> None:
    s = SenderSettings.from_environ(env)
    assert (s.source, s.concurrency) == (source, connections)
