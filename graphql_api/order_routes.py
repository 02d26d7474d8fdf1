"""`POST /orders`, `PUT /orders/{id}` and `DELETE /orders/{id}`: the order mutations, served by
a plain ASGI app in front of FastAPI's router.

Why below FastAPI: these three routes are what every trading client calls on every order,
and profiling an API replica under `python -m tests.load` (py-spy) showed FastAPI's router,
dependency solving, exception wrappers and response classes taking about half of the CPU a
mutation costs there. The routes need nothing from the framework: bodies are read as raw
JSON and validated by `Exchange` with the `shared` parsers (as the GraphQL resolvers are),
errors are rendered by `errors.error_response` (as FastAPI's handlers do), and the app sits
inside the rate-limit and CORS middleware, which still apply. `OPENAPI_PATHS` documents the
routes in FastAPI's OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from shared.prices import InputError

from .errors import ERROR_RESPONSES, ApiError, error_response
from .exchange import Exchange, InvalidInput, parse_order_id
from .security import API_KEY_HEADER, ApiKeys, route_path

MAX_BODY_BYTES = 16 * 1024
ORDER_ID_PATTERN = r"^[0-9]{1,18}$"
PLACE_FIELDS = frozenset(
    {"side", "price", "quantity", "client_order_id", "type", "time_in_force", "symbol"}
)
MODIFY_FIELDS = frozenset({"price", "quantity"})

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before sending its whole body: nothing to answer."""


class OrderRoutes:
    """ASGI middleware: serves the order mutations, passes every other request on."""

    def __init__(self, app: ASGIApp, exchange: Exchange, keys: ApiKeys) -> None:
        self.app = app
        self.exchange = exchange
        self.keys = keys
        self.handlers = {"POST": self._place, "PUT": self._modify, "DELETE": self._cancel}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = route_path(scope)
            served = served_methods(path)
            if served:
                method = scope["method"]
                if method in served:
                    await self._serve(self.handlers[method], scope, receive, send, path[8:])
                    return
                if method not in ("GET", "HEAD"):  # FastAPI serves the reads
                    body = {"error": "method_not_allowed", "message": "Method Not Allowed"}
                    await respond(send, 405, body, {"Allow": ", ".join(("GET", *served))})
                    return
        await self.app(scope, receive, send)

    async def _serve(self, handler: Any, scope: Any, receive: Any, send: Any, oid: str) -> None:
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of repeated headers, as Starlette
        extra: dict[str, str] = {}
        try:
            status, payload = await handler(headers, receive, oid)
        except ClientGone:
            return
        except Exception as exc:
            rendered = error_response(exc)
            if rendered is None:
                raise  # a bug: Starlette's ServerErrorMiddleware answers 500 and logs it
            status, payload, extra = rendered
        await respond(send, status, payload, extra)

    def _owner(self, headers: dict[bytes, bytes]) -> str:
        """ "" with auth off, else the name of the presented key (or Unauthenticated)."""
        if not self.keys.enabled:
            return ""
        key = headers.get(API_KEY_HEADER.encode())
        return self.keys.owner(key.decode("latin-1") if key is not None else None)

    async def _place(self, headers: dict[bytes, bytes], receive: Any, _: str) -> tuple[int, Any]:
        body = await read_object(headers, receive, PLACE_FIELDS)
        missing = [InputError(f, "is required") for f in ("side", "quantity") if f not in body]
        if missing:
            raise InvalidInput(missing)
        result = await self.exchange.place(
            side=body.get("side"),
            price=body.get("price"),
            quantity=body.get("quantity"),
            client_order_id=body.get("client_order_id"),
            time_in_force=body.get("time_in_force"),
            order_type=body.get("type"),
            owner=self._owner(headers),
            symbol=body.get("symbol"),
        )
        if result.duplicate:
            return 200, {"order_id": str(result.order_id), "duplicate": True}
        return 201, {"order_id": str(result.order_id)}

    async def _modify(
        self, headers: dict[bytes, bytes], receive: Any, order_id: str
    ) -> tuple[int, Any]:
        check_order_id(order_id)  # first, as a path parameter is: before body and key
        body = await read_object(headers, receive, MODIFY_FIELDS)
        result = await self.exchange.modify(
            order_id=order_id,
            price=body.get("price"),
            quantity=body.get("quantity"),
            owner=self._owner(headers),
        )
        return 200, change_json(result.success, result.reason)

    async def _cancel(
        self, headers: dict[bytes, bytes], receive: Any, order_id: str
    ) -> tuple[int, Any]:
        check_order_id(order_id)
        result = await self.exchange.cancel(order_id=order_id, owner=self._owner(headers))
        return 200, change_json(result.success, result.reason)


