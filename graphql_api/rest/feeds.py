"""Live data over plain WebSockets, one JSON object per message: `/ws/trades` (one message
per trade, resumable with `after`), `/ws/orderbook` (the top 5 levels every
BOOK_INTERVAL_S), and, from their own modules, `/ws/orders` (the private order feed) and
`/ws/book` (the incremental book)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from ..feed_views import trade_text
from ..requests import InvalidInput, Requests
from ..security import ApiKeys
from ..service import ExchangeService
from ..views import book_view, to_json
from . import book_feed, order_feed
from .websocket import accept, hub_items, pump, refuse, resumable_request, text


def feeds(service: ExchangeService, requests: Requests, keys: ApiKeys) -> APIRouter:
    router = APIRouter()
    settings = service.settings

    @router.websocket("/ws/trades")
    async def ws_trades(websocket: WebSocket) -> None:
        """Every trade, or with ?symbol= one instrument's; with ?after= (the last trade id
        the client has) first every trade after it, then live ones, with no gap and no
        duplicate in between."""
        request = await resumable_request(websocket, requests)
        if request is None:
            return
        if await accept(websocket, settings.allowed_origins):
            trades = service.live.trades(request)
            await pump(websocket, trades, lambda t: trade_text(settings, t))

    @router.websocket("/ws/orderbook")
    async def ws_orderbook(websocket: WebSocket) -> None:
        """The top 5 levels every BOOK_INTERVAL_S, of ?symbol= (default: the default one)."""
        try:
            instrument = requests.instrument(websocket.query_params.get("symbol"))
        except InvalidInput as exc:
            await refuse(websocket, str(exc))
            return
        if await accept(websocket, settings.allowed_origins):
            books = hub_items(service.book_feed(instrument))
            await pump(websocket, books, lambda b: text(to_json(book_view(instrument, b, 5))))

    order_feed.route(router, service, requests, keys)
    book_feed.route(router, service, requests)
    return router
