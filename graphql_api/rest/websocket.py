"""Plain WebSocket plumbing shared by the feeds: parameter refusals, the origin check, and
the pump that sends a feed's items while reading (and ignoring) what the client sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

from fastapi import WebSocket, WebSocketDisconnect

from shared.tasks import cancel_and_wait

from ..feed_requests import FeedRequest, feed_request
from ..hub import Hub, SlowConsumer
from ..ports import Unavailable
from ..requests import InvalidInput, Requests
from ..security import origin_allowed

T = TypeVar("T")

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


def text(message: object) -> str:
    """JSON text as Starlette's send_json writes it."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


async def refuse(websocket: WebSocket, reason: str) -> None:
    """Refuse a connection for its parameters (before accepting it: an HTTP 403)."""
    await websocket.close(code=POLICY_VIOLATION, reason=reason[:120])


async def resumable_request(websocket: WebSocket, requests: Requests) -> FeedRequest | None:
    """A resumable feed's ?symbol=&after=; None when they were bad and the client refused."""
    params = websocket.query_params
    try:
        return feed_request(requests, params.get("symbol"), params.get("after"))
    except InvalidInput as exc:
        await refuse(websocket, str(exc))
        return None


async def accept(websocket: WebSocket, allowed_origins: tuple[str, ...]) -> bool:
    """Accept a client from an allowed origin; refuse the others."""
    if not origin_allowed(websocket.headers, allowed_origins):
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return False
    await websocket.accept()
    return True


async def hub_items(hub: Hub[T]) -> AsyncGenerator[T, None]:
    async with hub.subscribe() as sub:
        while True:
            yield await sub.get()


async def pump(
    websocket: WebSocket, items: AsyncGenerator[T, None], render: Callable[[T], str]
) -> None:
    """Send every item, rendered, until the client leaves or the feed ends (too slow: 1013;
    the store or engine unavailable: 1013 too, to reconnect and resume shortly); read (and
    ignore) what the client sends meanwhile."""

    async def drain() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    async def send() -> None:
        async for item in items:
            await websocket.send_text(render(item))

    tasks = [asyncio.create_task(drain()), asyncio.create_task(send())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if isinstance(exc, SlowConsumer):
                await websocket.close(code=TRY_AGAIN_LATER, reason="too slow: dropped")
            elif isinstance(exc, Unavailable):
                await websocket.close(code=TRY_AGAIN_LATER, reason=str(exc)[:120])
            elif exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                raise exc
    finally:
        try:
            await cancel_and_wait(tasks)  # how they ended is handled above, or moot now
        finally:
            await items.aclose()
