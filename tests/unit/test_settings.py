"""Settings from ``CELLBUS_*`` variables: `settings_from_env` and `env_names`.

Uses the kernel worker's `KernelSettings` as the real example, and a small dataclass of
this file's own for the conversions it does not exercise (bool).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from cellbus_kernel.config import KernelSettings
from cellbus_protocol.settings import env_names, settings_from_env


@dataclass(frozen=True)
class ExampleSettings:
    name: str = "cellbus"
    port: int = 8000
    ratio: float = 0.5
    debug: bool = False


@dataclass(frozen=True)
class DebugOn:
    debug: bool = True


def test_no_variables_gives_the_defaults() -> None:
    assert settings_from_env(KernelSettings, {}) == KernelSettings()


def test_kernel_settings_from_variables() -> None:
    environ = {
        "CELLBUS_REDIS_URL": "redis://redis.internal:6380/2",
        "CELLBUS_MAX_SESSIONS": "12",
        "CELLBUS_LEASE_TTL": "2.5",
        "CELLBUS_HEARTBEAT_INTERVAL": "1",
        "CELLBUS_LOG_LEVEL": "DEBUG",
        # not ours: ignored
        "MAX_SESSIONS": "99",
        "CELLBUS_NO_SUCH_SETTING": "x",
        "PATH": "/usr/bin",
    }
    settings = settings_from_env(KernelSettings, environ)

    assert settings.redis_url == "redis://redis.internal:6380/2"
    assert settings.max_sessions == 12 and type(settings.max_sessions) is int
    assert settings.lease_ttl == 2.5
    assert settings.heartbeat_interval == 1.0 and type(settings.heartbeat_interval) is float
    assert settings.log_level == "DEBUG"
    # everything else keeps its default
    assert (
        dataclasses.replace(
            settings,
            redis_url=KernelSettings.redis_url,
            max_sessions=KernelSettings.max_sessions,
            lease_ttl=KernelSettings.lease_ttl,
            heartbeat_interval=KernelSettings.heartbeat_interval,
            log_level=KernelSettings.log_level,
        )
        == KernelSettings()
    )


def test_strings_are_taken_as_they_are() -> None:
    settings = settings_from_env(ExampleSettings, {"CELLBUS_NAME": "  spaced out  "})
    assert settings.name == "  spaced out  "
    assert settings_from_env(ExampleSettings, {"CELLBUS_NAME": ""}).name == ""


def test_a_bad_int_is_a_clear_error() -> None:
    expected = r"^CELLBUS_MAX_SESSIONS: expected an integer, got "
    with pytest.raises(ValueError, match=expected + r"'many'$"):
        settings_from_env(KernelSettings, {"CELLBUS_MAX_SESSIONS": "many"})
    with pytest.raises(ValueError, match=expected + r"'1\.5'$"):
        settings_from_env(KernelSettings, {"CELLBUS_MAX_SESSIONS": "1.5"})


def test_a_bad_float_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"^CELLBUS_LEASE_TTL: expected a number, got 'soon'$"):
        settings_from_env(KernelSettings, {"CELLBUS_LEASE_TTL": "soon"})


@pytest.mark.parametrize("raw", ["1", "true", "True", "YES", "on", " on "])
def test_true_values(raw: str) -> None:
    assert settings_from_env(ExampleSettings, {"CELLBUS_DEBUG": raw}).debug is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off", ""])
def test_false_values(raw: str) -> None:
    assert settings_from_env(DebugOn, {"CELLBUS_DEBUG": raw}).debug is False


def test_a_bad_bool_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"^CELLBUS_DEBUG: expected true or false, got 'maybe'$"):
        settings_from_env(ExampleSettings, {"CELLBUS_DEBUG": "maybe"})


def test_all_conversions_together() -> None:
    environ = {
        "CELLBUS_NAME": "web",
        "CELLBUS_PORT": "8080",
        "CELLBUS_RATIO": "0.25",
        "CELLBUS_DEBUG": "yes",
    }
    assert settings_from_env(ExampleSettings, environ) == ExampleSettings(
        name="web", port=8080, ratio=0.25, debug=True
    )


def test_env_names_lists_every_variable_read() -> None:
    assert env_names(ExampleSettings) == [
        "CELLBUS_NAME",
        "CELLBUS_PORT",
        "CELLBUS_RATIO",
        "CELLBUS_DEBUG",
    ]
    names = env_names(KernelSettings)
    assert len(names) == len(dataclasses.fields(KernelSettings))
    assert "CELLBUS_REDIS_URL" in names and "CELLBUS_MAX_SESSIONS" in names
