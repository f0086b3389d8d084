"""Settings: typed, validated at start-up, never a silent default for a bad value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mailroom import settings
from mailroom.settings import CollectorSettings, ConfigError, SenderSettings

KEY = "ab" * 32


DATABASE_URL = "postgresql://mailroom@db.internal:5432/app"


def collector_env(**overrides: str) -> dict[str, str]:
    return {"MAILROOM_DATABASE_URL": DATABASE_URL, "MAILROOM_SECRET_KEY": KEY, **overrides}


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
        CollectorSettings.from_environ(collector_env(MAILROOM_SECRET_KEY=key))
    assert "64 hex characters" in str(err.value)
    if key:
        assert key not in str(err.value)


def test_the_secret_key_is_required_and_the_message_says_how_to_make_one() -> None:
    with pytest.raises(ConfigError, match="MAILROOM_SECRET_KEY: is required") as err:
        CollectorSettings.from_environ({"MAILROOM_DATABASE_URL": DATABASE_URL})
    assert "openssl rand -hex 32" in str(err.value) and "\n" not in str(err.value)


def test_the_database_url_is_required_it_has_no_default_database() -> None:
    # Before, an unset URL meant postgres@127.0.0.1:5432/postgres, the server's maintenance database.
    assert settings.VARIABLES["MAILROOM_DATABASE_URL"].default is None
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ({"MAILROOM_SECRET_KEY": KEY})
    assert err.value.name == "MAILROOM_DATABASE_URL"
    assert str(err.value).startswith("MAILROOM_DATABASE_URL: is required but not set; set it to ")
    assert "postgresql://" in str(err.value) and "\n" not in str(err.value)


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


@pytest.mark.parametrize(
    ("raw", "secs"),
    [
        ("3600", 3600.0),
        ("1.5", 1.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        (" 10 m ", 600.0),
    ],
)
def test_durations_take_units_and_a_plain_number_is_seconds(raw: str, secs: float) -> None:
    assert settings.seconds("MAILROOM_PRUNE_AFTER", raw) == secs


@pytest.mark.parametrize(
    ("name", "raw", "field", "secs"),
    [
        ("MAILROOM_SEND_DEADLINE", "10m", "send_deadline_s", 600.0),
        ("MAILROOM_SEND_DEADLINE", "600", "send_deadline_s", 600.0),
        ("MAILROOM_SEND_DEADLINE", "7d", "send_deadline_s", 604800.0),
        ("MAILROOM_SMTP_TIMEOUT", "500ms", "smtp.timeout_s", 0.5),
        ("MAILROOM_SMTP_TIMEOUT", "30s", "smtp.timeout_s", 30.0),
    ],
)
def test_every_duration_setting_of_the_sender_takes_units(name: str, raw: str, field: str, secs: float) -> None:
    value: object = SenderSettings.from_environ({name: raw})
    for part in field.split("."):
        value = getattr(value, part)
    assert value == secs


@pytest.mark.parametrize(("name", "raw"), [("MAILROOM_SEND_DEADLINE", "8d"), ("MAILROOM_SEND_DEADLINE", "1w")])
def test_a_duration_past_its_bound_or_in_an_unknown_unit_names_the_units_and_the_bound(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        SenderSettings.from_environ({name: raw})
    assert err.value.name == name
    assert "500ms, 10m, 2h or 7d, at most 7d" in str(err.value)


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
    s = CollectorSettings.from_environ({**environ, **collector_env()})
    assert (s.batch_limit, s.queue_name) == (42, "from_environment")


def test_settings_repr_never_shows_the_key() -> None:
    s = CollectorSettings.from_environ(collector_env(MAILROOM_DATABASE_URL="postgresql://u:hunter2@h/db"))
    assert KEY not in repr(s) and "hunter2" not in repr(s)


# -- MAILROOM_DATABASE_URL is parsed as libpq would, and never echoed ----------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("garbage", "cannot be parsed as a connection string"),
        ("postgresql://u:hunter2 x@h/db", "cannot be parsed as a connection string"),  # a space in a URL
        ("host=h password=hunter2 dbname", "cannot be parsed as a connection string"),
        ("postgresql://u:hunter2@h:abc/db", "the port is not a number"),
        ("host=h,h2 port=5432,x password=hunter2", "the port is not a number"),
        ("postgresql://u:hunter2@h:70000/db", "the port is not a number"),
        ("", "is empty"),
    ],
)
def test_an_unusable_database_url_is_refused_without_echoing_it(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings.read({"MAILROOM_DATABASE_URL": url}, "MAILROOM_DATABASE_URL")
    assert err.value.name == "MAILROOM_DATABASE_URL" and expected in str(err.value)
    assert "hunter2" not in str(err.value) and "garbage" not in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgresql://u:p%20w@db.internal/app?sslmode=require",
        "host=/var/run/postgresql dbname=app",
        "host=a,b port=5432,5433 dbname=app",
        "dbname=app",
    ],
)
def test_usual_database_urls_are_accepted_as_given(url: str) -> None:
    assert settings.read({"MAILROOM_DATABASE_URL": url}, "MAILROOM_DATABASE_URL")["MAILROOM_DATABASE_URL"] == url


# -- inline comments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILROOM_BATCH_LIMIT", "10   # records per line"),
        ("MAILROOM_QUEUE_NAME", "mailroom # the queue"),
        ("MAILROOM_DATABASE_URL", "host=db dbname=app   # the app's database"),
        ("MAILROOM_SES_OUTPUT_PATH", "/var/lib/mailroom\t# the journal lives here"),
        ("MAILROOM_SES_TEMPLATE_ACTIVATION", "activationv1  # pushed by mailroom templates push"),
    ],
)
def test_a_value_with_an_inline_comment_is_refused_saying_so(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings.read({name: value}, name)
    assert err.value.name == name
    assert "inline comment" in str(err.value) and "on their own line" in str(err.value)


def test_the_readme_secret_key_line_with_a_comment_is_refused_saying_so_without_echoing_the_key() -> None:
    value = "ab" * 32 + "   # the same key your app verifies with"
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ(collector_env(MAILROOM_SECRET_KEY=value))
    assert "inline comment" in str(err.value) and "ab" * 32 not in str(err.value)


# -- bounds, and the variable the user set named -------------------------------------------


def test_a_batch_timeout_above_the_default_health_check_names_the_batch_timeout() -> None:
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ(collector_env(MAILROOM_BATCH_TIMEOUT="300000"))
    assert err.value.name == "MAILROOM_BATCH_TIMEOUT"
    assert "'300000'" in str(err.value) and "MAILROOM_HEALTHCHECK_INTERVAL (270000 ms, its default)" in str(err.value)


def test_a_health_check_below_the_default_batch_timeout_names_the_health_check() -> None:
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ(collector_env(MAILROOM_HEALTHCHECK_INTERVAL="1000"))
    assert err.value.name == "MAILROOM_HEALTHCHECK_INTERVAL"
    assert "MAILROOM_BATCH_TIMEOUT (5000 ms, its default)" in str(err.value)


def test_a_batch_timeout_above_a_health_check_both_set_names_both() -> None:
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ(
            collector_env(MAILROOM_BATCH_TIMEOUT="2000", MAILROOM_HEALTHCHECK_INTERVAL="1000")
        )
    assert "MAILROOM_BATCH_TIMEOUT" in str(err.value) and "MAILROOM_HEALTHCHECK_INTERVAL" in str(err.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILROOM_BATCH_LIMIT", "99999999999999999999"),
        ("MAILROOM_BATCH_LIMIT", "10001"),
        ("MAILROOM_BATCH_LIMIT", "9" * 5000),
        ("MAILROOM_BATCH_TIMEOUT", "3600001"),
        ("MAILROOM_HEALTHCHECK_INTERVAL", "86400001"),
    ],
)
def test_integer_settings_have_upper_bounds(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ(collector_env(**{name: value}))
    assert err.value.name == name and "at most" in str(err.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILROOM_SES_CONCURRENCY", "257"),
        ("MAILROOM_SEND_DEADLINE", "604801"),
        ("MAILROOM_SEND_DEADLINE", "1e400"),
        ("MAILROOM_SEND_DEADLINE", "nan"),
        ("MAILROOM_SES_MAX_SEND_RATE", "1e12"),
    ],
)
def test_sender_numbers_have_upper_bounds(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        SenderSettings.from_environ({name: value})
    assert err.value.name == name and "at most" in str(err.value)


def test_the_largest_accepted_values_are_accepted() -> None:
    s = CollectorSettings.from_environ(
        collector_env(
            MAILROOM_BATCH_LIMIT="10000", MAILROOM_BATCH_TIMEOUT="3600000", MAILROOM_HEALTHCHECK_INTERVAL="86400000"
        )
    )
    assert (s.batch_limit, s.batch_timeout_ms, s.healthcheck_interval_ms) == (10000, 3600000, 86400000)
    assert settings.seconds("MAILROOM_PRUNE_AFTER", "3650d") == 3650 * 86400.0
    with pytest.raises(ConfigError):
        settings.seconds("MAILROOM_PRUNE_AFTER", "3651d")
    with pytest.raises(ConfigError):
        settings.seconds("MAILROOM_PRUNE_AFTER", "99999999999999999999d")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILROOM_QUEUE_NAME", "mailroom\n"),
        ("MAILROOM_CHANNEL_NAME", "token_insert\n"),
    ],
)
def test_names_with_a_trailing_newline_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        CollectorSettings.from_environ(collector_env(**{name: value}))
    assert err.value.name == name


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILROOM_SES_SOURCE", "noreply@example.com\n"),
        ("MAILROOM_SES_SOURCE", "Example <noreply@example.com>\nBcc: x@evil.example"),
        ("MAILROOM_SES_SOURCE", "Example <noreply@example.com>\n"),
        ("MAILROOM_APP_URL", "https://app.example.com\n"),
        ("MAILROOM_APP_URL", "https://app.example.com/a b"),
        ("MAILROOM_APP_URL", "https://app.example.com/\x01"),
        ("MAILROOM_APP_URL", "https://app.example.com/a\x7fb"),
        ("MAILROOM_APP_URL", "https://app.example.com/\x1b[31m"),
        ("MAILROOM_APP_URL", "https://app.example.com/\x9b"),
        ("MAILROOM_APP_URL", "https://app\x00.example.com"),
        ("MAILROOM_SES_CONFIG_SET", "default\n"),
        ("MAILROOM_SES_TEMPLATE_RECOVERY", "passwordrecoveryv1\n"),
        ("MAILROOM_PRUNE_AFTER", "7d\n\n7"),
    ],
)
def test_sender_values_with_a_line_break_or_a_control_character_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings.read({name: value}, name)
    assert err.value.name == name


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILROOM_SES_SOURCE", "Example <noreply@example.com>"),
        ("MAILROOM_SES_SOURCE", "noreply@example.com"),
        ("MAILROOM_APP_URL", "https://app.example.com/base/"),
        ("MAILROOM_SES_CONFIG_SET", "my-config_set1"),
    ],
)
def test_sender_values_people_use_are_accepted(name: str, value: str) -> None:
    assert settings.read({name: value}, name)[name]


def test_log_level_critical_is_accepted_and_documented() -> None:
    assert CollectorSettings.from_environ(collector_env(MAILROOM_LOG_LEVEL="CRITICAL")).log_level == "critical"
    assert "critical" in settings.VARIABLES["MAILROOM_LOG_LEVEL"].meaning


# -- misspelled variables -------------------------------------------------------------------


def test_a_misspelled_variable_is_reported_with_the_closest_setting() -> None:
    messages = settings.unknown_variables({"MAILROOM_BATCH_LIMT": "5", "MAILROOM_BATCH_LIMIT": "7", "PATH": "/bin"})
    assert messages == ["MAILROOM_BATCH_LIMT is not a mailroom setting; did you mean MAILROOM_BATCH_LIMIT?"]


def test_every_unknown_mailroom_name_is_reported_once_and_others_are_not() -> None:
    messages = settings.unknown_variables(
        {
            "MAILROOM_QUEUE": "a",
            "MAILROOM_ZZZZZZZZZZZZZZZZ": "b",
            "MAILROOM_TEST_DATABASE_URL": "postgresql://",  # the test suite's
            "MAILROOM_BENCH_DATABASE_URL": "postgresql://",  # the benchmarks'
            "MAILROOM_SECRET_KEY": KEY,
            "NOT_MAILROOM_X": "c",
        }
    )
    assert messages == [
        "MAILROOM_QUEUE is not a mailroom setting; did you mean MAILROOM_QUEUE_NAME?",
        "MAILROOM_ZZZZZZZZZZZZZZZZ is not a mailroom setting; it is ignored",
    ]


def test_the_unknown_name_check_follows_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    new = settings.Variable("MAILROOM_SOMETHING_NEW", "1", "A setting added later.", settings.positive_int)
    monkeypatch.setitem(settings.VARIABLES, new.name, new)
    assert settings.unknown_variables({"MAILROOM_SOMETHING_NEW": "1"}) == []
    assert settings.unknown_variables({"MAILROOM_SOMETHING_NWE": "1"}) == [
        "MAILROOM_SOMETHING_NWE is not a mailroom setting; did you mean MAILROOM_SOMETHING_NEW?"
    ]


def test_unknown_names_are_logged_one_warning_each(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        settings.warn_unknown_variables({"MAILROOM_BATCH_LIMT": "5", "MAILROOM_DEBGU": "1"}, logging.getLogger("t"))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "MAILROOM_BATCH_LIMT is not a mailroom setting; did you mean MAILROOM_BATCH_LIMIT?"),
        ("WARNING", "MAILROOM_DEBGU is not a mailroom setting; did you mean MAILROOM_DEBUG?"),
    ]
