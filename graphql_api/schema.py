"""The GraphQL schema (Strawberry): queries, mutations and subscriptions over `Exchange`.

Business outcomes (rejections, bad input) are typed results, not GraphQL errors; errors are
left for what the client cannot act on in its own terms (engine unavailable, bugs).
Prices travel as the `Price` scalar: a decimal string on output; a string or a number on
input, validated by the same parser as REST.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, NewType, TypeVar

import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInt,
    GraphQLList,
    GraphQLSchema,
    get_nullable_type,
)
from graphql.utilities import get_operation_ast, type_from_ast
from starlette.websockets import WebSocket
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import validate_document  # Strawberry's rules included
from strawberry.types import Info

from .exchange import (
    MAX_PAGE,
    Exchange,
    InvalidInput,
    Rejection,
    Unavailable,
)
from .hub import Hub, SlowConsumer
from .security import API_KEY_HEADER, ApiKeys, RateLimiter, Unauthenticated, client_id
from .views import (
    BookLevelsView,
    OrderView,
    TradeView,
    book_view,
    order_view,
    trade_view,
)

T = TypeVar("T")
RATE_LIMITED = "rate_limited"

Price = NewType("Price", Decimal)
PRICE_SCALAR = strawberry.scalar(
    name="Price",
    description='A price in decimal units as a string, e.g. "101.25" (numbers accepted on input)',
    serialize=lambda value: str(value),
    parse_value=lambda value: value,
)


def _ex(info: Info) -> Exchange:
    exchange: Exchange = info.context["exchange"]
    return exchange


def _caller(info: Info) -> str:
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


def _rate_limited(info: Info) -> bool:
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


def _reader(info: Info) -> str | None:
    return _caller(info) if info.context["keys"].enabled else None


@strawberry.enum
class TimeInForce(enum.Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


@strawberry.enum
class OrderType(enum.Enum):
    LIMIT = "limit"
    MARKET = "market"


@strawberry.type
class Order:
    order_id: strawberry.ID
    symbol: str
    side: int
    order_type: OrderType
    time_in_force: TimeInForce
    order_price: Price | None  # null for a market order
    order_quantity: int
    traded_quantity: int
    remaining_quantity: int
    cancelled_quantity: int
    order_alive: bool
    client_order_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, v: OrderView) -> Order:
        return cls(
            order_id=strawberry.ID(v.order_id),
            symbol=v.symbol,
            side=v.side,
            order_type=OrderType(v.order_type),
            time_in_force=TimeInForce(v.time_in_force),
            order_price=None if v.order_price is None else Price(v.order_price),
            order_quantity=v.order_quantity,
            traded_quantity=v.traded_quantity,
            remaining_quantity=v.remaining_quantity,
            cancelled_quantity=v.cancelled_quantity,
            order_alive=v.order_alive,
            client_order_id=v.client_order_id,
            created_at=v.created_at,
            updated_at=v.updated_at,
        )


@strawberry.type
class Trade:
    trade_id: strawberry.ID
    symbol: str
    trade_price: Price
    quantity: int
    bid_order_id: strawberry.ID
    ask_order_id: strawberry.ID
    aggressor_side: int
    timestamp: datetime

    @classmethod
    def of(cls, v: TradeView) -> Trade:
        return cls(
            trade_id=strawberry.ID(v.trade_id),
            symbol=v.symbol,
            trade_price=Price(v.trade_price),
            quantity=v.quantity,
            bid_order_id=strawberry.ID(v.bid_order_id),
            ask_order_id=strawberry.ID(v.ask_order_id),
            aggressor_side=v.aggressor_side,
            timestamp=v.timestamp,
        )


@strawberry.type
class Level:
    price: Price
    quantity: int


@strawberry.type
class OrderBook:
    symbol: str
    timestamp: datetime
    seq: int
    bids: list[Level]
    asks: list[Level]

    @classmethod
    def of(cls, v: BookLevelsView) -> OrderBook:
        return cls(
            symbol=v.symbol,
            timestamp=v.timestamp,
            seq=v.seq,
            bids=[Level(price=Price(level.price), quantity=level.quantity) for level in v.bids],
            asks=[Level(price=Price(level.price), quantity=level.quantity) for level in v.asks],
        )


@strawberry.type
class OrderConnection:
    nodes: list[Order]
    end_cursor: str | None
    has_next_page: bool


@strawberry.type
class TradeConnection:
    nodes: list[Trade]
    end_cursor: str | None
    has_next_page: bool


@strawberry.type
class FieldError:
    field: str
    message: str


@strawberry.type
class OrderPlaced:
    order_id: strawberry.ID
    duplicate: bool = strawberry.field(
        description="true when client_order_id was used before: this is the original order"
    )


@strawberry.type
class OrderRejected:
    reason: str
    errors: list[FieldError]


PlaceOrderResult = Annotated[OrderPlaced | OrderRejected, strawberry.union("PlaceOrderResult")]


@strawberry.type
class ChangeResult:
    success: bool
    reason: str | None = None
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.input
class PlaceOrderInput:
    side: int = strawberry.field(description="1 buy, -1 sell")
    quantity: int
    price: Price | None = strawberry.field(
        default=None, description="required for LIMIT orders, omitted for MARKET"
    )
    client_order_id: str | None = None
    type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce | None = strawberry.field(
        default=None, description="default GTC for LIMIT, IOC for MARKET"
    )
    symbol: str | None = strawberry.field(
        default=None, description="instrument; default: the first configured"
    )


# The application layer names fields as REST does; GraphQL arguments are called otherwise.
_ARGUMENT_NAMES = {"order_id": "id", "limit": "first"}


def _argument(field: str) -> str:
    return _ARGUMENT_NAMES.get(field) or _camel(field)


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


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@strawberry.type
class Query:
    @strawberry.field
    async def order(self, info: Info, id: strawberry.ID) -> Order | None:
        ex = _ex(info)
        try:
            record = await ex.order(str(id), owner=_reader(info))
        except InvalidInput:
            return None  # an id of the wrong shape names no order
        return Order.of(order_view(ex, record)) if record else None

    @strawberry.field
    async def orders(
        self,
        info: Info,
        alive: bool | None = None,
        side: int | None = None,
        first: int = 100,
        after: str | None = None,
        symbol: str | None = None,
    ) -> OrderConnection:
        ex = _ex(info)
        limit = min(first, MAX_PAGE)
        with _argument_errors():
            records = await ex.orders(
                alive=alive,
                side=side,
                limit=limit,
                after=after,
                owner=_reader(info),
                symbol=symbol,
            )
        nodes = [Order.of(order_view(ex, o)) for o in records]
        return OrderConnection(
            nodes=nodes,
            end_cursor=str(nodes[-1].order_id) if nodes else after,
            has_next_page=len(nodes) == limit,
        )

    @strawberry.field
    async def trades(
        self, info: Info, first: int = 100, after: str | None = None, symbol: str | None = None
    ) -> TradeConnection:
        ex = _ex(info)
        limit = min(first, MAX_PAGE)
        with _argument_errors():
            records = await ex.trade_list(limit=limit, after=after, symbol=symbol)
        nodes = [Trade.of(trade_view(ex, t)) for t in records]
        return TradeConnection(
            nodes=nodes,
            end_cursor=str(nodes[-1].trade_id) if nodes else after,
            has_next_page=len(nodes) == limit,
        )

    @strawberry.field
    async def order_book(self, info: Info, depth: int = 5, symbol: str | None = None) -> OrderBook:
        ex = _ex(info)
        with _argument_errors():
            return OrderBook.of(book_view(ex, await ex.book(depth, symbol), depth))


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def place_order(self, info: Info, input: PlaceOrderInput) -> PlaceOrderResult:
        if _rate_limited(info):
            return OrderRejected(reason=RATE_LIMITED, errors=[])
        try:
            result = await _ex(info).place(
                side=input.side,
                price=input.price,
                quantity=input.quantity,
                client_order_id=input.client_order_id,
                time_in_force=input.time_in_force.value if input.time_in_force else None,
                order_type=input.type.value,
                owner=_caller(info),
                symbol=input.symbol,
            )
        except InvalidInput as exc:
            return OrderRejected(reason="invalid_input", errors=_field_errors(exc))
        except Rejection as exc:
            return OrderRejected(reason=exc.reason, errors=[])
        return OrderPlaced(order_id=strawberry.ID(str(result.order_id)), duplicate=result.duplicate)

    @strawberry.mutation
    async def modify_order(
        self,
        info: Info,
        id: strawberry.ID,
        price: Price | None = None,
        quantity: int | None = None,
    ) -> ChangeResult:
        """Change the price and/or the total quantity; lowering the quantity keeps priority."""
        if _rate_limited(info):
            return ChangeResult(success=False, reason=RATE_LIMITED)
        try:
            result = await _ex(info).modify(
                order_id=str(id), price=price, quantity=quantity, owner=_caller(info)
            )
        except InvalidInput as exc:
            return ChangeResult(success=False, reason="invalid_input", errors=_field_errors(exc))
        return ChangeResult(success=result.success, reason=result.reason)

    @strawberry.mutation
    async def cancel_order(self, info: Info, id: strawberry.ID) -> ChangeResult:
        if _rate_limited(info):
            return ChangeResult(success=False, reason=RATE_LIMITED)
        try:
            result = await _ex(info).cancel(order_id=str(id), owner=_caller(info))
        except InvalidInput as exc:
            return ChangeResult(success=False, reason="invalid_input", errors=_field_errors(exc))
        return ChangeResult(success=result.success, reason=result.reason)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def trades(self, info: Info, symbol: str | None = None) -> AsyncGenerator[Trade, None]:
        """Every trade, or `symbol`'s only."""
        ex = _ex(info)
        with _argument_errors():
            only = ex.instrument(symbol) if symbol is not None else None
        async for event in _feed(ex.trades):
            if only is None or only.owns(event.seq):
                yield Trade.of(trade_view(ex, event))

    @strawberry.subscription
    async def order_book(
        self, info: Info, depth: int = 5, symbol: str | None = None
    ) -> AsyncGenerator[OrderBook, None]:
        ex = _ex(info)
        with _argument_errors():
            instrument = ex.instrument(symbol)
        depth = max(1, min(depth, 50))
        async for book in _feed(ex.books[instrument.symbol]):
            yield OrderBook.of(book_view(ex, book, depth))


