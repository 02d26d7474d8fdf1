"""Market data over REST: `GET /trades`, `GET /candles`, `GET /orderbook` and `GET /instruments`.

The list parameters arrive as text and are parsed by `requests.py`, which names every bad
one at once; `openapi.py` documents their types (`QUERY_SCHEMAS`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..errors import ERROR_RESPONSES
from ..requests import MAX_DEPTH, Requests
from ..service import ExchangeService
from ..views import book_view, candle_view, instrument_views, to_json, trade_view
from .paging import Page, Symbol, SymbolFilter, Text


def reads(service: ExchangeService, requests: Requests) -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)
    settings = service.settings

    @router.get(
        "/trades",
        summary="Trades by id: oldest first, or newest first with order=desc",
        description=LIST_HELP,
    )
    async def list_trades(
        page: Page, symbol: SymbolFilter
    ) -> list[dict[str, Any]]:  # Any: JSON objects
        query = requests.list_trades(**page, symbol=symbol)
        return [to_json(trade_view(settings, t)) for t in await service.trades(query)]

    @router.get(
        "/candles",
        summary="OHLCV candles of one instrument, oldest first",
        description=CANDLES_HELP,
    )
    async def list_candles(
        interval: Text = None,
        since: Text = None,
        until: Text = None,
        limit: Text = None,
        symbol: Annotated[str | None, Query(description="instrument (default: the first)")] = None,
    ) -> list[dict[str, Any]]:  # Any: JSON objects
        query = requests.candles(
            interval=interval,
            since=since,
            until=until,
            limit=limit,
            symbol=symbol,
        )
        candles = await service.candles(query)
        return [to_json(candle_view(query.instrument, c)) for c in candles]

    @router.get("/orderbook", summary="Aggregated book, up to `depth` levels per side")
    async def order_book(
        depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 5,
        symbol: Symbol = None,
    ) -> dict[str, Any]:  # Any: a JSON object
        query = requests.book(depth, symbol)
        levels = await service.book(query)
        book: dict[str, Any] = to_json(book_view(query.instrument, levels, depth))  # Any: JSON
        return book

    @router.get("/instruments", summary="The instruments, the default first, with their limits")
    async def instruments() -> list[dict[str, Any]]:  # Any: JSON objects
        return [to_json(v) for v in instrument_views(settings)]

    return router


LIST_HELP = (
    "A page of `limit` trades with ids strictly between `after` and `before` and timestamps "
    "within [`since`, `until`] (ISO 8601, both inclusive, to the microsecond). The page is "
    "the one next to the cursor given: `after` alone pages forward, `before` alone pages "
    "back; with both or neither, `order=desc` takes the newest page, `asc` (the default) the "
    "oldest. `order` also sets how the page is sorted."
)
CANDLES_HELP = (
    "OHLCV of the trades in each UTC bucket of `interval` (aligned to the epoch) whose start "
    "is within [`since`, `until`] (both inclusive); empty buckets are omitted. Without "
    "`since`, the newest `limit` candles. Prices in decimal units, `volume` the summed "
    "quantity."
)
