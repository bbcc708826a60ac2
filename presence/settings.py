"""Settings: read once from ``PRESENCE_*`` environment variables (and ``serve``'s flags), typed, checked.

A command-line flag overrides its variable and is checked the same way. A bad
value fails at start-up with a one-line :class:`SettingsError` that names the
variable, or the flag it came from. Secrets are held in :class:`Secret`, whose ``repr`` hides them, so
no log line or traceback can show one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, Literal, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX: Final = "PRESENCE_"
DEFAULT_DATABASE_URL: Final = "sqlite+aiosqlite:///presence.db"
#: The settings ``serve`` also takes as flags: ``--host`` overrides ``PRESENCE_HOST``, and so on.
#: Every command that touches the database takes ``--database-url``.
FLAG_SETTINGS: Final = ("DATABASE_URL", "HOST", "PORT", "TLS_CERT", "TLS_KEY")
#: The async drivers the service runs on, by backend: the URL must name one (``sqlite://`` alone
#: would load the blocking ``pysqlite``, ``postgresql://`` alone ``psycopg``, which is not installed).
DRIVERS: Final = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


def flag_of(name: str) -> str:
    """The command-line flag of a setting: ``TLS_CERT`` is ``--tls-cert``."""
    return "--" + name.lower().replace("_", "-")


#: The longest a change stream may go without a comment line (contract §9).
MAX_STREAM_HEARTBEAT: Final = 15.0

_Choice = TypeVar("_Choice", bound=str)
LogFormat = Literal["text", "json"]
SqliteSynchronous = Literal["NORMAL", "FULL", "EXTRA"]


_DURATION = re.compile(r"(?P<amount>\d+(\.\d+)?)\s*(?P<unit>[dhms])?", re.ASCII)
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


#: What a Standard Webhooks secret starts with, before its base64.
STANDARD_WEBHOOKS_PREFIX: Final = "whsec_"


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
    #: Where ``serve`` listens.
    host: str = "127.0.0.1"
    port: int = 8080
    #: A PEM certificate chain and its private key: ``serve`` speaks HTTPS. Both or neither.
    tls_cert: str | None = None
    tls_key: str | None = None
    hook_username: str | None = None
    hook_password: Secret | None = None
    api_tokens: tuple[Secret, ...] = ()
    max_body_bytes: int = 1024 * 1024
    sqlite_synchronous: SqliteSynchronous = "FULL"
    #: Most events one group commit takes into its transaction.
    commit_max_batch: int = 500
    #: Group commits in flight at once on PostgreSQL (SQLite has one writer: always 1).
    commit_concurrency: int = 4
    #: Events waiting for a commit beyond which ``/hook`` answers 503 at once.
    intake_queue_limit: int = 10_000
    #: Bytes of events (their inbox text, in memory) waiting for a commit beyond which ``/hook`` answers 503 at once.
    intake_queue_bytes: int = 64 * 1024 * 1024
    #: Seconds a connection has to send a request's line and headers: from when it opens, or from
    #: the first byte of its next request when it is kept alive.
    header_timeout: float = 10.0
    #: Seconds a ``/hook`` request has to send its whole body once its headers are in.
    body_timeout: float = 30.0
    #: Seconds a kept-alive connection may stay idle between two requests.
    keepalive_timeout: float = 75.0
    #: Open connections beyond which a new one displaces the longest idle one (or is closed at once);
    #: ``None``: the open-file limit less what the database and files need (:mod:`presence.http.serving`).
    max_connections: int | None = None
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout: float = 5.0
    db_pool_recycle: float = 1800.0
    db_connect_timeout: float = 5.0
    #: Longest one PostgreSQL statement may take: a silent database is an outage, not a wait.
    db_command_timeout: float = 5.0
    #: Longest one group commit may take before its requests are answered 503.
    commit_timeout: float = 5.0
    #: Longest one query of the API may run on PostgreSQL before it is cancelled and answered 503; 0: no limit.
    query_timeout: float = 5.0
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    #: One ``INFO`` line per webhook: trigger, outcome, status, latency, and the error of a refusal.
    hook_access_log: bool = True
    #: How far ahead of its arrival an event's own times may be; further is 400.
    max_clock_skew: timedelta = timedelta(hours=1)
    #: Inbox rows older than this are deleted in the background.
    inbox_retention: timedelta = timedelta(days=7)
    #: Messages, receipts and watermarks older than this are deleted in the background.
    receipt_retention: timedelta = timedelta(days=90)
    #: Changes (contract §9) recorded longer ago than this are deleted; an older cursor is ``410``.
    change_retention: timedelta = timedelta(hours=24)
    #: Seconds between two retention passes.
    retention_interval: float = 60.0
    #: Rows deleted per retention transaction: small enough never to hold up intake.
    retention_batch: int = 1000
    #: Longest an SQLite point lookup may hold the event loop before it is run in the worker
    #: thread instead (``presence.db.inline``); 0 always uses the thread.
    inline_read_budget: float = 0.002
    #: Seconds between two comment lines on an open ``GET /changes/stream`` (the contract asks at most 15).
    stream_heartbeat: float = 15.0
    #: Changes waiting to be written to one stream beyond which its client is taken to read too
    #: slowly and is disconnected (it resumes with ``Last-Event-ID``): a stream's memory stays bounded.
    stream_queue: int = 1000
    #: Where the changes are POSTed as signed webhooks (contract §9); ``None``: not forwarded.
    forward_url: str | None = None
    #: The Standard Webhooks secret (``whsec_`` and base64) the forwarded changes are signed with.
    forward_secret: Secret | None = None
    #: Seconds the app has to answer one POST before it is a failure, retried.
    forward_timeout: float = 10.0
    #: Most changes in one POST.
    forward_batch: int = 100
    #: How long the replica that forwards holds the lease before another may take over if it stops renewing it.
    forward_lease: timedelta = timedelta(seconds=30)
    #: CometChat's REST API (contract §10): the app, its region, a REST API key, or the base URL itself.
    cometchat_app_id: str | None = None
    cometchat_region: str | None = None
    cometchat_api_key: Secret | None = None
    cometchat_api_url: str | None = None
    #: Between two background reconciliation passes inside ``serve``; ``None``: none (``presence reconcile`` only).
    reconcile_interval: timedelta | None = None
    #: A user with an event newer than this before a pass started is never corrected by it (one may be in flight).
    reconcile_grace: timedelta = timedelta(seconds=60)
    #: A session with no signal newer than this is no longer live, at read time; ``None``: sessions never expire.
    connection_ttl: timedelta | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], flags: Mapping[str, str | None] | None = None) -> Settings:
        """Settings from an environment mapping (``os.environ`` in production).

        ``flags``: values given on the command line, by setting name (``"PORT"``), each
        overriding its variable; ``None`` for a flag not given.
        """
        reader = _Reader(environ, {name: value for name, value in (flags or {}).items() if value is not None})
        defaults = cls()
        password = reader.text("HOOK_PASSWORD")
        tls_cert, tls_key = reader.text("TLS_CERT"), reader.text("TLS_KEY")
        if (tls_cert is None) != (tls_key is None):
            raise SettingsError(
                "--tls-cert and --tls-key go together (PRESENCE_TLS_CERT and PRESENCE_TLS_KEY): give both or neither"
            )
        username = reader.text("HOOK_USERNAME")
        if username is not None and ":" in username:
            raise SettingsError(
                f"{reader.name('HOOK_USERNAME')} must not contain ':' (Basic Auth splits the username from"
                " the password at the first one, so no request could ever match it)"
            )
        heartbeat = reader.number("STREAM_HEARTBEAT", defaults.stream_heartbeat)
        if heartbeat > MAX_STREAM_HEARTBEAT:
            raise SettingsError(
                f"{reader.name('STREAM_HEARTBEAT')} must be at most {MAX_STREAM_HEARTBEAT:g} seconds (a stream sends"
                f" a comment line at least that often), got {heartbeat:g}"
            )
        forward_url, forward_secret = reader.forward_url("FORWARD_URL"), reader.forward_secret("FORWARD_SECRET")
        if forward_url is not None and forward_secret is None:
            raise SettingsError(
                f"{PREFIX}FORWARD_URL is set but {PREFIX}FORWARD_SECRET is not: the changes are signed with it"
                " (whsec_ followed by the base64 of 24 to 64 random bytes)"
            )
        forward_timeout = reader.number("FORWARD_TIMEOUT", defaults.forward_timeout)
        forward_lease = reader.duration("FORWARD_LEASE", defaults.forward_lease)
        if forward_lease.total_seconds() <= 2 * forward_timeout:
            raise SettingsError(
                f"{PREFIX}FORWARD_LEASE must be longer than twice {PREFIX}FORWARD_TIMEOUT ({forward_timeout:g} s):"
                " a POST must end before the lease it started under can pass to another replica"
            )
        cometchat = _cometchat(reader)
        interval = reader.optional_duration("RECONCILE_INTERVAL")
        if interval is not None and cometchat[2] is None:
            raise SettingsError(
                f"{PREFIX}RECONCILE_INTERVAL is set but {PREFIX}COMETCHAT_API_KEY is not: a pass asks CometChat's"
                " REST API (and PRESENCE_COMETCHAT_APP_ID with PRESENCE_COMETCHAT_REGION say where)"
            )
        if interval is not None and interval < MIN_RECONCILE_INTERVAL:
            raise SettingsError(
                f"{PREFIX}RECONCILE_INTERVAL must be at least {MIN_RECONCILE_INTERVAL.total_seconds():g}s"
                f" (each pass lists every online user), got {interval.total_seconds():g}s"
            )
        return cls(
            database_url=reader.database_url("DATABASE_URL", defaults.database_url),
            host=reader.text("HOST") or defaults.host,
            port=reader.integer("PORT", defaults.port, minimum=0, maximum=65535),
            tls_cert=tls_cert,
            tls_key=tls_key,
            hook_username=username,
            hook_password=Secret(password) if password else None,
            api_tokens=tuple(Secret(t) for t in reader.csv("API_TOKENS")),
            max_body_bytes=reader.integer("MAX_BODY_BYTES", defaults.max_body_bytes, minimum=1024),
            sqlite_synchronous=reader.choice(
                "SQLITE_SYNCHRONOUS", defaults.sqlite_synchronous, ("NORMAL", "FULL", "EXTRA")
            ),
            commit_max_batch=reader.integer("COMMIT_MAX_BATCH", defaults.commit_max_batch, minimum=1),
            commit_concurrency=reader.integer("COMMIT_CONCURRENCY", defaults.commit_concurrency, minimum=1),
            intake_queue_limit=reader.integer("INTAKE_QUEUE_LIMIT", defaults.intake_queue_limit, minimum=1),
            intake_queue_bytes=reader.integer("INTAKE_QUEUE_BYTES", defaults.intake_queue_bytes, minimum=1),
            header_timeout=reader.number("HEADER_TIMEOUT", defaults.header_timeout),
            body_timeout=reader.number("BODY_TIMEOUT", defaults.body_timeout),
            keepalive_timeout=reader.number("KEEPALIVE_TIMEOUT", defaults.keepalive_timeout),
            max_connections=reader.optional_integer("MAX_CONNECTIONS", minimum=1),
            db_pool_size=reader.integer("DB_POOL_SIZE", defaults.db_pool_size, minimum=1),
            db_max_overflow=reader.integer("DB_MAX_OVERFLOW", defaults.db_max_overflow, minimum=0),
            db_pool_timeout=reader.number("DB_POOL_TIMEOUT", defaults.db_pool_timeout),
            db_pool_recycle=reader.number("DB_POOL_RECYCLE", defaults.db_pool_recycle),
            db_connect_timeout=reader.number("DB_CONNECT_TIMEOUT", defaults.db_connect_timeout),
            db_command_timeout=reader.number("DB_COMMAND_TIMEOUT", defaults.db_command_timeout),
            commit_timeout=reader.number("COMMIT_TIMEOUT", defaults.commit_timeout),
            query_timeout=reader.number("QUERY_TIMEOUT", defaults.query_timeout, zero=True),
            log_format=reader.choice("LOG_FORMAT", defaults.log_format, ("text", "json")),
            log_level=reader.choice("LOG_LEVEL", defaults.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")),
            hook_access_log=reader.choice("HOOK_ACCESS_LOG", "true", ("true", "false")) == "true",
            max_clock_skew=reader.duration("MAX_CLOCK_SKEW", defaults.max_clock_skew),
            inbox_retention=reader.duration("INBOX_RETENTION", defaults.inbox_retention),
            receipt_retention=reader.duration("RECEIPT_RETENTION", defaults.receipt_retention),
            change_retention=reader.duration("CHANGE_RETENTION", defaults.change_retention),
            retention_interval=reader.number("RETENTION_INTERVAL", defaults.retention_interval),
            retention_batch=reader.integer("RETENTION_BATCH", defaults.retention_batch, minimum=1),
            inline_read_budget=reader.number("INLINE_READ_BUDGET", defaults.inline_read_budget, zero=True),
            stream_heartbeat=heartbeat,
            stream_queue=reader.integer("STREAM_QUEUE", defaults.stream_queue, minimum=1),
            forward_url=forward_url,
            forward_secret=forward_secret,
            forward_timeout=forward_timeout,
            forward_batch=reader.integer("FORWARD_BATCH", defaults.forward_batch, minimum=1, maximum=1000),
            forward_lease=forward_lease,
            cometchat_app_id=cometchat[0],
            cometchat_region=cometchat[1],
            cometchat_api_key=cometchat[2],
            cometchat_api_url=cometchat[3],
            reconcile_interval=interval,
            reconcile_grace=reader.duration("RECONCILE_GRACE", defaults.reconcile_grace),
            connection_ttl=reader.optional_duration("CONNECTION_TTL"),
        )

    @property
    def max_clock_skew_ms(self) -> int:
        return int(self.max_clock_skew.total_seconds() * 1000)

    @property
    def cometchat_url(self) -> str | None:
        """The base URL of CometChat's REST API (v3), or ``None`` when reconciliation is not configured."""
        if self.cometchat_api_key is None:
            return None
        if self.cometchat_api_url is not None:
            return self.cometchat_api_url.rstrip("/")
        return f"https://{self.cometchat_app_id}.api-{self.cometchat_region}.cometchat.io/v3"

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


