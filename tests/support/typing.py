"""Types the tests share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

#: pytest-aiohttp's ``aiohttp_client`` fixture.
AiohttpClient = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]
