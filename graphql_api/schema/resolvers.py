"""Queries, mutations and subscriptions: GraphQL arguments become typed requests
(`requests.py`) and go to the service, as REST's bodies do.

Business outcomes (rejections, bad input) are typed results, not GraphQL errors; errors are
left for what the client cannot act on in its own terms (engine unavailable, bugs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, TypeVar

import strawberry
from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.types import Info
from strawberry.types.nodes import SelectedField

from shared.prices import InputError

from ..requests import (
    CANDLE_PAGE,
    DEFAULT_PAGE,
    MAX_PAGE,
    InvalidInput,
    ListOrders,
    ListTrades,
    Requests,
    Window,
)
from ..security import API_KEY_HEADER, ApiKeys, RateLimiter, Unauthenticated, client_id
from ..service import ExchangeService, Rejection
from ..views import book_view, candle_view, instrument_views, order_view, trade_view
from .types import (
    CandleInterval,
    CandleNode,
    ChangeResult,
    FieldError,
    InstrumentNode,
    OrderBookNode,
    OrderConnection,
    OrderNode,
    OrderPlaced,
    OrderRejected,
    OrderType,
    PageInfo,
    PlaceOrderInput,
    PlaceOrderResult,
    Price,
    TradeConnection,
    TradeNode,
)

T = TypeVar("T")
R = TypeVar("R", ListOrders, ListTrades)
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
    key = info.context["request"].headers.get(API_KEY_HEADER) or connection_key(
        info.context.get("connection_params")
    )
    try:
        return keys.owner(key)
    except Unauthenticated as exc:
        raise GraphQLError(str(exc), extensions={"code": "UNAUTHENTICATED"}) from None


def connection_key(params: object) -> str | None:
    """The key in a WebSocket's connection_init payload: `apiKey`, or else an entry named as
    the HTTP header (any case), which is how GraphiQL sends what its Headers editor holds."""
    if not isinstance(params, dict):
        return None
    key = params.get("apiKey")
    if key is None:
        key = next((v for k, v in params.items() if str(k).lower() == API_KEY_HEADER), None)
    return key if isinstance(key, str) else None


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
def _argument_errors(**names: str) -> Iterator[None]:
    """Bad query arguments become GraphQL errors that name the argument as the client wrote it
    (`names`: REST names that this field's arguments keep, or rename otherwise)."""
    try:
        yield
    except InvalidInput as exc:
        fields = [
            {"field": names.get(e.field) or _argument(e.field), "message": e.message}
            for e in exc.errors
        ]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        raise GraphQLError(
            message, extensions={"code": "BAD_USER_INPUT", "errors": fields}
        ) from None


Since = Annotated[
    datetime | None, strawberry.argument(description="from this time (inclusive, to the µs)")
]
Until = Annotated[
    datetime | None, strawberry.argument(description="to this time (inclusive, to the µs)")
]
FirstStart = Annotated[
    datetime | None, strawberry.argument(description="first bucket start (inclusive)")
]
LastStart = Annotated[
    datetime | None, strawberry.argument(description="last bucket start (inclusive)")
]


def _relay(info: GraphQLInfo, first: int, last: int | None) -> tuple[object, bool]:
    """(page size, whether it counts from the end): Relay's `first` or `last`, not both.
    Sizes above MAX_PAGE are clamped, as `first` always was."""
    if last is None:
        return min(first, MAX_PAGE), False
    field = info.selected_fields[0]
    if isinstance(field, SelectedField) and "first" in field.arguments:
        raise InvalidInput([InputError("first", "cannot be combined with last")])
    return min(last, MAX_PAGE), True


def _one_more(request: R) -> R:
    """The request for one item beyond its page: whether there is a next (or, counting
    from the end, a previous) page."""
    assert request.window is not None
    return replace(request, window=replace(request.window, limit=request.window.limit + 1))


def _trim(records: list[T], window: Window | None) -> tuple[list[T], bool, bool]:
    """(the page, has a previous page, has a next page) from one item too many."""
    assert window is not None
    more = len(records) > window.limit
    if window.from_end:  # oldest first, the extra one is the oldest
        return (records[1:] if more else records), more, False
    return records[: window.limit], False, more


def _page_info(
    ids: list[strawberry.ID], after: str | None, before: str | None, previous: bool, following: bool
) -> PageInfo:
    """Cursors are ids; an empty page keeps the cursors it was asked with, so a client can
    poll from there."""
    return PageInfo(
        start_cursor=str(ids[0]) if ids else before,
        end_cursor=str(ids[-1]) if ids else after,
        has_previous_page=previous,
        has_next_page=following,
    )


async def _trade_connection(
    info: GraphQLInfo, request: ListTrades, after: str | None, before: str | None
) -> TradeConnection:
    service = _service(info)
    with _argument_errors():
        records = await service.trades(_one_more(request))
    page, previous, following = _trim(records, request.window)
    nodes = [TradeNode.of(trade_view(service.settings, t)) for t in page]
    info_ = _page_info([n.trade_id for n in nodes], after, before, previous, following)
    return TradeConnection(
        nodes=nodes, end_cursor=info_.end_cursor, has_next_page=info_.has_next_page, page_info=info_
    )


async def order_trades(
    info: GraphQLInfo,
    order_id: strawberry.ID,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> TradeConnection:
    """`Order.trades`: whoever sees the order (through `order` or `orders`) sees its fills."""
    with _argument_errors():
        size, from_end = _relay(info, DEFAULT_PAGE if first is None else first, last)
        request = _requests(info).list_trades(
            limit=size, after=after, before=before, last=from_end, order_id=int(order_id)
        )
    return await _trade_connection(info, request, after, before)


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
        first: int = DEFAULT_PAGE,
        after: str | None = None,
        symbol: str | None = None,
        last: int | None = None,
        before: str | None = None,
        since: Since = None,
        until: Until = None,
    ) -> OrderConnection:
        service = _service(info)
        with _argument_errors():
            size, from_end = _relay(info, first, last)
            request = _requests(info).list_orders(
                limit=size, after=after, before=before, since=since, until=until,
                alive=alive, side=side, symbol=symbol, last=from_end,
            )  # fmt: skip
            records = await service.orders(_one_more(request), owner=_reader(info))
        page, previous, following = _trim(records, request.window)
        nodes = [OrderNode.of(order_view(service.settings, o)) for o in page]
        info_ = _page_info([n.order_id for n in nodes], after, before, previous, following)
        return OrderConnection(
            nodes=nodes,
            end_cursor=info_.end_cursor,
            has_next_page=info_.has_next_page,
            page_info=info_,
        )

    @strawberry.field
    async def trades(
        self,
        info: GraphQLInfo,
        first: int = DEFAULT_PAGE,
        after: str | None = None,
        symbol: str | None = None,
        last: int | None = None,
        before: str | None = None,
        since: Since = None,
        until: Until = None,
    ) -> TradeConnection:
        with _argument_errors():
            size, from_end = _relay(info, first, last)
            request = _requests(info).list_trades(
                limit=size, after=after, before=before, since=since, until=until,
                symbol=symbol, last=from_end,
            )  # fmt: skip
        return await _trade_connection(info, request, after, before)

    @strawberry.field
    async def candles(
        self,
        info: GraphQLInfo,
        interval: CandleInterval,
        symbol: str | None = None,
        since: FirstStart = None,
        until: LastStart = None,
        limit: int = CANDLE_PAGE,
    ) -> list[CandleNode]:
        with _argument_errors(limit="limit"):
            request = _requests(info).candles(
                interval=interval.value, symbol=symbol, since=since, until=until, limit=limit
            )
            candles = await _service(info).candles(request)
        return [CandleNode.of(candle_view(request.instrument, c)) for c in candles]

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