#: Passes list every online user: more often than this costs CometChat's rate limit for little.
MIN_RECONCILE_INTERVAL: Final = timedelta(seconds=10)
#: CometChat's regions (``cometchat/rest-api-users.md``); other hosts go in ``PRESENCE_COMETCHAT_API_URL``.
COMETCHAT_REGIONS: Final = ("us", "eu", "in")
_APP_ID = re.compile(r"[A-Za-z0-9]{1,64}", re.ASCII)


def _cometchat(reader: _Reader) -> tuple[str | None, str | None, Secret | None, str | None]:
    """The app id, region, API key and base URL of CometChat's REST API, all or none usable."""
    app_id, key = reader.text("COMETCHAT_APP_ID"), reader.text("COMETCHAT_API_KEY")
    url = reader.forward_url("COMETCHAT_API_URL")
    region = reader.choice("COMETCHAT_REGION", "", COMETCHAT_REGIONS) or None
    if app_id is not None and not _APP_ID.fullmatch(app_id):
        raise SettingsError(f"{PREFIX}COMETCHAT_APP_ID must be CometChat's app id (letters and digits)")
    if key is None:
        if app_id is not None or url is not None:
            raise SettingsError(
                f"{PREFIX}COMETCHAT_APP_ID or {PREFIX}COMETCHAT_API_URL is set but {PREFIX}COMETCHAT_API_KEY is not:"
                " reconciliation needs a REST API key (the README's Reconciliation)"
            )
        return None, None, None, None
    if url is None and (app_id is None or region is None):
        raise SettingsError(
            f"{PREFIX}COMETCHAT_API_KEY is set: {PREFIX}COMETCHAT_APP_ID and {PREFIX}COMETCHAT_REGION"
            f" ({', '.join(COMETCHAT_REGIONS)}) must say where the REST API is (or {PREFIX}COMETCHAT_API_URL)"
        )
    return app_id, region, Secret(key), url


