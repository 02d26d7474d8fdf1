"""The orders resource: `POST /orders`, `PUT` and `DELETE /orders/{id}` (the mutations), and
`GET /orders`, `GET /orders/{id}` (the reads).

Why the mutations run below FastAPI: they are what every trading client calls on every
order, and profiling an API replica under `python -m tests.load` (py-spy) showed FastAPI's
router, dependency solving, exception wrappers and response classes taking about half of the
CPU a mutation costs there. They need nothing from the framework: bodies are read as raw
JSON and turned into typed requests (`requests.py`, as GraphQL's arguments are), errors are
rendered by `errors.error_response` (as FastAPI's handlers do). Most are served straight
from the edge's HTTP protocol (`rest/fast_lane.py`); the rest (a browser's, under CORS) come
through the rate-limit and CORS middleware to this middleware, which answers them with the
same handlers. Their OpenAPI operations are generated from the same body and answer types
(`openapi.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Request

from shared.prices import InputError

from ..asgi import ASGIApp, Receive, Scope, Send
from ..errors import ERROR_RESPONSES, ApiError, error_response
from ..requests import (
    MODIFY_FIELDS,
    ORDER_ID_PATTERN,
    PLACE_FIELDS,
    InvalidInput,
    Requests,
    parse_order_id,
)
from ..security import API_KEY_HEADER, ApiKeys, route_path
from ..service import ChangeOutcome, ExchangeService
from ..views import ChangedView, PlacedView, order_view, to_json, trade_view
from .http import Body, ClientGone, json_bytes, read_object, receive_body, respond
from .paging import Page, SymbolFilter, Text

Headers = dict[bytes, bytes]
Handler = Callable[[Headers, Body, str], Awaitable[tuple[int, bytes]]]
Answer = tuple[int, bytes, dict[str, str]]  # status, JSON body, extra headers
_encode = msgspec.json.encode
_NO_HEADERS: dict[str, str] = {}


class OrderMutations:
    """ASGI middleware: serves the order mutations, passes every other request on."""

    def __init__(
        self, app: ASGIApp, service: ExchangeService, requests: Requests, keys: ApiKeys
    ) -> None:
        self.app = app
        self.service = service
        self.requests = requests
        self.keys = keys
        self.handlers: dict[str, Handler] = {
            "POST": self._place,
            "PUT": self._modify,
            "DELETE": self._cancel,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = route_path(scope)
            served = served_methods(path)
            if served:
                method = scope["method"]
                if method in served:
                    await self.serve(self.handlers[method], scope, receive, send, path[8:])
                    return
                if method not in ("GET", "HEAD"):  # FastAPI serves the reads
                    body = {"error": "method_not_allowed", "message": "Method Not Allowed"}
                    allow = {"Allow": ", ".join(("GET", *served))}
                    await respond(send, 405, json_bytes(body), allow)
                    return
        await self.app(scope, receive, send)

    async def serve(
        self, handler: Handler, scope: Scope, receive: Receive, send: Send, oid: str
    ) -> None:
        try:
            answer = await self.answer(
                handler, first_headers(scope["headers"]), lambda: receive_body(receive), oid
            )
        except ClientGone:
            return
        await respond(send, *answer)

    async def answer(self, handler: Handler, headers: Headers, body: Body, oid: str) -> Answer:
        """The handler's answer, or the error answer for what the API refuses; a bug (an
        exception `error_response` does not render) goes up to the server, which logs it
        and answers 500."""
        try:
            status, payload = await handler(headers, body, oid)
        except Exception as exc:
            rendered = error_response(exc)
            if rendered is None:
                raise
            status, error, extra = rendered
            return status, json_bytes(error), extra
        return status, payload, _NO_HEADERS

    def _owner(self, headers: Headers) -> str:
        """ "" with auth off, else the name of the presented key (or Unauthenticated)."""
        if not self.keys.enabled:
            return ""
        key = headers.get(API_KEY_HEADER.encode())
        return self.keys.owner(key.decode("latin-1") if key is not None else None)

    async def _place(self, headers: Headers, body: Body, _: str) -> tuple[int, bytes]:
        request = self.requests.place_json(await read_object(headers, body, PLACE_FIELDS))
        outcome = await self.service.place(request, self._owner(headers))
        view = PlacedView(str(outcome.order_id), outcome.duplicate)
        return (200 if outcome.duplicate else 201), _encode(view)

    async def _modify(self, headers: Headers, body: Body, oid: str) -> tuple[int, bytes]:
        check_order_id(oid)  # first, as a path parameter is: before body and key
        fields = await read_object(headers, body, MODIFY_FIELDS)
        request = self.requests.modify(oid, fields.get("price"), fields.get("quantity"))
        return 200, _changed(await self.service.modify(request, self._owner(headers)))

    async def _cancel(self, headers: Headers, _: Body, oid: str) -> tuple[int, bytes]:
        request = self.requests.cancel(oid)
        return 200, _changed(await self.service.cancel(request, self._owner(headers)))


def first_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The request's headers by name, the first of repeated ones (as Starlette reads them)."""
    found: Headers = {}
    for name, value in headers:
        found.setdefault(name, value)
    return found


def _changed(outcome: ChangeOutcome) -> bytes:
    return _encode(ChangedView(outcome.success, outcome.reason))


def served_methods(path: str) -> tuple[str, ...]:
    """The methods the mutations serve on `path` (FastAPI serves GET on the same paths)."""
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


def reads(service: ExchangeService, requests: Requests, keys: ApiKeys) -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)
    settings = service.settings

    def reader(request: Request) -> str | None:
        """Whose orders a read may see: everyone's with auth off, else the caller's own."""
        return keys.owner(request.headers.get(API_KEY_HEADER)) if keys.enabled else None

    @router.get("/orders/{order_id}", summary="One order")
    async def get_order(
        request: Request, order_id: Annotated[str, Path(pattern=ORDER_ID_PATTERN)]
    ) -> dict[str, Any]:  # Any: a JSON object
        order = await service.order(requests.get_order(order_id), owner=reader(request))
        if order is None:
            raise ApiError(404, "not_found", f"order {order_id} not found", field="order_id")
        found: dict[str, Any] = to_json(order_view(settings, order))  # Any: JSON
        return found

    @router.get(
        "/orders/{order_id}/trades",
        summary="One order's fills (paged as GET /trades)",
        description="404 as for `GET /orders/{order_id}`: with API keys, only your own.",
    )
    async def get_order_trades(
        request: Request,
        order_id: Annotated[str, Path(pattern=ORDER_ID_PATTERN)],
        page: Page,
    ) -> list[dict[str, Any]]:  # Any: JSON objects
        query = requests.order_trades(order_id, **page)
        trades = await service.order_trades(query, owner=reader(request))
        if trades is None:
            raise ApiError(404, "not_found", f"order {order_id} not found", field="order_id")
        return [to_json(trade_view(settings, t)) for t in trades]

    @router.get(
        "/orders",
        summary="Orders by id: oldest first, or newest first with order=desc",
        description=(
            "Paged as `GET /trades`; `since` and `until` bound the creation time. With "
            "API keys, only your own orders."
        ),
    )
    async def list_orders(
        request: Request,
        page: Page,
        symbol: SymbolFilter,
        alive: Text = None,
        side: Text = None,
    ) -> list[dict[str, Any]]:  # Any: JSON objects
        query = requests.list_orders(**page, alive=alive, side=side, symbol=symbol)
        orders = await service.orders(query, owner=reader(request))
        return [to_json(order_view(settings, o)) for o in orders]

    return router
