"""Settings: variables and ``serve``'s flags, read and checked in one place."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from presence.settings import Settings, SettingsError, known_variables, unknown_variables


def test_a_flag_overrides_its_variable_and_an_absent_flag_does_not() -> None:
    environ = {"PRESENCE_HOST": "0.0.0.0", "PRESENCE_PORT": "9000", "PRESENCE_DATABASE_URL": "sqlite+aiosqlite:///a.db"}
    settings = Settings.from_env(environ, {"PORT": "9100", "HOST": None, "DATABASE_URL": None})
    assert (settings.host, settings.port, settings.database_url) == ("0.0.0.0", 9100, "sqlite+aiosqlite:///a.db")
    assert (Settings.from_env({}).host, Settings.from_env({}).port) == ("127.0.0.1", 8080)


@pytest.mark.parametrize(
    ("environ", "flags", "named"),
    [
        ({"PRESENCE_PORT": "eighty"}, {}, "PRESENCE_PORT"),
        ({"PRESENCE_PORT": "8080"}, {"PORT": "eighty"}, "--port"),
        ({}, {"PORT": "65536"}, "--port"),
        ({"PRESENCE_PORT": "-1"}, {}, "PRESENCE_PORT"),
    ],
)
def test_a_bad_port_names_where_it_came_from(environ: dict[str, str], flags: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=f"^{named} must be"):
        Settings.from_env(environ, flags)


@pytest.mark.parametrize(
    ("environ", "flags"),
    [
        ({"PRESENCE_TLS_CERT": "cert.pem"}, {}),
        ({}, {"TLS_KEY": "key.pem"}),
        ({"PRESENCE_TLS_CERT": "cert.pem", "PRESENCE_TLS_KEY": "key.pem"}, {"TLS_KEY": ""}),
    ],
)
def test_a_certificate_and_its_key_go_together(environ: dict[str, str], flags: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="--tls-cert and --tls-key"):
        Settings.from_env(environ, flags)


def test_a_certificate_from_the_environment_and_its_key_from_a_flag_pair_up() -> None:
    settings = Settings.from_env({"PRESENCE_TLS_CERT": "cert.pem"}, {"TLS_KEY": "key.pem"})
    assert (settings.tls_cert, settings.tls_key) == ("cert.pem", "key.pem")


def test_the_known_variables_are_exactly_the_ones_read() -> None:
    """One list of names: every variable ``from_env`` asks for is known, and nothing else is."""

    asked: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: object = None) -> str:
            asked.add(key)
            return ""

    Settings.from_env(Recording())
    assert asked == known_variables()
    assert unknown_variables([*known_variables(), "PATH"]) == []


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PRESENCE_STREAM_HEARTBEAT": "16"}, "^PRESENCE_STREAM_HEARTBEAT must be at most 15 seconds"),
        ({"PRESENCE_STREAM_HEARTBEAT": "0"}, "^PRESENCE_STREAM_HEARTBEAT must be positive"),
        ({"PRESENCE_STREAM_HEARTBEAT": "often"}, "^PRESENCE_STREAM_HEARTBEAT must be a number of seconds"),
        ({"PRESENCE_STREAM_QUEUE": "0"}, "^PRESENCE_STREAM_QUEUE must be at least 1"),
        ({"PRESENCE_STREAM_QUEUE": "many"}, "^PRESENCE_STREAM_QUEUE must be a whole number"),
    ],
)
def test_the_stream_settings_are_checked(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_the_stream_settings_default_to_the_contract_and_can_be_set() -> None:
    assert (Settings.from_env({}).stream_heartbeat, Settings.from_env({}).stream_queue) == (15.0, 1000)
    settings = Settings.from_env({"PRESENCE_STREAM_HEARTBEAT": "0.5", "PRESENCE_STREAM_QUEUE": "10"})
    assert (settings.stream_heartbeat, settings.stream_queue) == (0.5, 10)


def test_forwarding_settings_parse_and_hide_the_secret() -> None:
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    settings = Settings.from_env(
        {
            "PRESENCE_FORWARD_URL": "https://app.example/changes",
            "PRESENCE_FORWARD_SECRET": secret,
            "PRESENCE_FORWARD_TIMEOUT": "2.5",
            "PRESENCE_FORWARD_BATCH": "1000",
            "PRESENCE_FORWARD_LEASE": "1m",
        }
    )
    assert settings.forward_url == "https://app.example/changes"
    assert settings.forward_secret is not None
    assert settings.forward_secret.reveal() == secret
    assert secret not in repr(settings)
    assert (settings.forward_timeout, settings.forward_batch, settings.forward_lease) == (
        2.5,
        1000,
        timedelta(minutes=1),
    )
    # The secret without its prefix or padding is what the standardwebhooks package takes too.
    assert Settings.from_env({"PRESENCE_FORWARD_SECRET": secret.removeprefix("whsec_").rstrip("=")}).forward_secret
    with pytest.raises(SettingsError, match="PRESENCE_FORWARD_BATCH must be at most 1000"):
        Settings.from_env({"PRESENCE_FORWARD_BATCH": "1001"})
