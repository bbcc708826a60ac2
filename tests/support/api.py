"""The service as its callers see it: CometChat posting webhooks, the app's backend asking."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from presence.http.app import create_app
from presence.settings import Secret, Settings
from tests.support.openapi_check import check_client_response

HOOK_USERNAME = "cometchat"
HOOK_PASSWORD = "hook-secret"
API_TOKEN = "api-token"
HOOK_AUTH = "Basic " + base64.b64encode(f"{HOOK_USERNAME}:{HOOK_PASSWORD}".encode()).decode()
API_AUTH = f"Bearer {API_TOKEN}"


#: Tests post events from fixed past dates; retention must not expire them under the test's feet.
#: The retention tests set their own windows.
KEEP_FOR_A_CENTURY = timedelta(days=36_500)


def make_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        hook_username=HOOK_USERNAME,
        hook_password=Secret(HOOK_PASSWORD),
        api_tokens=(Secret(API_TOKEN), Secret("second-token")),
        inbox_retention=KEEP_FOR_A_CENTURY,
        receipt_retention=KEEP_FOR_A_CENTURY,
        change_retention=KEEP_FOR_A_CENTURY,
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """A client of the app on ``settings``, stopped (its engine disposed) when the block ends.

    For a test's own apps: they stop before the test's database is dropped, which an app
    made through ``aiohttp_client`` (a fixture set up before the database) does not.
    """
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


class Api:
    def __init__(self, client: TestClient) -> None:  # type: ignore[type-arg]
        self.client = client

    async def post_hook(self, body: object, *, authorization: str | None = HOOK_AUTH) -> ClientResponse:
        """Post ``body`` (an object to encode, or raw bytes) as CometChat does."""
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"Content-Type": "Application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        response = await self.client.post("/hook", data=data, headers=headers)
        await check_client_response(response)  # every answer must be one /openapi.json describes
        return response

    async def hook(self, body: object) -> dict[str, Any]:
        """Post ``body`` and insist that it is acknowledged."""
        response = await self.post_hook(body)
        payload = await response.json()
        assert response.status == 200, payload
        return payload  # type: ignore[no-any-return]

    async def get(self, path: str, *, authorization: str | None = API_AUTH) -> ClientResponse:
        headers = {"Authorization": authorization} if authorization is not None else {}
        response = await self.client.get(path, headers=headers)
        await check_client_response(response)  # every answer must be one /openapi.json describes
        return response

    async def get_json(self, path: str, status: int = 200) -> Any:
        response = await self.get(path)
        payload = await response.json()
        assert response.status == status, payload
        return payload

    async def presence(self, uid: str) -> dict[str, Any] | None:
        response = await self.get(f"/users/{uid}/presence")
        if response.status == 404:
            return None
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]

    async def sessions(self, uid: str) -> list[dict[str, Any]]:
        """The first page of a user's session history."""
        return (await self.get_json(f"/users/{uid}/sessions"))["sessions"]  # type: ignore[no-any-return]

    async def receipts(self, message_id: str) -> dict[str, Any] | None:
        response = await self.get(f"/messages/{message_id}/receipts")
        if response.status == 404:
            return None
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]
