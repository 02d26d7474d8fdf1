"""Clients for the feed tests: orders sent as fast as the API takes them (a 429 waits as
told and sends again), the newest trade id, plain WebSocket feeds and GraphQL
subscriptions with a connection_init payload."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from websockets.asyncio.client import ClientConnection, connect

from tests.api.test_graphql import TIMEOUT, Feed, ws_url


async def send(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """One request; a rate-limited one is sent again after its Retry-After."""
    while True:
        response = await client.request(method, path, json=body)
        if response.status_code != 429:
            return response
        await asyncio.sleep(float(response.headers.get("retry-after", "0.05")))


async def newest_trade_id(client: httpx.AsyncClient) -> int:
    """The newest trade id (0: none), paging the oldest-first list."""
    after = 0
    while page := (await client.get("/trades", params={"after": after, "limit": 1000})).json():
        after = int(page[-1]["trade_id"])
    return after


async def stored_trade_ids(client: httpx.AsyncClient, after: int) -> list[int]:
    ids: list[int] = []
    while page := (await client.get("/trades", params={"after": after, "limit": 1000})).json():
        ids += [int(t["trade_id"]) for t in page]
        after = ids[-1]
    return ids


async def _messages(ws: ClientConnection) -> AsyncIterator[dict[str, Any]]:
    async for raw in ws:
        message = json.loads(raw)
        assert isinstance(message, dict), raw
        yield message


@asynccontextmanager
async def ws_feed(
    base_url: str, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[Feed, ClientConnection]]:
    async with connect(
        ws_url(base_url, path), open_timeout=TIMEOUT, close_timeout=5, additional_headers=headers
    ) as ws:
        feed = Feed(_messages(ws))
        try:
            yield feed, ws
        finally:
            await feed.close()


@asynccontextmanager
async def gql_subscription(
    base_url: str, query: str, init_payload: dict[str, Any] | None = None, **variables: Any
) -> AsyncIterator[Feed]:
    """A GraphQL subscription (graphql-transport-ws), with `init_payload` (an apiKey, say)."""
    transport = WebsocketsTransport(
        url=ws_url(base_url, "/graphql"),
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload=init_payload or {},
        close_timeout=5,
    )
    async with Client(transport=transport) as session:

        async def results() -> AsyncIterator[dict[str, Any]]:
            request = GraphQLRequest(query, variable_values=variables or None)
            async for data in session.subscribe(request):
                (payload,) = data.values()
                yield payload

        feed = Feed(results())
        try:
            yield feed
        finally:
            await feed.close()
