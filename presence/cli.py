"""The ``presence`` command: ``serve``, ``migrate``, ``import``, ``rebuild``, ``reconcile``.

Every failure to start is one line on stderr naming what to fix, and an exit code of
its own (the README's *Commands*): 2 for a bad setting, flag or file, 3 for a database
that cannot be reached or used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import logging
import os
import ssl
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from aiohttp import web
from sqlalchemy.engine import make_url
from tqdm import tqdm  # type: ignore[import-untyped]
from tqdm.contrib.logging import logging_redirect_tqdm  # type: ignore[import-untyped]

from presence.db.engine import create_engine
from presence.db.failures import classify, describe
from presence.db.schema import upgrade
from presence.http import serving
from presence.http.app import create_app
from presence.intake.committer import Committer
from presence.intake.importer import ImportInterrupted, ImportSummary, RejectedLine, import_lines
from presence.intake.importer import Progress as ImportProgress
from presence.jobs.rebuild import Progress as RebuildProgress
from presence.jobs.rebuild import RebuildSummary, RebuildWouldLose, rebuild
from presence.jobs.reconcile import Progress as ReconcileProgress
from presence.jobs.reconcile import ReconcileFailed, ReconcileSummary, run_pass
from presence.logs import configure_logging
from presence.settings import DEFAULT_DATABASE_URL, FLAG_SETTINGS, Settings, SettingsError, unknown_variables

log = logging.getLogger("presence")

#: Exit codes beyond 0 (success); each is documented in the README's *Commands*.
EXIT_REJECTED = 1
#: A bad setting, flag or file (argparse's own code for bad usage).
EXIT_BAD_SETTING = 2
#: The database cannot be reached or used.
EXIT_UNAVAILABLE = 3
#: rebuild refused: it would have lost state (nothing changed).
EXIT_REFUSED = 4
EXIT_INTERRUPTED = 130
#: Rejected lines listed on stderr after an import; the summary counts them all.
REJECTIONS_SHOWN = 20


def main(argv: Sequence[str] | None = None) -> int:
    threading.excepthook = _quiet_aiosqlite_shutdown
    args = _parser().parse_args(argv)
    flags = {name: getattr(args, name.lower(), None) for name in FLAG_SETTINGS}
    try:
        settings = Settings.from_env(os.environ, flags)
    except SettingsError as error:
        print(f"presence: {error}", file=sys.stderr)
        return EXIT_BAD_SETTING
    configure_logging(settings.log_format, settings.log_level)
    for warning in unknown_variables(os.environ):
        log.warning("%s", warning)
    database = _DatabaseNamed(settings, "--database-url" if args.database_url else "PRESENCE_DATABASE_URL")
    if args.command == "serve":
        return _serve(settings, args, database)
    if args.command == "migrate":
        return _migrate_command(settings, database)
    if args.command == "import":
        return _import(settings, args.file, database)
    if args.command == "reconcile":
        return _reconcile(settings, database)
    return _rebuild(settings, database, accept_loss=args.accept_loss)


class _DatabaseNamed:
    """The database as the operator named it, for the one line that says it cannot be used."""

    def __init__(self, settings: Settings, source: str) -> None:
        self._url = make_url(settings.database_url)
        self._source = source

    def failed(self, error: Exception) -> int:
        """Print why the database cannot be used and return :data:`EXIT_UNAVAILABLE`; re-raise a bug."""
        if classify(error) is None:
            raise error
        shown = self._url.render_as_string(hide_password=True)
        reason = " ".join(describe(error).split())  # one line, whatever the driver said
        hint = ""
        if self._url.get_backend_name() == "sqlite" and self._url.database and self._url.database != ":memory:":
            directory = os.path.dirname(os.path.abspath(self._url.database))
            if not os.path.isdir(directory):
                hint = f" (the directory {directory} does not exist)"
        print(f"presence: cannot use the database of {self._source} ({shown}): {reason}{hint}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _quiet_aiosqlite_shutdown(args: threading.ExceptHookArgs) -> None:
    """Drop one known, harmless error, and pass every other thread exception on.

    aiosqlite's worker thread does not wait for its event loop: after a failed
    connection it may post its result once ``asyncio.run`` has closed the loop,
    and raise "Event loop is closed" as the command exits (omnilib/aiosqlite#241).
    """
    if (
        isinstance(args.exc_value, RuntimeError)
        and str(args.exc_value) == "Event loop is closed"
        and args.thread is not None
        and "_connection_worker_thread" in args.thread.name
    ):
        return
    threading.__excepthook__(args)


_DESCRIPTION = (
    "Keep the presence of CometChat users and the delivery and read receipts of their messages, from"
    " CometChat's webhooks (POST /hook), and answer questions about them over HTTP. Settings are PRESENCE_*"
    " environment variables (the README's Settings); flags override them."
)
_DATABASE_HELP = (
    f"The database: PRESENCE_DATABASE_URL or --database-url, by default {DEFAULT_DATABASE_URL}"
    " (presence.db in the working directory)."
)
_EXIT_CODES = "Exit codes: 0 done; 2 a bad setting, flag or file; 3 the database cannot be reached or used."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="presence", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"presence {importlib.metadata.version('presence')}")
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url",
        metavar="URL",
        help=f"SQLAlchemy async URL (PRESENCE_DATABASE_URL, default {DEFAULT_DATABASE_URL})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        parents=[database],
        help="receive CometChat webhooks and answer the query API",
        description="Receive CometChat webhooks on POST /hook and answer the query API, after bringing the"
        " schema to the newest revision. Needs PRESENCE_HOOK_USERNAME, PRESENCE_HOOK_PASSWORD and"
        " PRESENCE_API_TOKENS (or --insecure). " + _DATABASE_HELP,
        epilog=_EXIT_CODES,
    )
    serve.add_argument("--host", help="address to listen on (PRESENCE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", help="port to listen on (PRESENCE_PORT, default 8080)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS (PRESENCE_TLS_CERT)")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert (PRESENCE_TLS_KEY)")
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate the schema before listening")
    serve.add_argument(
        "--insecure", action="store_true", help="start without hook credentials or API tokens (development only)"
    )
    commands.add_parser(
        "migrate",
        parents=[database],
        help="bring the schema to the newest revision and exit",
        description="Bring the schema to the newest revision and exit. " + _DATABASE_HELP,
        epilog=_EXIT_CODES,
    )
    importer = commands.add_parser(
        "import",
        parents=[database],
        help="feed a JSON-lines file of webhook bodies through the path /hook takes, and summarise",
        description="Feed a JSON-lines file of webhook bodies through the path POST /hook takes (the schema"
        " is migrated first), and print how many lines were accepted, ignored and rejected. " + _DATABASE_HELP,
        epilog="Exit codes: 0 every line accepted or ignored; 1 some lines rejected; 2 a bad setting or flag, or"
        " FILE cannot be read; 3 the database cannot be reached or used.",
    )
    importer.add_argument("file", metavar="FILE", help="one webhook body a line; - for standard input")
    rebuilder = commands.add_parser(
        "rebuild",
        parents=[database],
        help="derive all state again from the checkpoint and the inbox",
        description="Derive all state again from the checkpoint and the inbox (the schema is migrated"
        " first). " + _DATABASE_HELP,
        epilog="Exit codes: 0 rebuilt; 2 a bad setting or flag; 3 the database cannot be reached or used;"
        " 4 refused, it would lose state (nothing changed).",
    )
    rebuilder.add_argument(
        "--accept-loss",
        action="store_true",
        help="rebuild even if rows that neither the inbox nor the checkpoint justifies would be dropped",
    )
    commands.add_parser(
        "reconcile",
        parents=[database],
        help="one reconciliation pass against CometChat's REST API, and summarise",
        description="Ask CometChat's REST API who is online and record the corrections as events, once (the"
        " schema is migrated first). Needs PRESENCE_COMETCHAT_API_KEY, with PRESENCE_COMETCHAT_APP_ID and"
        " PRESENCE_COMETCHAT_REGION (or PRESENCE_COMETCHAT_API_URL). " + _DATABASE_HELP,
        epilog="Exit codes: 0 the pass completed; 1 CometChat failed and the pass stopped (nothing changed for"
        " the users not reached); 2 a bad setting or flag, or reconciliation not configured; 3 the database"
        " cannot be reached or used.",
    )
    return parser


def _serve(settings: Settings, args: argparse.Namespace, database: _DatabaseNamed) -> int:
    missing = settings.missing_credentials()
    if missing and not args.insecure:
        print(
            f"presence: refusing to start without {', '.join(missing)} (set them, or pass --insecure for development)",
            file=sys.stderr,
        )
        return EXIT_BAD_SETTING
    if missing:
        log.warning(
            "INSECURE: started with --insecure and without %s: anyone who can reach this port can %s",
            ", ".join(missing),
            "post webhooks and read presence",
        )
    ssl_context = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        try:
            ssl_context = _tls_context(settings.tls_cert, settings.tls_key)
        except _TlsFileError as error:
            print(f"presence: {error}", file=sys.stderr)
            return EXIT_BAD_SETTING
    app = create_app(settings, migrate=not args.no_migrate)
    app.on_startup.append(_freeze_startup_objects)
    try:
        serving.run(app, settings, ssl_context=ssl_context)
    except serving.ListenError as error:
        print(f"presence: {error}", file=sys.stderr)
        return EXIT_BAD_SETTING
    except Exception as error:
        return database.failed(error)
    return 0


class _TlsFileError(Exception):
    """A certificate or key ``serve`` cannot use; the message names which file, and the flag and variable."""


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The server's TLS context, or a :class:`_TlsFileError` that says which of the two files is wrong."""
    cert_named = f"the TLS certificate --tls-cert/PRESENCE_TLS_CERT {cert}"
    key_named = f"the TLS key --tls-key/PRESENCE_TLS_KEY {key}"
    for path, named in ((cert, cert_named), (key, key_named)):
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise _TlsFileError(f"cannot read {named}: {error.strerror or error}") from None
    try:
        ssl.create_default_context(cafile=cert)  # only certificates: whether the chain file holds any
    except ssl.SSLError as error:
        raise _TlsFileError(f"{cert_named} is not a PEM certificate chain ({error.reason})") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # No password prompt on the terminal: an encrypted key fails like any other unusable one.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as error:
        raise _TlsFileError(
            f"{key_named} is not an unencrypted PEM private key of the certificate {cert} ({error.reason})"
        ) from None
    return context


async def _freeze_startup_objects(_app: web.Application) -> None:
    """Move what start-up made (modules, metadata, compiled statements) out of the collector's way.

    They live as long as the process; left in the collected generations, every full
    collection would walk them again, a pause felt by every request in flight.
    """
    gc.collect()
    gc.freeze()


def _migrate_command(settings: Settings, database: _DatabaseNamed) -> int:
    try:
        asyncio.run(_migrate(settings))
    except Exception as error:
        return database.failed(error)
    print("presence: the schema is at the newest revision", file=sys.stderr)
    return 0


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def _import(settings: Settings, path: str, database: _DatabaseNamed) -> int:
    name = "standard input" if path == "-" else path
    try:
        source: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        print(f"presence: cannot read {path}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_SETTING
    report = _Rejections(settings)
    try:
        with _progress_bar("importing", total=_size_of(source), unit="B", unit_scale=True, unit_divisor=1024) as bar:

            def progress(_lines: int, bytes_read: int) -> None:
                bar.update(bytes_read - bar.n)

            summary = asyncio.run(_import_async(settings, source, progress, report.line))
    except ImportInterrupted as error:
        report.close()
        print(f"presence: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except Exception as error:
        return database.failed(error)
    except KeyboardInterrupt:
        print("presence: import interrupted; importing the same file again is safe", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    report.close()
    print(
        f"imported {name}: {summary.accepted} accepted, {summary.ignored} ignored, {summary.rejected} rejected"
        f" ({summary.lines} lines, {summary.blank} blank)"
    )
    return EXIT_REJECTED if summary.rejected else 0


async def _import_async(
    settings: Settings, source: IO[bytes], progress: ImportProgress, on_rejected: Callable[[RejectedLine], None]
) -> ImportSummary:
    engine = create_engine(settings)
    try:
        await upgrade(engine)
        return await import_lines(engine, source, settings=settings, progress=progress, on_rejected=on_rejected)
    finally:
        await engine.dispose()


class _Rejections:
    """The first rejected lines on stderr as they are found (plain lines, or log records when the log
    is JSON), and a count of the rest: nothing is kept."""

    def __init__(self, settings: Settings) -> None:
        self._json = settings.log_format == "json"
        self._shown = 0
        self._more = 0

    def line(self, rejection: RejectedLine) -> None:
        if self._shown == REJECTIONS_SHOWN:
            self._more += 1
            return
        self._shown += 1
        if self._json:
            context = {"line": rejection.line, "code": rejection.code, "reason": rejection.message}
            log.warning("rejected %s", rejection, extra=context)
        else:
            tqdm.write(str(rejection), file=sys.stderr)  # above the progress bar, if there is one

    def close(self) -> None:
        if not self._more:
            return
        if self._json:
            log.warning("%d more rejected lines not shown", self._more, extra={"not_shown": self._more})
        else:
            print(f"... and {self._more} more rejected lines", file=sys.stderr)


def _size_of(source: IO[bytes]) -> int | None:
    """The size of a regular file (standard input redirected from one too); ``None`` for a pipe."""
    try:
        status = os.fstat(source.fileno())
    except (OSError, ValueError):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def _rebuild(settings: Settings, database: _DatabaseNamed, *, accept_loss: bool) -> int:
    try:
        with _progress_bar("rebuilding", total=None, unit=" events") as bar:

            def progress(done: int, total: int) -> None:
                if bar.total != total:
                    bar.total = total
                bar.update(done - bar.n)

            summary = asyncio.run(_rebuild_async(settings, progress, accept_loss=accept_loss))
    except RebuildWouldLose as error:
        print(f"presence: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as error:
        return database.failed(error)
    except KeyboardInterrupt:
        print("presence: rebuild interrupted; its transaction was rolled back, nothing changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(
        f"rebuilt state from {summary.from_checkpoint} checkpoint rows and {summary.replayed} inbox events"
        f" ({summary.unreadable} unreadable)"
    )
    if summary.lost:
        lost = ", ".join(f"{count} {table} rows" for table, count in summary.lost.items())
        print(f"presence: as accepted, the rebuild dropped {lost} that nothing could justify", file=sys.stderr)
    return 0


async def _rebuild_async(settings: Settings, progress: RebuildProgress, *, accept_loss: bool) -> RebuildSummary:
    engine = create_engine(settings)
    try:
        await upgrade(engine)
        return await rebuild(engine, settings=settings, progress=progress, accept_loss=accept_loss)
    finally:
        await engine.dispose()


def _reconcile(settings: Settings, database: _DatabaseNamed) -> int:
    if settings.cometchat_api_key is None:
        print(
            "presence: reconciliation is not configured: set PRESENCE_COMETCHAT_API_KEY, PRESENCE_COMETCHAT_APP_ID"
            " and PRESENCE_COMETCHAT_REGION (the README's Reconciliation)",
            file=sys.stderr,
        )
        return EXIT_BAD_SETTING
    try:
        with _progress_bar("reconciling", total=None, unit=" users") as bar:

            def progress(checked: int) -> None:
                bar.update(checked - bar.n)

            summary = asyncio.run(_reconcile_async(settings, progress))
    except ReconcileFailed as failure:
        print(f"presence: {failure}", file=sys.stderr)
        print(failure.summary.describe())
        return EXIT_UNAVAILABLE if failure.outcome == "database_failed" else EXIT_REJECTED
    except Exception as error:
        return database.failed(error)
    except KeyboardInterrupt:
        print(
            "presence: reconciliation interrupted; what it recorded stays, the next pass does the rest", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    print(summary.describe())
    return 0


async def _reconcile_async(settings: Settings, progress: ReconcileProgress) -> ReconcileSummary:
    engine = create_engine(settings)
    try:
        await upgrade(engine)
        committer = Committer.for_settings(engine, settings)
        await committer.start()
        try:
            return await run_pass(engine, committer, settings, progress=progress)
        finally:
            await committer.close()
    finally:
        await engine.dispose()


@contextlib.contextmanager
def _progress_bar(description: str, *, total: int | None, **options: Any) -> Iterator[Any]:
    """A tqdm bar on stderr when it is a terminal, with log lines printed above it; else a silent one."""
    enabled = sys.stderr.isatty()
    with contextlib.ExitStack() as stack:
        if enabled:
            stack.enter_context(logging_redirect_tqdm())
        bar = stack.enter_context(
            tqdm(desc=description, total=total, file=sys.stderr, disable=not enabled, dynamic_ncols=True, **options)
        )
        yield bar
