"""`/ws/book?depth=N&symbol=`: the incremental order book. First a snapshot of the top N
levels per side with its `seq`, then one message per change to a level within those N
(see `live/book.py`), each with the `seq` of the event that caused it."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import APIRouter, WebSocket

from shared.config import Instrument

from ..feed_views import book_snapshot_view, level_change_text, to_message
from ..requests import InvalidInput, Requests
from ..service import ExchangeService
from .websocket import accept, pump, refuse, text

DEFAULT_DEPTH = 10


def route(router: APIRouter, service: ExchangeService, requests: Requests) -> None:
    @router.websocket("/ws/book")
    async def ws_book(websocket: WebSocket) -> None:
        params = websocket.query_params
        raw = params.get("depth", str(DEFAULT_DEPTH))
        depth: object = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 4 else raw
        try:
            query = requests.book(depth, params.get("symbol"))
        except InvalidInput as exc:
            await refuse(websocket, str(exc))
            return
        if await accept(websocket, service.settings.allowed_origins):
            messages = _messages(service, query.instrument, query.depth)
            await pump(websocket, messages, lambda message: message)


async def _messages(
    service: ExchangeService, instrument: Instrument, depth: int
) -> AsyncGenerator[str, None]:
    async with service.live.book_updates(instrument, depth) as (snapshot, changes):
        yield text(to_message(book_snapshot_view(instrument, snapshot, depth)))
        while True:
            yield level_change_text(instrument, await changes.get())
