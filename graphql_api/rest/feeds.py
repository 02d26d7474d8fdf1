"""Live data over plain WebSockets: `/ws/trades` (one message per trade) and
`/ws/orderbook` (the top 5 levels every BOOK_INTERVAL_S), as JSON."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from shared.config import Instrument
from shared.events import Trade

from ..hub import Hub, SlowConsumer
from ..requests import InvalidInput, Requests
from ..security import origin_allowed
from ..service import ExchangeService
from ..views import book_view, to_json, trade_view

T = TypeVar("T")


def feeds(service: ExchangeService, requests: Requests) -> APIRouter:
    router = APIRouter()
    settings = service.settings

    async def stream(
        websocket: WebSocket,
        hub: Hub[T],
        render: Callable[[T], object],
        keep: Callable[[T], bool] | None = None,
    ) -> None:
        """Send each item of `hub` that `keep` accepts, rendered as JSON, to a client from
        an allowed origin."""
        if not origin_allowed(websocket.headers, settings.allowed_origins):
            await websocket.close(code=1008, reason="origin not allowed")
            return
        await websocket.accept()
        async with hub.subscribe() as sub:

            async def next_message() -> object:
                while True:
                    item = await sub.get()
                    if keep is None or keep(item):
                        return render(item)

            await _pump(websocket, next_message)

    def ws_instrument(websocket: WebSocket) -> Instrument | None:
        try:
            return requests.instrument(websocket.query_params.get("symbol"))
        except InvalidInput:
            return None

    @router.websocket("/ws/trades")
    async def ws_trades(websocket: WebSocket) -> None:
        """Every trade, or with ?symbol= one instrument's."""
        instrument = ws_instrument(websocket)
        if instrument is None:
            await websocket.close(code=1008, reason="unknown symbol")
            return
        only = instrument if "symbol" in websocket.query_params else None
        keep = (lambda t: only.owns(t.seq)) if only is not None else None

        def render(trade: Trade) -> object:
            return to_json(trade_view(settings, trade))

        await stream(websocket, service.trade_feed, render, keep)

    @router.websocket("/ws/orderbook")
    async def ws_orderbook(websocket: WebSocket) -> None:
        """The top 5 levels every BOOK_INTERVAL_S, of ?symbol= (default: the default one)."""
        instrument = ws_instrument(websocket)
        if instrument is None:
            await websocket.close(code=1008, reason="unknown symbol")
            return
        await stream(
            websocket,
            service.book_feed(instrument),
            lambda book: to_json(book_view(instrument, book, 5)),
        )

    return router


async def _pump(websocket: WebSocket, next_message: Callable[[], Awaitable[object]]) -> None:
    """Send messages until the client leaves; read (and ignore) what it sends meanwhile."""

    async def drain() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    async def send() -> None:
        while True:
            await websocket.send_json(await next_message())

    tasks = [asyncio.create_task(drain()), asyncio.create_task(send())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if isinstance(exc, SlowConsumer):
                await websocket.close(code=1013, reason="too slow: dropped")
            elif exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
