"""`/ws/orders?after=&symbol=`: the private order feed (see `live/orders.py`). One message
per event about the caller's orders, each with its `seq`; `after` resumes it.

With AUTH_MODE=api_key the caller is the key's owner: the key comes in the X-API-Key
header or, from a browser (which cannot set headers on a WebSocket), as the first message,
`{"api_key": "..."}`. With keys off the feed carries everyone's orders.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, WebSocket

from ..feed_views import order_event_view, to_message
from ..requests import Requests
from ..security import API_KEY_HEADER, ApiKeys, Unauthenticated
from ..service import ExchangeService
from .websocket import POLICY_VIOLATION, accept, pump, resumable_request, text

AUTH_TIMEOUT_S = 10.0


def route(router: APIRouter, service: ExchangeService, requests: Requests, keys: ApiKeys) -> None:
    settings = service.settings

    @router.websocket("/ws/orders")
    async def ws_orders(websocket: WebSocket) -> None:
        request = await resumable_request(websocket, requests)
        if request is None:
            return
        if not await accept(websocket, settings.allowed_origins):
            return
        owner: str | None = None
        if keys.enabled:
            key = websocket.headers.get(API_KEY_HEADER) or await _key_message(websocket)
            try:
                owner = keys.owner(key)
            except Unauthenticated as exc:
                await websocket.close(code=POLICY_VIOLATION, reason=f"unauthenticated: {exc}")
                return
        updates = service.live.order_updates(request, owner)
        await pump(websocket, updates, lambda u: text(to_message(order_event_view(settings, u))))


async def _key_message(websocket: WebSocket) -> str | None:
    """The key from the client's first message, `{"api_key": "..."}`; None if it sends
    something else, or nothing within AUTH_TIMEOUT_S."""
    try:
        message = await asyncio.wait_for(websocket.receive(), AUTH_TIMEOUT_S)
    except TimeoutError:
        return None
    raw = message.get("text")
    try:
        body = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    key = body.get("api_key") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None