def served_methods(path: str) -> tuple[str, ...]:
    """The methods these routes serve on `path` (FastAPI serves GET on the same paths)."""
    if path == "/orders":
        return ("POST",)
    if path.startswith("/orders/") and path[8:] and "/" not in path[8:]:
        return ("PUT", "DELETE")
    return ()


def check_order_id(order_id: str) -> None:
    try:
        parse_order_id(order_id)
    except InputError as exc:
        raise InvalidInput([exc]) from None


async def respond(send: Any, status: int, payload: Any, extra: dict[str, str]) -> None:
    """A JSON response, encoded as Starlette's JSONResponse encodes it."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    head += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def read_object(
    headers: dict[bytes, bytes], receive: Any, allowed: frozenset[str]
) -> dict[str, Any]:
    """The JSON object body, or an ApiError naming what is wrong with it."""
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body must be application/json")
    declared = headers.get(b"content-length", b"")
    too_large = ApiError(413, "body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    raw = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        raw += message.get("body", b"")
        if len(raw) > MAX_BODY_BYTES:
            raise too_large
        if not message.get("more_body", False):
            break
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


def change_json(success: bool, reason: str | None) -> dict[str, Any]:
    return {"success": True} if success else {"success": False, "reason": reason}


# -- OpenAPI --------------------------------------------------------------------------------

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
PLACED_SCHEMA = {
    "type": "object",
    "required": ["order_id"],
    "additionalProperties": False,
    "properties": {
        "order_id": {"type": "string", "pattern": ORDER_ID_PATTERN},
        "duplicate": {"type": "boolean", "description": "present (true) on 200 only"},
    },
}
CHANGED_SCHEMA = {
    "type": "object",
    "required": ["success"],
    "additionalProperties": False,
    "properties": {
        "success": {"type": "boolean"},
        "reason": {
            "type": "string",
            "description": "why not, when success is false (e.g. unknown_order)",
        },
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ORDER_ID = {
    "name": "order_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": ORDER_ID_PATTERN, "title": "Order Id"},
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): ERROR_RESPONSES[status] for status in statuses}


OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/orders": {
        "post": {
            "summary": "Place an order (limit or market)",
            "operationId": "place_order_orders_post",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PLACE_SCHEMA}},
            },
            "responses": {
                "201": _json(PLACED_SCHEMA, "the order was accepted"),
                "200": _json(PLACED_SCHEMA, "client_order_id seen before: the original order"),
                **_errors(400, 401, 409, 413, 415, 422, 429, 503),
            },
        }
    },
    "/orders/{order_id}": {
        "put": {
            "summary": "Modify the price and/or the quantity",
            "operationId": "modify_order_orders__order_id__put",
            "parameters": [_ORDER_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": MODIFY_SCHEMA}},
            },
            "responses": {
                "200": _json(CHANGED_SCHEMA, "whether the engine applied it"),
                **_errors(400, 401, 413, 415, 422, 429, 503),
            },
        },
        "delete": {
            "summary": "Cancel the remaining quantity",
            "operationId": "cancel_order_orders__order_id__delete",
            "parameters": [_ORDER_ID],
            "responses": {
                "200": _json(CHANGED_SCHEMA, "whether the engine applied it"),
                **_errors(401, 422, 429, 503),
            },
        },
    },
}
