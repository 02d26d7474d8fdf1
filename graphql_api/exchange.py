"""The application layer: every REST route and GraphQL resolver goes through `Exchange`.

Mutations are validated here with the `shared` parsers, journaled on the command stream,
and answered when the engine's events for that request id come back on this replica's own
reply stream (the engine appends each command's events to the instrument's event stream and
to the asking replica's reply stream).
Reads come from the store after a read barrier: the store must have archived everything
the engine had published when the read arrived, which gives read-your-writes from any API
replica (a mutation is acknowledged only after its events are on the stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import redis.asyncio as aioredis
import structlog

from archiver.store import OrderRecord, Store, TradeRecord
from shared.commands import FOK, GTC, IOC, MARKET, Cancel, Command, Modify, Place, encode_command
from shared.config import Instrument, Settings
from shared.events import (
    DUPLICATE_CLIENT_ORDER_ID,
    NO_LIQUIDITY,
    NOT_OWNER,
    ORDER_NOT_ALIVE,
    UNKNOWN_ORDER,
    Accepted,
    Event,
    Rejected,
    Trade,
    decode_events,
)
from shared.prices import InputError, parse_price, parse_quantity, parse_side, ticks_to_decimal

from .hub import Hub
from .metrics import ANSWERED_BY_KIND, BACKLOG, MUTATIONS, ROUND_TRIP_BY_KIND

T = TypeVar("T")

MAX_PAGE = 1000
MAX_DEPTH = 50
MAX_CLIENT_ORDER_ID = 64
EXPIRY_TICK_S = 0.05
OWNER_LOOKUP_TIMEOUT_S = 1.0
# Commands (stream KEYS[1]) after the last one the engine answered (the `c` field of the
# newest entry of its event stream KEYS[2]), counted up to ARGV[1].
COUNT_UNANSWERED = """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local start = '-'
if #last > 0 then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'c' then start = '(' .. fields[i + 1] end
  end