async def _feed(hub: Hub[T]) -> AsyncGenerator[T, None]:
    """A hub's items until the subscriber is dropped for being too slow."""
    async with hub.subscribe() as sub:
        while True:
            try:
                yield await sub.get()
            except SlowConsumer:
                return


def _mask(error: GraphQLError) -> bool:
    """Hide internal errors; keep what a client can act on (bad arguments, auth, retry)."""
    original = error.original_error
    return original is not None and not isinstance(
        original, GraphQLError | Unavailable | Unauthenticated
    )


class StrictIntVariables(SchemaExtension):
    """Refuse a JSON float (`1.0`, `1e3`) sent for an `Int` variable, or for an `Int` field
    of an input object variable, as REST refuses it with a 422.

    graphql-core coerces an integral float to `Int`, as graphql-js does (JavaScript has one
    number type); the GraphQL spec asks `Int` input coercion to accept integers only. This
    runs Strawberry's validation itself (so it does not run again), then checks
    the raw variables: a float where an `Int` goes is a request error naming the variable
    and the path inside it, and nothing executes."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            schema = context.schema._schema
            errors = validate_document(schema, document, context.validation_rules)
            if not errors:
                errors = _float_ints(schema, document, context.operation_name, context.variables)
            context.pre_execution_errors = errors
        yield


def _float_ints(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> list[GraphQLError]:
    operation = get_operation_ast(document, operation_name)
    if operation is None or not variables:
        return []
    errors = []
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        kind = type_from_ast(schema, definition.type)
        if name not in variables or kind is None:
            continue
        for path, value in _floats_for_ints(variables[name], kind, name):  # type: ignore[arg-type]
            errors.append(
                GraphQLError(
                    f"Variable '${name}' got invalid value {value!r} at '{path}'; "
                    f"Int cannot represent a non-integer value: {value!r}",
                    definition,
                )
            )
    return errors


def _floats_for_ints(value: Any, kind: GraphQLInputType, path: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of each float in `value` where `kind` expects an Int."""
    kind = get_nullable_type(kind)  # type: ignore[assignment]
    if isinstance(kind, GraphQLList):
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            yield from _floats_for_ints(item, kind.of_type, f"{path}[{i}]")
    elif isinstance(kind, GraphQLInputObjectType) and isinstance(value, dict):
        for field_name, field in kind.fields.items():
            if field_name in value:
                yield from _floats_for_ints(value[field_name], field.type, f"{path}.{field_name}")
    elif kind is GraphQLInt and isinstance(value, float):
        yield path, value


def build_schema(production: bool = False) -> strawberry.Schema:
    """The schema with its abuse limits; `production` also turns introspection off."""
    # Factories, not instances: an extension holds its request's execution context, so
    # concurrent requests must never share one.
    extensions: list[Any] = [
        lambda: QueryDepthLimiter(max_depth=8),
        lambda: MaxAliasesLimiter(max_alias_count=15),
        lambda: MaxTokensLimiter(max_token_count=2000),
        lambda: MaskErrors(should_mask_error=_mask),
        StrictIntVariables,
    ]
    if production:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(scalar_map={Price: PRICE_SCALAR}),
    )


schema = build_schema()
