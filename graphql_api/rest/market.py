"""Market data over REST: `GET /trades`, `GET /orderbook` and `GET /instruments`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..errors import ERROR_RESPONSES
from ..requests import MAX_DEPTH, MAX_PAGE, ORDER_ID_PATTERN, Requests
from ..service import ExchangeService
from ..views import book_view, instrument_views, to_json, trade_view
from .orders import SYMBOL_HELP


def reads(service: ExchangeService, requests: Requests) -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)
    settings = service.settings

    @router.get("/trades", summary="Trades, oldest first (cursor: the last trade_id seen)")
    async def list_trades(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after: Annotated[str | None, Query(pattern=ORDER_ID_PATTERN)] = None,
        symbol: Annotated[str | None, Query(description=SYMBOL_HELP)] = None,
    ) -> list[dict[str, Any]]:  # Any: JSON objects
        trades = await service.trades(requests.list_trades(limit=limit, after=after, symbol=symbol))
        return [to_json(trade_view(settings, t)) for t in trades]

    @router.get("/orderbook", summary="Aggregated book, up to `depth` levels per side")
    async def order_book(
        depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 5,
        symbol: Annotated[str | None, Query(description=SYMBOL_HELP)] = None,
    ) -> dict[str, Any]:  # Any: a JSON object
        query = requests.book(depth, symbol)
        levels = await service.book(query)
        book: dict[str, Any] = to_json(book_view(query.instrument, levels, depth))  # Any: JSON
        return book

    @router.get("/instruments", summary="The instruments, the default first, with their limits")
    async def instruments() -> list[dict[str, Any]]:  # Any: JSON objects
        return [to_json(v) for v in instrument_views(settings)]

    return router
