"""``presence import``: a JSON-lines file of webhook bodies, through the path ``/hook`` takes.

Each non-blank line is one webhook body. It goes through :func:`accept` (decoding,
validation, removal of message content) and then a :class:`Committer`, the same
group commit that acknowledges ``/hook``: many lines are in flight at once, so one
transaction commits hundreds of them. A line ``/hook`` would answer with a ``4xx``
is rejected here, with its line number, and the import goes on.

Rejected lines are handed to ``on_rejected`` as they are found, and only the first
:data:`REJECTIONS_KEPT` stay in the summary: a file of a million bad lines costs no
more memory than one of ten.

When the database cannot be reached, the import stops with :class:`ImportInterrupted`,
which says how many lines were committed. Applying an event again changes nothing,
so importing the same file again, from its start, is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from presence.intake.accept import Accepted, Rejected, accept, outcome
from presence.intake.committer import Committer, IntakeRejected, IntakeUnavailable
from presence.settings import Settings

#: Called with the number of lines and of bytes read so far.
Progress = Callable[[int, int], None]

#: Lines read from the source at a time, off the event loop.
CHUNK_LINES = 256
#: Rejected lines the summary keeps (the first ones); it counts them all.
REJECTIONS_KEPT = 20

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A line the import refused, in the words ``/hook`` would have used."""

    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.code}: {self.message}"


@dataclass(slots=True)
class ImportSummary:
    #: Lines committed and acted on (``/hook`` would answer ``{"status": "accepted"}``).
    accepted: int = 0
    #: Lines committed to the inbox but not acted on: unknown triggers, untracked categories.
    ignored: int = 0
    #: Empty or whitespace-only lines, skipped.
    blank: int = 0
    #: Lines rejected, all of them.
    rejected: int = 0
    #: The first :data:`REJECTIONS_KEPT` rejected lines, by line number.
    rejections: list[RejectedLine] = field(default_factory=list)

    @property
    def committed(self) -> int:
        return self.accepted + self.ignored

    @property
    def lines(self) -> int:
        return self.accepted + self.ignored + self.rejected + self.blank


class ImportInterrupted(Exception):
    """The database became unavailable: the import stopped, ``summary`` says what was committed."""

    def __init__(self, summary: ImportSummary, line: int) -> None:
        super().__init__(
            f"the database became unavailable at line {line}; {summary.committed} lines were committed "
            "before the import stopped. Importing the same file again is safe: "
            "an event applied twice changes nothing"
        )
        self.summary = summary
        #: The first line that could not be committed.
        self.line = line


async def import_lines(
    engine: AsyncEngine,
    lines: Iterable[bytes] | str | os.PathLike[str],
    *,
    settings: Settings,
    progress: Progress | None = None,
    on_rejected: Callable[[RejectedLine], None] | None = None,
) -> ImportSummary:
    """Feed ``lines`` (or the lines of the file at that path) through intake; say what became of them.

    ``on_rejected`` is called with each rejected line as soon as it is known (the ones the
    database refuses come after their neighbours). Raises :class:`ImportInterrupted` if the
    database becomes unavailable.
    """
    opened: Generator[bytes, None, None] | None = None
    source: Iterator[bytes]
    if isinstance(lines, str | os.PathLike):
        source = opened = _read(lines)
    else:
        source = iter(lines)
    committer = Committer.for_settings(engine, settings)
    await committer.start()
    try:
        return await _Import(committer, settings, progress, on_rejected).run(source)
    finally:
        await committer.close()
        if opened is not None:
            # Cancelled while a worker thread reads it: that read ends on its own, the file with the process.
            with contextlib.suppress(ValueError):
                opened.close()


def _read(path: str | os.PathLike[str]) -> Generator[bytes, None, None]:
    with open(path, "rb") as file:
        yield from file


def _take(source: Iterator[bytes], count: int) -> list[bytes]:
    return list(itertools.islice(source, count))


class _Import:
    def __init__(
        self,
        committer: Committer,
        settings: Settings,
        progress: Progress | None,
        on_rejected: Callable[[RejectedLine], None] | None,
    ) -> None:
        self._committer = committer
        self._on_rejected = on_rejected
        self._max_bytes = settings.max_body_bytes
        self._max_skew_ms = settings.max_clock_skew_ms
        # Enough in flight that the next batch fills while one commits; never more than the queue takes.
        self._window = max(1, min(2 * settings.commit_max_batch, settings.intake_queue_limit))
        self._progress = progress
        self._summary = ImportSummary()
        self._unavailable: list[int] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run(self, source: Iterator[bytes]) -> ImportSummary:
        number = bytes_read = 0
        try:
            while not self._unavailable:
                # Read off the event loop, so commits go on while a slow file or pipe is read.
                chunk = await asyncio.to_thread(_take, source, CHUNK_LINES)
                if not chunk:
                    break
                for raw in chunk:
                    if self._unavailable:
                        break
                    number += 1
                    bytes_read += len(raw)
                    self._take_line(number, raw)
                    if len(self._in_flight) >= self._window:
                        await self._wait(asyncio.FIRST_COMPLETED)
                if self._progress is not None:
                    self._progress(number, bytes_read)
            await self._wait(asyncio.ALL_COMPLETED)
        finally:
            # Cancelled (Ctrl-C): what was handed to the committer is committed on close; forget the rest.
            for task in self._in_flight:
                task.cancel()
        self._summary.rejections.sort(key=lambda rejection: rejection.line)
        if self._unavailable:
            raise ImportInterrupted(self._summary, min(self._unavailable))
        return self._summary

    def _take_line(self, number: int, raw: bytes) -> None:
        body = raw.rstrip(b"\r\n")
        if number == 1:
            body = body.removeprefix(_BOM)
        if not body.strip():
            self._summary.blank += 1
            return
        if len(body) > self._max_bytes:
            self._reject(number, "payload_too_large", f"the line is larger than {self._max_bytes} bytes")
            return
        try:
            accepted = accept(body, received_at=datetime.now(UTC), max_skew_ms=self._max_skew_ms)
        except Rejected as rejected:
            self._reject(number, rejected.code, rejected.message)
            return
        task = asyncio.create_task(self._submit(number, accepted))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _submit(self, number: int, accepted: Accepted) -> None:
        try:
            await self._committer.submit(accepted)
        except IntakeRejected as error:
            self._reject(number, "unprocessable_event", str(error))
        except IntakeUnavailable:
            self._unavailable.append(number)
        else:
            if outcome(accepted) == "accepted":
                self._summary.accepted += 1
            else:
                self._summary.ignored += 1

    async def _wait(self, when: str) -> None:
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), return_when=when)

    def _reject(self, number: int, code: str, message: str) -> None:
        rejection = RejectedLine(number, code, message)
        self._summary.rejected += 1
        if len(self._summary.rejections) < REJECTIONS_KEPT:
            self._summary.rejections.append(rejection)
        if self._on_rejected is not None:
            self._on_rejected(rejection)
