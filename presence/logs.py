"""Logging: plain lines for a terminal, or one JSON object a line (``PRESENCE_LOG_FORMAT=json``)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from presence.settings import LogFormat

# Attributes every LogRecord has; anything else was passed as ``extra`` context.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Dataclasses go through str() too, so a Secret shows as asterisks, never as its fields.
        return orjson.dumps(entry, default=str, option=orjson.OPT_PASSTHROUGH_DATACLASS).decode()


def configure_logging(log_format: LogFormat, level: str) -> None:
    """One handler on the root logger, in the chosen format.

    ``level`` is this service's own (the ``presence`` loggers). Libraries log at ``INFO`` and
    above only, even at ``DEBUG``: aiosqlite logs every statement there, and those
    lines would bury the service's own.
    """
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.getLevelNamesMapping()[level], logging.INFO))
    logging.getLogger("presence").setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # we log the outcome ourselves