def known_variables() -> frozenset[str]:
    """Every ``PRESENCE_*`` variable the service reads: one a field of :class:`Settings`, named after it."""
    return frozenset(PREFIX + item.name.upper() for item in dataclasses.fields(Settings))


def unknown_variables(names: Iterable[str]) -> list[str]:
    """One warning line for each ``PRESENCE_*`` variable in ``names`` that no setting reads
    (a typo is otherwise silently ignored), with the known name it is closest to, if any."""
    known = known_variables()
    warnings = []
    for name in sorted(names):
        if not name.startswith(PREFIX) or name in known:
            continue
        # Compared without the prefix, which every name shares and which would make all of them close.
        close = difflib.get_close_matches(name.removeprefix(PREFIX), [k.removeprefix(PREFIX) for k in known], n=1)
        hint = f" (did you mean {PREFIX}{close[0]}?)" if close else ""
        warnings.append(f"{name} is not a setting of presence and is ignored{hint}")
    return warnings


class _Reader:
    def __init__(self, environ: Mapping[str, str], flags: Mapping[str, str]) -> None:
        self._environ = environ
        self._flags = flags

    def name(self, name: str) -> str:
        """What the operator wrote: the flag, if one was given, else the variable."""
        return flag_of(name) if name in self._flags else PREFIX + name

    def text(self, name: str) -> str | None:
        value = self._flags[name] if name in self._flags else self._environ.get(PREFIX + name, "")
        return value.strip() or None

    def database_url(self, name: str, default: str) -> str:
        """An SQLAlchemy URL naming one of :data:`DRIVERS`; the message never quotes it (it may hold a password)."""
        raw = self.text(name)
        if raw is None:
            return default
        expected = " or ".join(f"{backend}+{driver}://" for backend, driver in DRIVERS.items())
        try:
            url = make_url(raw)
        except (ArgumentError, ValueError):
            raise SettingsError(f"{self.name(name)} is not a database URL: expected {expected}…") from None
        backend = url.get_backend_name()
        if backend not in DRIVERS:
            raise SettingsError(f"{self.name(name)}: {backend} is not supported: expected {expected}…")
        driver = DRIVERS[backend]
        if url.drivername != f"{backend}+{driver}":
            raise SettingsError(
                f"{self.name(name)} must name the {driver} driver: {backend}+{driver}://…, not {url.drivername}://…"
            )
        return raw

    def csv(self, name: str) -> list[str]:
        return [item.strip() for item in (self.text(name) or "").split(",") if item.strip()]

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{self.name(name)} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{self.name(name)} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{self.name(name)} must be at most {maximum}, got {value}")
        return value

    def optional_integer(self, name: str, *, minimum: int) -> int | None:
        """A whole number, or ``None`` when the variable is unset."""
        return None if self.text(name) is None else self.integer(name, 0, minimum=minimum)

    def number(self, name: str, default: float, *, zero: bool = False) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{self.name(name)} must be a number of seconds, got {raw!r}") from None
        if zero and value == 0:
            return value
        if not (value > 0 and math.isfinite(value)):
            raise SettingsError(f"{self.name(name)} must be {'0 or ' if zero else ''}positive, got {raw!r}")
        return value

    def duration(self, name: str, default: timedelta) -> timedelta:
        """``7d``, ``12h``, ``30m``, ``45s``, or a number of seconds."""
        raw = self.text(name)
        if raw is None:
            return default
        match = _DURATION.fullmatch(raw.lower())
        if match is None or float(match["amount"]) <= 0:
            raise SettingsError(f"{self.name(name)} must be a duration such as 7d, 12h, 30m or 45s, got {raw!r}")
        return timedelta(seconds=float(match["amount"]) * _UNIT_SECONDS[match["unit"] or "s"])

    def optional_duration(self, name: str) -> timedelta | None:
        """A duration, or ``None`` when the variable is unset or ``off``."""
        raw = self.text(name)
        if raw is None or raw.lower() == "off":
            return None
        return self.duration(name, timedelta())

    def forward_url(self, name: str) -> str | None:
        """An ``http://`` or ``https://`` URL with a host; the message never quotes it (it may hold a token)."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            url = urllib.parse.urlsplit(raw)
            valid = url.scheme in ("http", "https") and bool(url.hostname) and (url.port or 1) > 0
        except ValueError:  # a port that is not a number, or out of range
            valid = False
        if not valid:
            raise SettingsError(f"{self.name(name)} must be an http:// or https:// URL with a host")
        return raw

    def forward_secret(self, name: str) -> Secret | None:
        """A Standard Webhooks secret: ``whsec_`` (optional) and the base64 of 24 to 64 bytes."""
        raw = self.text(name)
        if raw is None:
            return None
        encoded = raw.removeprefix(STANDARD_WEBHOOKS_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not 24 <= len(key) <= 64:
            # Never quote the value: it is a secret.
            raise SettingsError(
                f"{self.name(name)} must be whsec_ followed by the base64 of 24 to 64 random bytes"
                " (the Standard Webhooks form), e.g. whsec_$(openssl rand -base64 32)"
            )
        return Secret(raw)

    def choice(self, name: str, default: _Choice, allowed: tuple[_Choice, ...]) -> _Choice:
        raw = self.text(name)
        if raw is None:
            return default
        for option in allowed:
            if raw.upper() == option.upper():
                return option
        raise SettingsError(f"{self.name(name)} must be one of {', '.join(allowed)}, got {raw!r}")
