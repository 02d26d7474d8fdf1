"""REST routes and plain WebSockets: a thin skin over `Exchange`.

Bodies are read as raw JSON and validated by the application layer (the same parsers the
GraphQL resolvers use), so both APIs accept and refuse exactly the same values. The request
schemas below only document the contract in OpenAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from shared.config import Instrument
from shared.prices import InputError

from .exchange import MAX_PAGE, Exchange, InvalidInput
from .hub import Hub, SlowConsumer
from .security import API_KEY_HEADER, ApiKeys, origin_allowed
from .views import book_json, order_json, trade_json

MAX_BODY_BYTES = 16 * 1024
SYMBOL_HELP = "instrument (default: all for lists, the default instrument for the book)"
ORDER_ID_PATTERN = r"^[0-9]{1,18}$"

PRICE_SCHEMA = {
    "oneOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {
            "type": "string",
            "pattern": r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?\s*$",
        },
    ],
    "description": "limit price in decimal units, a multiple of the tick size",
}
PLACE_SCHEMA = {
    "type": "object",
    "required": ["side", "quantity"],
    "additionalProperties": False,
    "properties": {
        "side": {"type": "integer", "enum": [1, -1], "description": "1 buy, -1 sell"},
        "price": {**PRICE_SCHEMA, "description": "required for limit orders, absent for market"},
        "quantity": {"type": "integer", "minimum": 1},
        "client_order_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "symbol": {"type": "string", "description": "instrument; default: the first configured"},
        "type": {"type": "string", "enum": ["limit", "market"], "default": "limit"},
        "time_in_force": {
            "type": "string",
            "enum": ["GTC", "IOC", "FOK"],
            "description": "default GTC for limit orders, IOC for market orders",
        },
    },
    "example": {"side": 1, "price": 101.5, "quantity": 10},
}
MODIFY_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "price": PRICE_SCHEMA,
        "quantity": {
            "type": "integer",
            "minimum": 1,
            "description": "new total quantity; lowering it keeps time priority",
        },
    },
    "example": {"price": 102},
}


ERROR_BODY = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "reason": {"type": "string"},
        "field": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/json": {"schema": ERROR_BODY}}}
    for status, text in {
        400: "malformed JSON",
        401: "API key missing or unknown (AUTH_MODE=api_key)",
        404: "no such order or route",
        409: "rejected by the engine (e.g. no_liquidity)",
        413: "body too large",
        415: "body is not application/json",
        422: "invalid input; `errors` names each field",
        429: "rate limited; see Retry-After",
        503: "engine or store unavailable, or engine backlog too long; see Retry-After",
    }.items()
}


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


async def read_object(request: Request, allowed: set[str]) -> dict[str, Any]:
    """The JSON object body, or an ApiError naming what is wrong with it."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body must be application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(
                413, "body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes"
            )
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object", field="body")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown field {unknown[0]!r}",
            errors=[{"field": name, "message": "unknown field"} for name in unknown],
        )
    return body


def require(body: dict[str, Any], *fields: str) -> None:
    missing = [InputError(name, "is required") for name in fields if name not in body]
    if missing:
        raise InvalidInput(missing)


def build_router(ex: Exchange, keys: ApiKeys) -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)

    def caller(request: Request) -> str:
        """The owner for this request: "" with auth off, else the key's name (or a 401)."""
        return keys.owner(request.headers.get(API_KEY_HEADER))

    def reader(request: Request) -> str | None:
        """Whose orders a read may see: everyone's with auth off, else the caller's own."""
        return caller(request) if keys.enabled else None

    @router.post(
        "/orders",
        status_code=201,
        openapi_extra=_body(PLACE_SCHEMA),
        summary="Place an order (limit or market)",
        responses={200: {"description": "client_order_id seen before: the original order"}},
    )
    async def place_order(request: Request) -> JSONResponse:
        body = await read_object(
            request,
            {"side", "price", "quantity", "client_order_id", "type", "time_in_force", "symbol"},
        )
        require(body, "side", "quantity")
        result = await ex.place(
            side=body.get("side"),
            price=body.get("price"),
            quantity=body.get("quantity"),
            client_order_id=body.get("client_order_id"),
            time_in_force=body.get("time_in_force"),
            order_type=body.get("type"),
            owner=caller(request),
            symbol=body.get("symbol"),
        )
        status = 200 if result.duplicate else 201
        payload: dict[str, Any] = {"order_id": str(result.order_id)}
        if result.duplicate:
            payload["duplicate"] = True
        return JSONResponse(payload, status_code=status)

    @router.put(
        "/orders/{order_id}", openapi_extra=_body(MODIFY_SCHEMA), summary="Modify the price"
    )
    async def modify_order(
        request: Request, order_id: Annotated[str, Path(pattern=ORDER_ID_PATTERN)]
    ) -> dict[str, Any]:
        body = await read_object(request, {"price", "quantity"})
        result = await ex.modify(
            order_id=order_id,
            price=body.get("price"),
            quantity=body.get("quantity"),
            owner=caller(request),
        )
        return _change(result.success, result.reason)

    @router.delete("/orders/{order_id}", summary="Cancel the remaining quantity")
    async def cancel_order(
        request: Request, order_id: Annotated[str, Path(pattern=ORDER_ID_PATTERN)]
    ) -> dict[str, Any]:
        result = await ex.cancel(order_id=order_id, owner=caller(request))
        return _change(result.success, result.reason)

    @router.get("/orders/{order_id}", summary="One order")
    async def get_order(
        request: Request, order_id: Annotated[str, Path(pattern=ORDER_ID_PATTERN)]
    ) -> dict[str, Any]:
        order = await ex.order(order_id, owner=reader(request))
        if order is None:
            raise ApiError(404, "not_found", f"order {order_id} not found", field="order_id")
        return order_json(ex, order)

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
        return [order_json(ex, o) for o in orders]

    @router.get("/trades", summary="Trades, oldest first (cursor: the last trade_id seen)")
    async def list_trades(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after: Annotated[str | None, Query(pattern=ORDER_ID_PATTERN)] = None,
        symbol: Annotated[str | None, Query(description=SYMBOL_HELP)] = None,
    ) -> list[dict[str, Any]]:
        trades = await ex.trade_list(limit=limit, after=after, symbol=symbol)
        return [trade_json(ex, t) for t in trades]

    @router.get("/orderbook", summary="Aggregated book, up to `depth` levels per side")
    async def order_book(
        depth: Annotated[int, Query(ge=1, le=50)] = 5,
        symbol: Annotated[str | None, Query(description=SYMBOL_HELP)] = None,
    ) -> dict[str, Any]:
        return book_json(ex, await ex.book(depth, symbol), depth)

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
        await stream(websocket, ex.trades, lambda t: trade_json(ex, t), keep)

    @router.websocket("/ws/orderbook")
    async def ws_orderbook(websocket: WebSocket) -> None:
        """The top 5 levels every BOOK_INTERVAL_S, of ?symbol= (default: the default one)."""
        instrument = ws_instrument(websocket)
        if instrument is None:
            await websocket.close(code=1008, reason="unknown symbol")
            return
        await stream(websocket, ex.books[instrument.symbol], lambda b: book_json(ex, b, 5))

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


def _change(success: bool, reason: str | None) -> dict[str, Any]:
    return {"success": True} if success else {"success": False, "reason": reason}