end
return #redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[1])
"""
REPLY_STREAM_TTL_S = 60


class InvalidInput(Exception):
    def __init__(self, errors: list[InputError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class Rejection(Exception):
    """The engine refused the order for a business reason (e.g. `no_liquidity`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(REJECTION_MESSAGES.get(reason, reason))
        self.reason = reason


REJECTION_MESSAGES = {
    NO_LIQUIDITY: "a market order needs resting orders on the other side",
}
TIME_IN_FORCE = {"GTC": GTC, "IOC": IOC, "FOK": FOK}
TIME_IN_FORCE_NAMES = {v: k for k, v in TIME_IN_FORCE.items()}


def parse_order_type(value: Any, field: str = "type") -> str:
    if value is None:
        return "limit"
    if value not in ("limit", "market"):
        raise InputError(field, "must be 'limit' or 'market'")
    return str(value)


def parse_time_in_force(value: Any, market: bool, field: str = "time_in_force") -> int:
    if value is None:
        return IOC if market else GTC
    if not isinstance(value, str) or value not in TIME_IN_FORCE:
        raise InputError(field, "must be 'GTC', 'IOC' or 'FOK'")
    if market and value == "GTC":
        raise InputError(field, "a market order cannot rest: use 'IOC' or 'FOK'")
    return TIME_IN_FORCE[value]


class Unavailable(Exception):
    """The engine or the store did not answer in time. A mutation may still be applied:
    retry places with the same client_order_id, or read the order back."""


@dataclass(frozen=True)
class PlaceResult:
    order_id: int
    duplicate: bool  # the client_order_id was seen before: this is the original order


@dataclass(frozen=True)
class ChangeResult:
    success: bool
    reason: str | None = None


@dataclass(frozen=True)
class BookView:
    symbol: str
    seq: int
    ts: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


def parse_cursor(value: Any, field: str = "after") -> int:
    """A page cursor: the last id seen, or 0 for the start."""
    if value in (0, "0"):
        return 0
    return parse_order_id(value, field)


def parse_order_id(value: Any, field: str = "order_id") -> int:
    """Order ids are positive integers, sent as strings (or ints)."""
    if isinstance(value, bool):
        raise InputError(field, "must be an order id such as '42'")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        number = int(value)
    else:
        raise InputError(field, "must be an order id such as '42'")
    if number < 1:
        raise InputError(field, "must be an order id such as '42'")
    return number


def _stream_seq(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


class Exchange:
    def __init__(self, settings: Settings, client: aioredis.Redis, store: Store) -> None:
        self.settings = settings
        self.redis = client
        self.store = store
        self.log: Any = structlog.get_logger(service="api")
        self.pending: dict[str, asyncio.Future[list[Event]]] = {}
        self.trades: Hub[Trade] = Hub()
        self.books: dict[str, Hub[BookView]] = {
            i.symbol: Hub(maxsize=16) for i in settings.instruments
        }
        self._tasks: list[asyncio.Task[None]] = []
        # Per instrument: how many commands its engine has not answered yet (counted up to
        # MAX_BACKLOG + 1).
        self.backlog: dict[str, int] = dict.fromkeys(self.books, 0)
        self._outbox: asyncio.Queue[tuple[str, bytes, asyncio.Future[list[Event]]]] = (
            asyncio.Queue()
        )
        self._deadlines: deque[tuple[float, asyncio.Future[list[Event]]]] = deque()
        # Request ids: unique per process start (the replica id) and per request (the
        # count). The engine answers each on the stream named after the replica id.
        self.replica = uuid.uuid4().hex[:12]
        self._request_prefix = self.replica + "-"
        self._request_count = 0
        self._event_streams = {
            settings.event_stream_of(i.symbol): i.symbol for i in settings.instruments
        }
        self._reply_streams = [
            settings.reply_stream_of(i.symbol, self.replica) for i in settings.instruments
        ]
        self._reply_positions: dict[Any, Any] = {}
        self._recheck_replies = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._reply_positions = {
            stream: await self._open_reply_stream(stream) for stream in self._reply_streams
        }
        self._tasks = [
            asyncio.create_task(self._read_replies()),
            asyncio.create_task(self._keep_reply_streams()),
            asyncio.create_task(self._read_trades()),
            asyncio.create_task(self._read_books()),
            asyncio.create_task(self._watch_backlog()),
            asyncio.create_task(self._journal()),
            asyncio.create_task(self._expire()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _open_reply_stream(self, stream: str) -> bytes:
        """Create this replica's reply stream (the engine never does) with a lifetime that
        `_keep_reply_streams` extends: a replica that dies leaves nothing behind for long.
        Returns the id to read after."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, {"open": self.replica})
            pipe.expire(stream, REPLY_STREAM_TTL_S)
            opened, _ = await pipe.execute()
        return opened  # type: ignore[no-any-return]

    async def _keep_reply_streams(self) -> None:
        """Extend the reply streams' lifetime; re-create one that is gone (Redis came back
        without it, or it expired while Redis was away), and then read it from the start:
        a Redis restarted on a host whose clock is behind hands out lower ids. Checked at
        once after any Redis error, as the engine cannot answer into a missing stream."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPLY_STREAM_TTL_S / 4):
                    await self._recheck_replies.wait()
            self._recheck_replies.clear()
            try:
                for stream in self._reply_streams:
                    if not await self.redis.expire(stream, REPLY_STREAM_TTL_S):
                        await self._open_reply_stream(stream)
                        self._reply_positions[stream] = b"0-0"  # duplicates are harmless
                        self.log.warning("reply_stream_recreated", stream=stream)
            except Exception as exc:  # logged; without this task every request would time out
                self.log.warning("reply_stream_keeper_error", error=repr(exc))
                await asyncio.sleep(0.5)
                self._recheck_replies.set()

    async def _read_replies(self) -> None:
        """Answer waiting requests from this replica's reply streams."""
        positions = self._reply_positions
        while True:
            response: Any = await self._guarded(
                "reply_reader", self.redis.xread(positions, count=1000, block=1000)
            )
            for raw_stream, entries in response or ():
                for _, fields in entries:
                    request_id = fields.get(b"r")
                    future = self.pending.pop(request_id.decode(), None) if request_id else None
                    if future is not None and not future.done():
                        future.set_result(decode_events(fields[b"e"]))
                positions[raw_stream.decode()] = entries[-1][0]

    async def _guarded(self, reader: str, call: Awaitable[T]) -> T | None:
        """`call`'s result; None after logging a failure and pausing, so that a reader
        outlives any Redis error. An error may mean the reply streams were lost too."""
        try:
            return await call
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            self.log.warning(f"{reader}_redis_error", error=str(exc))
        except Exception:  # logged with its traceback
            self.log.exception(f"{reader}_error")
        self._recheck_replies.set()
        await asyncio.sleep(0.2)
        return None

    async def _newest_ids(self, streams: Iterable[str]) -> dict[str, bytes | None]:
        """Each stream's newest entry id (None: empty)."""
        newest: dict[str, bytes | None] = {}
        for stream in streams:
            last: Any = await self.redis.xrevrange(stream, "+", "-", count=1)
            newest[stream] = last[0][0] if last else None
        return newest

    async def _read_trades(self) -> None:
        """Feed trade subscribers from every event stream, only while there are any. When
        the first one arrives, reading starts at each stream's newest entry, by id (never
        "$", which would drop what arrives between two reads)."""
        positions: dict[Any, Any] = {}
        while True:
            if not self.trades.subscribers:
                positions = {}
                await asyncio.sleep(0.02)
                continue
            if not positions:
                newest = await self._guarded("event_reader", self._newest_ids(self._event_streams))
                if newest is None:
                    continue
                positions = {stream: entry_id or b"0-0" for stream, entry_id in newest.items()}
            response: Any = await self._guarded(
                "event_reader", self.redis.xread(positions, count=1000, block=200)
            )
            for raw_stream, entries in response or ():
                for _, fields in entries:
                    for event in decode_events(fields[b"e"]):
                        if type(event) is Trade:
                            self.trades.publish(event)
                positions[raw_stream.decode()] = entries[-1][0]

    async def _watch_backlog(self) -> None:
        """Count (up to the threshold) the commands each engine has not answered yet.

        Counted inside Redis by a script: only the number crosses the network, not the up
        to MAX_BACKLOG + 1 entries, which would cost the most exactly when the engine is
        behind and the machine is busiest."""
        cap = self.settings.max_backlog + 1
        count = self.redis.register_script(COUNT_UNANSWERED)
        while True:
            for symbol in self.backlog:
                try:
                    waiting = int(
                        await count(
                            keys=[
                                self.settings.command_stream_of(symbol),
                                self.settings.event_stream_of(symbol),
                            ],
                            args=[cap],
                        )
                    )
                    self.backlog[symbol] = waiting
                    BACKLOG.labels(symbol).set(waiting)
                except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                    self.log.warning("backlog_watch_redis_error", error=str(exc))
                except Exception:  # logged; a frozen backlog figure would shed load forever
                    self.log.exception("backlog_watch_error")
            await asyncio.sleep(0.1)

    def _check_backlog(self, instrument: Instrument) -> None:
        behind = self.backlog[instrument.symbol]
        if behind > self.settings.max_backlog:
            raise Unavailable(
                f"the {instrument.symbol} engine is {behind}+ commands behind; retry shortly "
                "(cancels are still accepted)"
            )

    async def _read_books(self) -> None:
        channels = [self.settings.book_channel_of(symbol) for symbol in self.books]
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(*channels)
                    async for message in pubsub.listen():
                        if message["type"] != "message":
                            continue
                        data = json.loads(message["data"])
                        book = BookView(
                            data["symbol"],
                            data["seq"],
                            data["ts"],
                            [(p, q) for p, q in data["bids"]],
                            [(p, q) for p, q in data["asks"]],
                        )
                        self.books[book.symbol].publish(book)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                self.log.warning("book_reader_redis_error", error=str(exc))
                await asyncio.sleep(0.2)
            except Exception:  # logged; subscribers must keep getting books
                self.log.exception("book_reader_error")
                await asyncio.sleep(0.2)

    # -- instruments and conversions --------------------------------------------------------

    def instrument(self, symbol: Any) -> Instrument:
        """The instrument a client named (None: the default), or InvalidInput."""
        if symbol is not None and not isinstance(symbol, str):
            raise InvalidInput([InputError("symbol", "must be a string")])
        try:
            return self.settings.instrument(symbol)
        except KeyError:
            known = ", ".join(i.symbol for i in self.settings.instruments)
            raise InvalidInput([InputError("symbol", f"unknown symbol; known: {known}")]) from None

    def instrument_of(self, identifier: int) -> Instrument:
        """The instrument of a stored order id or trade id."""
        return self.settings.instrument_of(identifier) or self.settings.default_instrument

    def price(self, ticks: int, instrument: Instrument) -> Decimal:
        return ticks_to_decimal(ticks, instrument.tick_size)

    @staticmethod
    def _parse_price(value: Any, instrument: Instrument) -> int:
        return parse_price(value, instrument.tick_size, instrument.max_price)

    # -- mutations --------------------------------------------------------------------------

    async def _journal(self) -> None:
        """Append queued commands to their command streams, many per round trip.

        One writer task and one pipeline per batch, instead of a connection per request:
        under load this is what keeps the API's Redis cost per mutation small.
        """
        queue = self._outbox
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < 512:
                batch.append(queue.get_nowait())
            # A request that already failed (timed out) must not become an order later.
            batch = [item for item in batch if not item[2].done()]
            if not batch:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream, body, _ in batch:
                        pipe.xadd(stream, {"c": body})
                    results = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # handed to every waiting request, which reports it
                results = [exc] * len(batch)
            for (_, _, answer), result in zip(batch, results, strict=True):
                if isinstance(result, Exception) and not answer.done():
                    answer.set_exception(result)

    async def _expire(self) -> None:
        """Fail requests whose engine answer is overdue, every `EXPIRY_TICK_S`.

        One sweeper instead of a timer per request: all requests share one timeout, so
        their deadlines are in arrival order and the sweep stops at the first one not due.
        A request may wait up to one tick longer than `request_timeout_s`."""
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        while True:
            await asyncio.sleep(EXPIRY_TICK_S)
            now = loop.time()
            while deadlines and deadlines[0][0] <= now:
                _, future = deadlines.popleft()
                if not future.done():
                    future.set_exception(TimeoutError())
                    self._recheck_replies.set()  # was the reply stream lost?

    async def _submit(self, instrument: Instrument, command_for: Any) -> list[Event]:
        self._request_count += 1
        request_id = f"{self._request_prefix}{self._request_count:x}"
        command: Command = command_for(request_id, time.time_ns())
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Event]] = loop.create_future()
        self.pending[request_id] = future
        self._deadlines.append((loop.time() + self.settings.request_timeout_s, future))
        stream = self.settings.command_stream_of(instrument.symbol)
        kind = type(command).__name__.lower()
        started = loop.time()
        try:
            # The journal writer fails `future` if the append fails; the engine's answer
            # resolves it; the sweeper fails it when overdue.
            self._outbox.put_nowait((stream, encode_command(command), future))
            events = await future
            ROUND_TRIP_BY_KIND[kind].observe(loop.time() - started)
            ANSWERED_BY_KIND[kind, type(events[0]) is Rejected].inc()
            return events
        except TimeoutError:
            MUTATIONS.labels(kind, "timeout").inc()
            raise Unavailable(
                "the engine did not answer in time; the command may still be applied: "
                "retry with the same client_order_id, or read the order back"
            ) from None
        except (aioredis.ConnectionError, aioredis.TimeoutError, aioredis.ResponseError) as exc:
            MUTATIONS.labels(kind, "unavailable").inc()
            raise Unavailable(
                f"the command stream is unavailable ({exc}); the command may still be applied: "
                "retry with the same client_order_id, or read the order back"
            ) from None
        finally:
            self.pending.pop(request_id, None)

    async def place(
        self,
        *,
        side: Any,
        price: Any,
        quantity: Any,
        client_order_id: Any = None,
        time_in_force: Any = None,
        order_type: Any = None,
        owner: str = "",
        symbol: Any = None,
    ) -> PlaceResult:
        """Place an order. `order_type` is "limit" (default) or "market" (no price);
        `time_in_force` is "GTC" (default for limit), "IOC" (default for market) or "FOK";
        `symbol` defaults to the first configured instrument."""
        errors: list[InputError] = []
        parsed: dict[str, Any] = {}

        def attempt(name: str, parse: Any, value: Any) -> None:
            try:
                parsed[name] = parse(value)
            except InputError as exc:
                errors.append(exc)

        try:
            instrument = self.instrument(symbol)
        except InvalidInput as exc:
            errors.extend(exc.errors)
            instrument = self.settings.default_instrument
        attempt("type", parse_order_type, order_type)
        market = parsed.get("type") == "market"
        attempt("time_in_force", lambda v: parse_time_in_force(v, market), time_in_force)
        attempt("side", parse_side, side)
        if market:
            if price is not None:
                errors.append(InputError("price", "must be omitted for a market order"))
            parsed["price"] = MARKET
        elif price is None:
            errors.append(InputError("price", "is required for a limit order"))
        else:
            attempt("price", lambda v: self._parse_price(v, instrument), price)
        attempt("quantity", lambda v: parse_quantity(v, self.settings.max_quantity), quantity)
        if client_order_id is not None and (
            not isinstance(client_order_id, str)
            or not 1 <= len(client_order_id) <= MAX_CLIENT_ORDER_ID
            or not client_order_id.isprintable()
        ):
            errors.append(
                InputError(
                    "client_order_id", f"must be a string of 1..{MAX_CLIENT_ORDER_ID} characters"
                )
            )
        if errors:
            raise InvalidInput(errors)
        self._check_backlog(instrument)
        events = await self._submit(
            instrument,
            lambda rid, ts: Place(
                parsed["side"],
                parsed["price"],
                parsed["quantity"],
                client_order_id,
                rid,
                ts,
                parsed["time_in_force"],
                owner,
            ),
        )
        first = events[0]
        if isinstance(first, Accepted):
            return PlaceResult(first.order_id, duplicate=False)
        assert isinstance(first, Rejected), first
        if first.reason == DUPLICATE_CLIENT_ORDER_ID:
            return PlaceResult(first.order_id, duplicate=True)
        raise Rejection(first.reason)

    async def modify(
        self, *, order_id: Any, price: Any = None, quantity: Any = None, owner: str = ""
    ) -> ChangeResult:
        """Change the price and/or the total quantity (at least one)."""
        errors: list[InputError] = []
        oid = ticks = new_quantity = 0
        try:
            oid = parse_order_id(order_id)
        except InputError as exc:
            errors.append(exc)
        instrument = self.settings.instrument_of(oid)
        if price is None and quantity is None:
            errors.append(InputError("price", "price or quantity is required"))
        if price is not None:
            try:
                ticks = self._parse_price(price, instrument or self.settings.default_instrument)
            except InputError as exc:
                errors.append(exc)
        if quantity is not None:
            try:
                new_quantity = parse_quantity(quantity, self.settings.max_quantity)
            except InputError as exc:
                errors.append(exc)
        if errors:
            raise InvalidInput(errors)
        if instrument is None:  # no instrument hands out such ids: no engine to ask
            return ChangeResult(False, UNKNOWN_ORDER)
        self._check_backlog(instrument)
        events = await self._submit(
            instrument, lambda rid, ts: Modify(oid, ticks, rid, ts, new_quantity, owner)
        )
        return await self._change_outcome(events, oid, instrument, owner)

    async def cancel(self, *, order_id: Any, owner: str = "") -> ChangeResult:
        """Cancels bypass the backlog check: shedding risk must stay possible under load."""
        try:
            oid = parse_order_id(order_id)
        except InputError as exc:
            raise InvalidInput([exc]) from None
        instrument = self.settings.instrument_of(oid)
        if instrument is None:
            return ChangeResult(False, UNKNOWN_ORDER)
        events = await self._submit(instrument, lambda rid, ts: Cancel(oid, rid, ts, owner))
        return await self._change_outcome(events, oid, instrument, owner)

    async def _change_outcome(
        self, events: list[Event], oid: int, instrument: Instrument, owner: str
    ) -> ChangeResult:
        """A modify or cancel succeeded unless the engine's first event is a rejection.

        The engine forgets dead orders, so it answers `order_not_alive` whoever asks; with
        owners on, the store tells whose the order was, and another owner gets `not_owner`
        (as for a live order) instead of learning that it was filled or cancelled."""
        first = events[0]
        if not isinstance(first, Rejected):
            return ChangeResult(True)
        if first.reason == ORDER_NOT_ALIVE and owner:
            try:
                async with asyncio.timeout(OWNER_LOOKUP_TIMEOUT_S):
                    await self.read_barrier((instrument,))
                    record = await self.store.get_order(oid)
            except (TimeoutError, Unavailable) as exc:
                # The engine's answer is definite: keep it rather than turn it into a 503.
                self.log.warning("owner_lookup_failed", order_id=oid, error=repr(exc))
                return ChangeResult(False, first.reason)
            if record is not None and record.owner != owner:
                return ChangeResult(False, NOT_OWNER)
        return ChangeResult(False, first.reason)

    # -- reads ------------------------------------------------------------------------------

    async def read_barrier(self, instruments: tuple[Instrument, ...] | None = None) -> None:
        """Wait until the store has archived every event published so far (for the given
        instruments, default all): a read after an acknowledged write sees it."""
        streams = {
            self.settings.event_stream_of(i.symbol): i.number
            for i in instruments or self.settings.instruments
        }
        targets = [
            (streams[stream], _stream_seq(entry_id))
            for stream, entry_id in (await self._newest_ids(streams)).items()
            if entry_id is not None
        ]
        deadline = time.monotonic() + self.settings.read_barrier_timeout_s
        for number, target in targets:
            delay = 0.001
            while await self.store.progress(number) < target:
                if time.monotonic() > deadline:
                    raise Unavailable("the store is behind the engine; retry shortly")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)

    async def order(self, order_id: Any, owner: str | None = None) -> OrderRecord | None:
        """One order; with `owner` set, another owner's order is reported as not found."""
        try:
            oid = parse_order_id(order_id)
        except InputError as exc:
            raise InvalidInput([exc]) from None
        instrument = self.settings.instrument_of(oid)
        if instrument is None:
            return None
        await self.read_barrier((instrument,))
        record = await self.store.get_order(oid)
        if record is None or (owner is not None and record.owner != owner):
            return None
        return record

    async def orders(
        self,
        *,
        alive: bool | None,
        side: Any,
        limit: int,
        after: Any,
        owner: str | None = None,
        symbol: Any = None,
    ) -> list[OrderRecord]:
        """Orders of every instrument, or of `symbol`'s."""
        errors: list[InputError] = []
        side_value = cursor = None
        if side is not None:
            try:
                side_value = parse_side(side)
            except InputError as exc:
                errors.append(exc)
        if after is not None:
            try:
                cursor = parse_cursor(after)
            except InputError as exc:
                errors.append(exc)
        errors.extend(_limit_error(limit))
        scope = self._scope(symbol, errors)
        if errors:
            raise InvalidInput(errors)
        await self.read_barrier(scope)
        return await self.store.list_orders(
            alive=alive,
            side=side_value,
            limit=limit,
            after=cursor,
            owner=owner,
            instrument=scope[0].number if scope else None,
        )

    async def trade_list(self, *, limit: int, after: Any, symbol: Any = None) -> list[TradeRecord]:
        """Trades of every instrument, or of `symbol`'s."""
        errors = _limit_error(limit)
        cursor = None
        if after is not None:
            try:
                cursor = parse_cursor(after)
            except InputError as exc:
                errors.append(exc)
        scope = self._scope(symbol, errors)
        if errors:
            raise InvalidInput(errors)
        await self.read_barrier(scope)
        return await self.store.list_trades(
            limit=limit, after=cursor, instrument=scope[0].number if scope else None
        )

    def _scope(self, symbol: Any, errors: list[InputError]) -> tuple[Instrument, ...] | None:
        """The instrument a list is limited to (None: all), collecting a bad symbol."""
        if symbol is None:
            return None
        try:
            return (self.instrument(symbol),)
        except InvalidInput as exc:
            errors.extend(exc.errors)
            return None

    async def book(self, depth: int, symbol: Any = None) -> BookView:
        instrument = self.instrument(symbol)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
            raise InvalidInput([InputError("depth", f"must be an integer in 1..{MAX_DEPTH}")])
        await self.read_barrier((instrument,))
        stored = await self.store.book(depth, instrument.number)
        return BookView(instrument.symbol, stored.seq, time.time_ns(), stored.bids, stored.asks)

    async def ready(self) -> dict[str, Any]:
        """Readiness: Redis and the store answer; every instrument's engine heartbeat and
        the archiver's are fresh."""
        checks: dict[str, Any] = {}
        try:
            checks["redis"] = bool(await self.redis.ping())
            engines = [
                bool(await self.redis.exists(self.settings.key(symbol, "engine:book")))
                for symbol in self.books
            ]
            checks["engine"] = all(engines)
            checks["archiver"] = bool(await self.redis.exists(self.settings.archiver_heartbeat))
        except (aioredis.ConnectionError, aioredis.TimeoutError):
            checks["redis"] = checks["engine"] = checks["archiver"] = False
        try:
            checks["store_progress"] = await self.store.progress()
            checks["store"] = True
        except Exception as exc:  # report, don't raise: this is a health endpoint
            checks["store"] = False
            checks["store_error"] = str(exc)
        checks["ready"] = all(checks[k] for k in ("redis", "engine", "archiver", "store"))
        return checks


def _limit_error(limit: Any) -> list[InputError]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        return [InputError("limit", f"must be an integer in 1..{MAX_PAGE}")]
    return []
