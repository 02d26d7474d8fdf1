"""Queries, mutations and subscriptions: GraphQL arguments become typed requests
(`requests.py`) and go to the service, as REST's bodies do.

Business outcomes (rejections, bad input) are typed results, not GraphQL errors; errors are
left for what the client cannot act on in its own terms (engine unavailable, bugs).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.types import Info

from ..hub import Hub, SlowConsumer
from ..requests import MAX_DEPTH, MAX_PAGE, InvalidInput, Requests
from ..security import API_KEY_HEADER, ApiKeys, RateLimiter, Unauthenticated, client_id
from ..service import ExchangeService, Rejection
from ..views import book_view, instrument_views, order_view, trade_view
from .types import (
    ChangeResult,
    FieldError,
    InstrumentNode,
    OrderBookNode,
    OrderConnection,
    OrderNode,
    OrderPlaced,
    OrderRejected,
    OrderType,
    PlaceOrderInput,
    PlaceOrderResult,
    Price,
    TradeConnection,
    TradeNode,
)

T = TypeVar("T")
RATE_LIMITED = "rate_limited"
# Strawberry's Info is generic over the context and root types; ours are plain dicts and None.
GraphQLInfo = Info[dict[str, Any], None]


def _service(info: GraphQLInfo) -> ExchangeService:
    service: ExchangeService = info.context["service"]
    return service


def _requests(info: GraphQLInfo) -> Requests:
    requests: Requests = info.context["requests"]
    return requests


def _caller(info: GraphQLInfo) -> str:
    """The owner: the X-API-Key header over HTTP, `apiKey` in connection_init over WebSocket."""
    keys: ApiKeys = info.context["keys"]
    if not keys.enabled:
        return ""
    params = info.context.get("connection_params") or {}
    key = info.context["request"].headers.get(API_KEY_HEADER) or (
        params.get("apiKey") if isinstance(params, dict) else None
    )
    try:
        return keys.owner(key)
    except Unauthenticated as exc:
        raise GraphQLError(str(exc), extensions={"code": "UNAUTHENTICATED"}) from None


def _rate_limited(info: GraphQLInfo) -> bool:
    """Whether this mutation is over the caller's rate limit; mutations pay one token each.

    The HTTP middleware takes one per request, which covers the first mutation of a
    document; every further one, and every mutation over a WebSocket (one connection, many
    operations), takes its own. An over-limit mutation is a typed rejection
    (`rate_limited`), not an error: an error in one non-null mutation field would null the
    whole answer, hiding the orders the mutations before it did place."""
    context = info.context
    request = context["request"]
    if not isinstance(request, WebSocket):
        context["mutations"] = count = context.get("mutations", 0) + 1
        if count == 1:
            return False
    keys: ApiKeys = context["keys"]
    limiter: RateLimiter = context["limiter"]
    bucket = f"key:{_caller(info)}" if keys.enabled else client_id(request.scope, keys)
    return limiter.retry_after(bucket) > 0


def _reader(info: GraphQLInfo) -> str | None:
    return _caller(info) if info.context["keys"].enabled else None


# The requests name fields as REST does; GraphQL arguments are called otherwise.
_ARGUMENT_NAMES = {"order_id": "id", "limit": "first"}


def _argument(field: str) -> str:
    return _ARGUMENT_NAMES.get(field) or _camel(field)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _field_errors(exc: InvalidInput) -> list[FieldError]:
    return [FieldError(field=_argument(e.field), message=e.message) for e in exc.errors]


@contextmanager
def _argument_errors() -> Iterator[None]:
    """Bad query arguments become GraphQL errors that name the argument as the client wrote it."""
    try:
        yield
    except InvalidInput as exc:
        fields = [{"field": _argument(e.field), "message": e.message} for e in exc.errors]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        raise GraphQLError(
            message, extensions={"code": "BAD_USER_INPUT", "errors": fields}
        ) from None


@strawberry.type
class Query:
    @strawberry.field
    async def order(self, info: GraphQLInfo, id: strawberry.ID) -> OrderNode | None:
        service = _service(info)
        try:
            request = _requests(info).get_order(id)
        except InvalidInput:
            return None  # an id of the wrong shape names no order
        record = await service.order(request, owner=_reader(info))
        return OrderNode.of(order_view(service.settings, record)) if record else None

    @strawberry.field
    async def orders(
        self,
        info: GraphQLInfo,
        alive: bool | None = None,
        side: int | None = None,
        first: int = 100,
        after: str | None = None,
        symbol: str | None = None,
    ) -> OrderConnection:
        service = _service(info)
        limit = min(first, MAX_PAGE)
        with _argument_errors():
            request = _requests(info).list_orders(
                limit=limit, after=after, alive=alive, side=side, symbol=symbol
            )
            records = await service.orders(request, owner=_reader(info))
        nodes = [OrderNode.of(order_view(service.settings, o)) for o in records]
        return OrderConnection(
            nodes=nodes,
            end_cursor=str(nodes[-1].order_id) if nodes else after,
            has_next_page=len(nodes) == limit,
        )

    @strawberry.field
    async def trades(
        self,
        info: GraphQLInfo,
        first: int = 100,
        after: str | None = None,
        symbol: str | None = None,
    ) -> TradeConnection:
        service = _service(info)
        limit = min(first, MAX_PAGE)
        with _argument_errors():
            request = _requests(info).list_trades(limit=limit, after=after, symbol=symbol)
            records = await service.trades(request)
        nodes = [TradeNode.of(trade_view(service.settings, t)) for t in records]
        return TradeConnection(
            nodes=nodes,
            end_cursor=str(nodes[-1].trade_id) if nodes else after,
            has_next_page=len(nodes) == limit,
        )

    @strawberry.field
    async def order_book(
        self, info: GraphQLInfo, depth: int = 5, symbol: str | None = None
    ) -> OrderBookNode:
        with _argument_errors():
            request = _requests(info).book(depth, symbol)
            levels = await _service(info).book(request)
        return OrderBookNode.of(book_view(request.instrument, levels, depth))

    @strawberry.field
    def instruments(self, info: GraphQLInfo) -> list[InstrumentNode]:
        """The default first; their limits let a client check an order before sending it."""
        return [InstrumentNode.of(v) for v in instrument_views(_service(info).settings)]


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def place_order(self, info: GraphQLInfo, input: PlaceOrderInput) -> PlaceOrderResult:
        if _rate_limited(info):
            return OrderRejected(reason=RATE_LIMITED, errors=[])
        try:
            request = _requests(info).place(
                side=input.side,
                quantity=input.quantity,
                price=input.price,
                client_order_id=input.client_order_id,
                market=input.type is OrderType.MARKET,
                tif=None if input.time_in_force is None else input.time_in_force.value,
                symbol=input.symbol,
            )
            outcome = await _service(info).place(request, _caller(info))
        except InvalidInput as exc:
            return OrderRejected(reason="invalid_input", errors=_field_errors(exc))
        except Rejection as exc:
            return OrderRejected(reason=exc.reason, errors=[])
        return OrderPlaced(
            order_id=strawberry.ID(str(outcome.order_id)), duplicate=outcome.duplicate
        )

    @strawberry.mutation
    async def modify_order(
        self,
        info: GraphQLInfo,
        id: strawberry.ID,
        price: Price | None = None,
        quantity: int | None = None,
    ) -> ChangeResult:
        """Change the price and/or the total quantity; lowering the quantity keeps priority."""
        if _rate_limited(info):
            return ChangeResult(success=False, reason=RATE_LIMITED)
        try:
            request = _requests(info).modify(id, price, quantity)
        except InvalidInput as exc:
            return ChangeResult(success=False, reason="invalid_input", errors=_field_errors(exc))
        outcome = await _service(info).modify(request, _caller(info))
        return ChangeResult(success=outcome.success, reason=outcome.reason)

    @strawberry.mutation
    async def cancel_order(self, info: GraphQLInfo, id: strawberry.ID) -> ChangeResult:
        if _rate_limited(info):
            return ChangeResult(success=False, reason=RATE_LIMITED)
        try:
            request = _requests(info).cancel(id)
        except InvalidInput as exc:
            return ChangeResult(success=False, reason="invalid_input", errors=_field_errors(exc))
        outcome = await _service(info).cancel(request, _caller(info))
        return ChangeResult(success=outcome.success, reason=outcome.reason)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def trades(
        self, info: GraphQLInfo, symbol: str | None = None
    ) -> AsyncGenerator[TradeNode, None]:
        """Every trade, or `symbol`'s only."""
        service = _service(info)
        with _argument_errors():
            only = _requests(info).instrument(symbol) if symbol is not None else None
        async for event in _feed(service.trade_feed):
            if only is None or only.owns(event.seq):
                yield TradeNode.of(trade_view(service.settings, event))

    @strawberry.subscription
    async def order_book(
        self, info: GraphQLInfo, depth: int = 5, symbol: str | None = None
    ) -> AsyncGenerator[OrderBookNode, None]:
        service = _service(info)
        with _argument_errors():
            instrument = _requests(info).instrument(symbol)
        depth = max(1, min(depth, MAX_DEPTH))
        async for book in _feed(service.book_feed(instrument)):
            yield OrderBookNode.of(book_view(instrument, book, depth))


async def _feed(hub: Hub[T]) -> AsyncGenerator[T, None]:
    """A hub's items until the subscriber is dropped for being too slow."""
    async with hub.subscribe() as sub:
        while True:
            try:
                yield await sub.get()
            except SlowConsumer:
                return
