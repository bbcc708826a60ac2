"""A Server-Sent Events client for the tests: the events and comment lines of one open stream."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import orjson
from aiohttp import ClientResponse

#: A guard against a test hanging on a stream that never sends: never a measurement.
PATIENCE: Final = 30.0


@dataclass(frozen=True, slots=True)
class Event:
    id: str | None
    event: str | None
    data: str

    @property
    def seq(self) -> int:
        assert self.id is not None
        return int(self.id)

    def json(self) -> dict[str, object]:
        decoded = orjson.loads(self.data)
        assert isinstance(decoded, dict)
        return decoded


class EventReader:
    """Reads a ``text/event-stream`` body line by line, as the specification's parser does."""

    def __init__(self, response: ClientResponse) -> None:
        assert response.status == 200, response.status
        assert response.headers["Content-Type"].startswith("text/event-stream")
        self.response = response
        self.comments: list[str] = []

    async def next(self, *, patience: float = PATIENCE) -> Event | None:
        """The next event; ``None`` when the stream ends."""
        fields: dict[str, list[str]] = {}
        async with asyncio.timeout(patience):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if fields:
                        ids, events = fields.get("id"), fields.get("event")
                        return Event(
                            ids[-1] if ids else None, events[-1] if events else None, "\n".join(fields.get("data", []))
                        )
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value.removeprefix(" "))

    async def events(self, count: int, *, patience: float = PATIENCE) -> list[Event]:
        taken: list[Event] = []
        for _ in range(count):
            event = await self.next(patience=patience)
            assert event is not None, f"the stream ended after {len(taken)} of {count} events"
            taken.append(event)
        return taken

    async def until(self, seq: int, *, patience: float = PATIENCE) -> list[Event]:
        """Every event up to the one with ``seq``."""
        taken: list[Event] = []
        while not taken or taken[-1].seq < seq:
            event = await self.next(patience=patience)
            assert event is not None, f"the stream ended before seq {seq}, after {[e.seq for e in taken]}"
            taken.append(event)
        return taken

    async def comment(self, *, patience: float = PATIENCE) -> str:
        """Read lines until a comment line comes; the stream must send no event meanwhile."""
        async with asyncio.timeout(patience):
            while True:
                raw = await self.response.content.readline()
                assert raw, "the stream ended without a comment line"
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.comments.append(line)
                    return line
                assert not line, f"an event line came: {line!r}"
