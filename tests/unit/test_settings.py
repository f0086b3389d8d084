"""Settings: typed, validated at start-up, never a silent default for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom import settings
from mailroom.settings import CollectorSettings, ConfigError, SenderSettings

KEY = "ab" * 32


def collector_env(**overrides: str) -> dict[str, str]:
    return {"MAILROOM_SECRET_KEY": KEY, **overrides}


def test_collector_defaults_are_the_documented_ones() -> None:
    s = CollectorSettings.from_environ(collector_env())
    assert (s.channel_name, s.queue_name) == ("token_insert", "mailroom")
    assert (s.healthcheck_interval_ms, s.batch_timeout_ms, s.batch_limit) == (270000, 5000, 10)
    assert s.secret_key == bytes.fromhex(KEY)


def test_sender_defaults_are_the_documented_ones() -> None:
    s = SenderSettings.from_environ({})
    assert s.debug is False
    assert (s.config_set, s.source, s.output_path) == ("", "noreply@localhost", Path("./output"))
    assert (s.template_activation, s.template_recovery) == ("activationv1", "passwordrecoveryv1")
    assert (s.send_deadline_s, s.concurrency, s.max_send_rate) == (600.0, 4, None)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MAILROOM_BATCH_LIMIT", "0", "positive whole number"),
        ("MAILROOM_BATCH_LIMIT", "-3", "positive whole number"),
        ("MAILROOM_BATCH_LIMIT", "ten", "positive whole number"),
        ("MAILROOM_BATCH_TIMEOUT", "1.5", "positive whole number"),
        ("MAILROOM_HEALTHCHECK_INTERVAL", "1000", "at least MAILROOM_BATCH_TIMEOUT"),
        ("MAILROOM_CHANNEL_NAME", "token-insert; DROP", "a name of 1 to 63"),
        ("MAILROOM_QUEUE_NAME", "", "a name of 1 to 63"),
        ("MAILROOM_LOG_LEVEL", "loud", "one of debug"),
    ],
)
def test_invalid_collector_values_name_the_variable_the_value_and_what_is_expected(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ(collector_env(**{name: value}))
    assert err.value.name == name
    assert str(err.value).startswith(f"{name}: ")
    assert repr(value) in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("key", ["", "abc", "zz" * 32, "ab" * 31, "ab" * 33])
def test_a_bad_secret_key_is_refused_without_echoing_it(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ({"MAILROOM_SECRET_KEY": key})
    assert "64 hex characters" in str(err.value)
    if key:
        assert key not in str(err.value)


def test_the_secret_key_is_required() -> None:
    with pytest.raises(ConfigError, match="MAILROOM_SECRET_KEY: is required"):
        CollectorSettings.from_environ({})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILROOM_DEBUG", "maybe"),
        ("MAILROOM_SEND_DEADLINE", "0"),
        ("MAILROOM_SEND_DEADLINE", "soon"),
        ("MAILROOM_SES_CONCURRENCY", "0"),
        ("MAILROOM_SES_MAX_SEND_RATE", "-1"),
        ("MAILROOM_SES_SOURCE", "nobody"),
        ("MAILROOM_APP_URL", "example.com/app"),
    ],
)
def test_invalid_sender_values_are_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        SenderSettings.from_environ({name: value})
    assert err.value.name == name and repr(value) in str(err.value)


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("FALSE", False), ("1", True), ("off", False)])
def test_booleans_accept_the_usual_spellings(raw: str, value: bool) -> None:
    assert SenderSettings.from_environ({"MAILROOM_DEBUG": raw}).debug is value


def test_an_empty_configuration_set_means_none() -> None:
    assert SenderSettings.from_environ({"MAILROOM_SES_CONFIG_SET": ""}).config_set == ""


@pytest.mark.parametrize(("raw", "secs"), [("3600", 3600.0), ("90s", 90.0), ("15m", 900.0), ("7d", 604800.0)])
def test_durations_take_units(raw: str, secs: float) -> None:
    assert settings.seconds("MAILROOM_PRUNE_AFTER", raw) == secs


@pytest.mark.parametrize(("raw", "secs"), [("60s", 60.0), ("0", 0.0), ("0s", 0.0), ("2m", 120.0)])
def test_the_recovery_cooldown_is_a_duration_and_0_turns_it_off(raw: str, secs: float) -> None:
    s = CollectorSettings.from_environ(collector_env(MAILROOM_RECOVERY_COOLDOWN=raw))
    assert s.recovery_cooldown_s == secs


def test_the_recovery_cooldown_defaults_to_a_minute() -> None:
    assert CollectorSettings.from_environ(collector_env()).recovery_cooldown_s == 60.0


@pytest.mark.parametrize("raw", ["-1", "soon", "", "1w"])
def test_an_invalid_recovery_cooldown_is_a_config_error_naming_it(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ(collector_env(MAILROOM_RECOVERY_COOLDOWN=raw))
    assert err.value.name == "MAILROOM_RECOVERY_COOLDOWN" and "0 turns it off" in str(err.value)


def test_a_zero_duration_is_still_refused_where_it_makes_no_sense() -> None:
    with pytest.raises(ConfigError, match="positive duration"):
        settings.seconds("MAILROOM_PRUNE_AFTER", "0")


def test_the_database_url_is_never_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as err:
        settings.read({"MAILROOM_DATABASE_URL": "   "}, "MAILROOM_DATABASE_URL")
    assert "'   '" not in str(err.value)


def test_dotenv_fills_what_the_environment_does_not_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("MAILROOM_BATCH_LIMIT=42\nMAILROOM_QUEUE_NAME=from_dotenv\n")
    monkeypatch.setenv("MAILROOM_QUEUE_NAME", "from_environment")
    monkeypatch.delenv("MAILROOM_BATCH_LIMIT", raising=False)
    environ = settings.load_environment(tmp_path / ".env")
    s = CollectorSettings.from_environ({**environ, "MAILROOM_SECRET_KEY": KEY})
    assert (s.batch_limit, s.queue_name) == (42, "from_environment")


def test_settings_repr_never_shows_the_key() -> None:
    s = CollectorSettings.from_environ(collector_env(MAILROOM_DATABASE_URL="postgresql://u:hunter2@h/db"))
    assert KEY not in repr(s) and "hunter2" not in repr(s)
