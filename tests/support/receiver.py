"""The app that forwarded changes go to: a real HTTP server that verifies them as the README tells an app to."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

#: How the receiver answers one POST: a status, or ``"hang"`` (never answer, until released).
Answer = int | Literal["hang"]
#: Longest a test waits for the receiver to see something: a bound on a hang, not a timing.
WAIT = 30.0


def new_secret() -> str:
    """A Standard Webhooks secret, as an operator makes one."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True, slots=True)
class Post:
    headers: dict[str, str]
    body: bytes
    #: The body, when its signature verified; ``None`` when it did not.
    payload: Any
    answered: Answer

    @property
    def seqs(self) -> list[int]:
        return [change["seq"] for change in self.payload["changes"]]

    @property
    def acknowledged(self) -> bool:
        return isinstance(self.answered, int) and 200 <= self.answered < 300


class Receiver:
    """Answers each POST with the next of ``answers`` (then ``200``), recording every one."""

    def __init__(self, secret: str, *, port: int | None = None, answers: list[Answer] | None = None) -> None:
        self.secret = secret
        self.webhook = Webhook(secret)
        self.answers = list(answers or [])
        #: Answer every POST from now on this way once ``answers`` are spent.
        self.then: Answer = 200
        self.posts: list[Post] = []
        self.hanging = asyncio.Event()
        self.release = asyncio.Event()
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/changes", self._receive)
        self._port = port
        self._server = TestServer(app, host="127.0.0.1", port=port)

    @property
    def url(self) -> str:
        """Where the changes go; known before the server starts when a ``port`` was given."""
        if self._port is not None:
            return f"http://127.0.0.1:{self._port}/changes"
        return str(self._server.make_url("/changes"))

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        try:
            payload = self.webhook.verify(body, headers)
        except WebhookVerificationError:
            payload = None
        answer = self.answers.pop(0) if self.answers else self.then
        async with self._changed:
            self.posts.append(Post(headers, body, payload, answer))
            self._changed.notify_all()
        if answer == "hang":
            self.hanging.set()
            await self.release.wait()
            return web.Response(status=200)
        return web.Response(status=answer)

    def acknowledged(self) -> list[int]:
        """Every ``seq`` of every POST answered 2xx, in the order they came, repeats included."""
        return [seq for post in self.posts if post.acknowledged for seq in post.seqs]

    async def wait_until(self, done: Callable[[Receiver], bool], *, limit: float = WAIT) -> None:
        async with asyncio.timeout(limit), self._changed:
            await self._changed.wait_for(lambda: done(self))

    async def wait_for_seqs(self, seqs: range | list[int], *, limit: float = WAIT) -> None:
        wanted = set(seqs)
        await self.wait_until(lambda receiver: wanted <= set(receiver.acknowledged()), limit=limit)

    async def __aenter__(self) -> Self:
        await self._server.start_server()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release.set()
        await self._server.close()
