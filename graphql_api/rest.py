"""REST reads and plain WebSockets: a thin skin over `Exchange`.

The REST mutations are in `order_routes.py`, below FastAPI, for speed. Parameters are
validated by the application layer (the same parsers the GraphQL resolvers use), so both
APIs accept and refuse exactly the same values.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, WebSocket, WebSocketDisconnect

from shared.config import Instrument

from .errors import ERROR_RESPONSES, ApiError
from .exchange import MAX_PAGE, Exchange, InvalidInput
from .hub import Hub, SlowConsumer
from .order_routes import ORDER_ID_PATTERN
from .security import API_KEY_HEADER, ApiKeys, origin_allowed
from .views import book_view, order_view, to_json, trade_view

SYMBOL_HELP = "instrument (default: all for lists, the default instrument for the book)"


def build_router(ex: Exchange, keys: ApiKeys) -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)

    def reader(request: Request) -> str | None:
        """Whose orders a read may see: everyone's with auth off, else the caller's own."""
        return keys.owner(request.headers.get(API_KEY_HEADER)) if keys.enabled else None

    @router.get("/orders/{order_id}", summary="One order")
    async def get_order(
        request: Request, order_id: Annotated[str, Path(pattern=ORDER_ID_PATTERN)]
    ) -> dict[str, Any]:
        order = await ex.order(order_id, owner=reader(request))
        if order is None:
            raise ApiError(404, "not_found", f"order {order_id} not found", field="order_id")
        found: dict[str, Any] = to_json(order_view(ex, order))
        return found

    @router.get("/orders", summary="Orders, oldest first (cursor: the last order_id seen)")
    async def list_orders(
        request: Request,
        alive: bool | None = None,
        side: Annotated[int | None, Query(description="1 buy, -1 sell")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after: Annotated[str | None, Query(pattern=ORDER_ID_PATTERN)] = None,
        symbol: Annotated[str | None, Query(description=SYMBOL_HELP)] = None,
    ) -> list[dict[str, Any]]:
        orders = await ex.orders(
            alive=alive,
            side=side,
            limit=limit,
            after=after,
            owner=reader(request),
            symbol=symbol,
        )
        return [to_json(order_view(ex, o)) for o in orders]

    @router.get("/trades", summary="Trades, oldest first (cursor: the last trade_id seen)")
    async def list_trades(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after: Annotated[str | None, Query(pattern=ORDER_ID_PATTERN)] = None,
        symbol: Annotated[str | None, Query(description=SYMBOL_HELP)] = None,
    ) -> list[dict[str, Any]]:
        trades = await ex.trade_list(limit=limit, after=after, symbol=symbol)
        return [to_json(trade_view(ex, t)) for t in trades]

    @router.get("/orderbook", summary="Aggregated book, up to `depth` levels per side")
    async def order_book(
        depth: Annotated[int, Query(ge=1, le=50)] = 5,
        symbol: Annotated[str | None, Query(description=SYMBOL_HELP)] = None,
    ) -> dict[str, Any]:
        book: dict[str, Any] = to_json(book_view(ex, await ex.book(depth, symbol), depth))
        return book

    async def stream(websocket: WebSocket, hub: Hub[Any], render: Any, keep: Any = None) -> None:
        """Send each item of `hub` that `keep` accepts, rendered as JSON, to a client from
        an allowed origin."""
        if not origin_allowed(websocket.headers, ex.settings.allowed_origins):
            await websocket.close(code=1008, reason="origin not allowed")
            return
        await websocket.accept()
        async with hub.subscribe() as sub:

            async def next_message() -> Any:
                while True:
                    item = await sub.get()
                    if keep is None or keep(item):
                        return render(item)

            await _pump(websocket, next_message)

    def ws_instrument(websocket: WebSocket) -> Instrument | None:
        symbol = websocket.query_params.get("symbol")
        try:
            return ex.instrument(symbol)
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
        await stream(websocket, ex.trades, lambda t: to_json(trade_view(ex, t)), keep)

    @router.websocket("/ws/orderbook")
    async def ws_orderbook(websocket: WebSocket) -> None:
        """The top 5 levels every BOOK_INTERVAL_S, of ?symbol= (default: the default one)."""
        instrument = ws_instrument(websocket)
        if instrument is None:
            await websocket.close(code=1008, reason="unknown symbol")
            return
        await stream(websocket, ex.books[instrument.symbol], lambda b: to_json(book_view(ex, b, 5)))

    return router


async def _pump(websocket: WebSocket, next_message: Any) -> None:
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
