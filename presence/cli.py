"""The ``presence`` command: ``serve``, ``migrate``, ``rebuild``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
from collections.abc import Sequence

from aiohttp import web

from presence.db.engine import create_engine
from presence.db.schema import upgrade
from presence.http.app import create_app
from presence.logs import configure_logging
from presence.rebuild import rebuild
from presence.settings import Settings, SettingsError

log = logging.getLogger("presence")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        if args.command == "serve":
            settings = _with_flags(settings, args)
    except SettingsError as error:
        print(f"presence: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
        print("presence: the schema is at the newest revision", file=sys.stderr)
        return 0
    return asyncio.run(_rebuild(settings))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="presence", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="receive CometChat webhooks and answer the query API")
    serve.add_argument("--host", help="address to listen on (PRESENCE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (PRESENCE_PORT, default 8080)")
    serve.add_argument("--database-url", help="SQLAlchemy async URL (PRESENCE_DATABASE_URL)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate the schema before listening")
    serve.add_argument(
        "--insecure", action="store_true", help="start without hook credentials or API tokens (development only)"
    )
    commands.add_parser("migrate", help="bring the schema to the newest revision and exit")
    commands.add_parser("rebuild", help="derive all state again from the inbox")
    return parser


def _with_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    changes: dict[str, object] = {}
    if args.database_url:
        changes["database_url"] = args.database_url
    host = args.host or os.environ.get("PRESENCE_HOST") or "127.0.0.1"
    raw_port = args.port if args.port is not None else os.environ.get("PRESENCE_PORT", "8080")
    try:
        port = int(raw_port)
    except ValueError:
        raise SettingsError(f"PRESENCE_PORT must be a port number, got {raw_port!r}") from None
    if not 0 <= port <= 65535:
        raise SettingsError(f"the port must be between 0 and 65535, got {port}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SettingsError("--tls-cert and --tls-key go together")
    args.host, args.port = host, port
    return settings.replace(**changes) if changes else settings


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    missing = settings.missing_credentials()
    if missing and not args.insecure:
        print(
            f"presence: refusing to start without {', '.join(missing)} (set them, or pass --insecure for development)",
            file=sys.stderr,
        )
        return 2
    if missing:
        log.warning(
            "INSECURE: started with --insecure and without %s: anyone who can reach this port can %s",
            ", ".join(missing),
            "post webhooks and read presence",
        )
    ssl_context = None
    if args.tls_cert:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as error:
            print(f"presence: cannot load the TLS certificate or key: {error}", file=sys.stderr)
            return 2
    app = create_app(settings, migrate=not args.no_migrate)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        ssl_context=ssl_context,
        access_log=None,
        print=lambda message: log.info("%s", message.strip()),
    )
    return 0


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _rebuild(settings: Settings) -> int:
    engine = create_engine(settings)

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rrebuilding: {done}/{total} inbox events", end="", file=sys.stderr, flush=True)

    try:
        await upgrade(engine)
        summary = await rebuild(engine, progress=progress)
    finally:
        await engine.dispose()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"rebuilt state from {summary.replayed} inbox events ({summary.unreadable} unreadable)")
    return 0
