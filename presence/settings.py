"""Settings: read once from ``PRESENCE_*`` environment variables, typed, checked.

A bad value fails at start-up with a one-line :class:`SettingsError` that names
the variable. Secrets are held in :class:`Secret`, whose ``repr`` hides them, so
no log line or traceback can show one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

PREFIX: Final = "PRESENCE_"
DEFAULT_DATABASE_URL: Final = "sqlite+aiosqlite:///presence.db"

_Choice = TypeVar("_Choice", bound=str)
LogFormat = Literal["text", "json"]
SqliteSynchronous = Literal["NORMAL", "FULL", "EXTRA"]


class SettingsError(ValueError):
    """A setting that is missing or malformed; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential that never shows itself in ``repr`` or ``str``."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "**********"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    hook_username: str | None = None
    hook_password: Secret | None = None
    api_tokens: tuple[Secret, ...] = ()
    max_body_bytes: int = 1024 * 1024
    sqlite_synchronous: SqliteSynchronous = "FULL"
    #: Most events one group commit takes into its transaction.
    commit_max_batch: int = 500
    #: Events waiting for a commit beyond which ``/hook`` answers 503 at once.
    intake_queue_limit: int = 10_000
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout: float = 5.0
    db_pool_recycle: float = 1800.0
    db_connect_timeout: float = 5.0
    log_format: LogFormat = "text"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Settings from an environment mapping (``os.environ`` in production)."""
        reader = _Reader(environ)
        defaults = cls()
        password = reader.text("HOOK_PASSWORD")
        return cls(
            database_url=reader.text("DATABASE_URL") or defaults.database_url,
            hook_username=reader.text("HOOK_USERNAME"),
            hook_password=Secret(password) if password else None,
            api_tokens=tuple(Secret(t) for t in reader.csv("API_TOKENS")),
            max_body_bytes=reader.integer("MAX_BODY_BYTES", defaults.max_body_bytes, minimum=1024),
            sqlite_synchronous=reader.choice(
                "SQLITE_SYNCHRONOUS", defaults.sqlite_synchronous, ("NORMAL", "FULL", "EXTRA")
            ),
            commit_max_batch=reader.integer("COMMIT_MAX_BATCH", defaults.commit_max_batch, minimum=1),
            intake_queue_limit=reader.integer("INTAKE_QUEUE_LIMIT", defaults.intake_queue_limit, minimum=1),
            db_pool_size=reader.integer("DB_POOL_SIZE", defaults.db_pool_size, minimum=1),
            db_max_overflow=reader.integer("DB_MAX_OVERFLOW", defaults.db_max_overflow, minimum=0),
            db_pool_timeout=reader.number("DB_POOL_TIMEOUT", defaults.db_pool_timeout),
            db_pool_recycle=reader.number("DB_POOL_RECYCLE", defaults.db_pool_recycle),
            db_connect_timeout=reader.number("DB_CONNECT_TIMEOUT", defaults.db_connect_timeout),
            log_format=reader.choice("LOG_FORMAT", defaults.log_format, ("text", "json")),
            log_level=reader.choice("LOG_LEVEL", defaults.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")),
        )

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def missing_credentials(self) -> list[str]:
        """The variables without which ``serve`` is open to anyone."""
        missing = []
        if not self.hook_username:
            missing.append(PREFIX + "HOOK_USERNAME")
        if self.hook_password is None:
            missing.append(PREFIX + "HOOK_PASSWORD")
        if not self.api_tokens:
            missing.append(PREFIX + "API_TOKENS")
        return missing


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str) -> str | None:
        value = self._environ.get(PREFIX + name, "").strip()
        return value or None

    def csv(self, name: str) -> list[str]:
        return [item.strip() for item in (self.text(name) or "").split(",") if item.strip()]

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{PREFIX}{name} must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name} must be a number of seconds, got {raw!r}") from None
        if not value > 0:
            raise SettingsError(f"{PREFIX}{name} must be positive, got {raw!r}")
        return value

    def choice(self, name: str, default: _Choice, allowed: tuple[_Choice, ...]) -> _Choice:
        raw = self.text(name)
        if raw is None:
            return default
        for option in allowed:
            if raw.upper() == option.upper():
                return option
        raise SettingsError(f"{PREFIX}{name} must be one of {', '.join(allowed)}, got {raw!r}")
