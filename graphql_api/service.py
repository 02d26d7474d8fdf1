"""The service layer: every use case of the API, over two ports (the engine gateway and the
store), for REST, GraphQL and the WebSockets alike.

Mutations become commands and are answered by the engine's first event. Reads come from
the store after a read barrier: the store must have archived everything the engine had
published when the read arrived, which gives read-your-writes from any API replica (a
mutation is acknowledged only after its events are published). No transport lives here:
the gateway hides whether the engine is behind Redis or in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog
from structlog.typing import FilteringBoundLogger

from shared.commands import Cancel, Command, Modify, Place
from shared.config import Instrument, Settings
from shared.events import (
    DUPLICATE_CLIENT_ORDER_ID,
    NO_LIQUIDITY,
    NOT_OWNER,
    ORDER_NOT_ALIVE,
    PRICE_OUT_OF_BAND,
    UNKNOWN_ORDER,
    Accepted,
    Event,
    Rejected,
    Trade,
)
from store.port import BookLevels, CandleRecord, OrderRecord, Store, TradeRecord

from .hub import Hub, SlowConsumer, Subscriber
from .live import LiveFeeds
from .metrics import ANSWERED_BY_KIND, MUTATIONS, ROUND_TRIP_BY_KIND
from .ports import EngineGateway, EngineTimeout, EventBatch, Unavailable
from .requests import (
    BookQuery,
    CancelOrder,
    CandleQuery,
    GetOrder,
    ListOrders,
    ListTrades,
    ModifyOrder,
    OrderTrades,
    PlaceOrder,
    Window,
)

T = TypeVar("T")
OWNER_LOOKUP_TIMEOUT_S = 1.0
# A candle subscription reads the store at most this often, only after trades of its
# instrument arrived on the trade feed, and at least every CANDLE_IDLE_S seconds anyway (a
# trade the feed did not carry, say while it was starting, still shows up).
CANDLE_POLL_S = 0.2
CANDLE_IDLE_S = 5.0
MAX_CANDLES_PER_POLL = 1000
STORE_CHECK_TIMEOUT_S = 1.0
REJECTION_MESSAGES = {
    NO_LIQUIDITY: "a market order needs resting orders on the other side",
    PRICE_OUT_OF_BAND: "the price, or a trade the order would make, is outside the price band",
}


class Rejection(Exception):
    """The engine refused the order for a business reason (e.g. `no_liquidity`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(REJECTION_MESSAGES.get(reason, reason))
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PlaceOutcome:
    order_id: int
    duplicate: bool  # the client_order_id was seen before: this is the original order


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    success: bool
    reason: str | None = None


CHANGED = ChangeOutcome(True)


class ExchangeService:
    def __init__(self, settings: Settings, gateway: EngineGateway, store: Store) -> None:
        self.settings = settings
        self.gateway = gateway
        self.store = store
        self.log: FilteringBoundLogger = structlog.get_logger(service="api")
        self.live = LiveFeeds(gateway, store, self.read_barrier)

    async def start(self) -> None:
        await self.store.open()
        await self.gateway.start()

    async def stop(self) -> None:
        await self.gateway.stop()
        await self.store.close()

    # -- mutations --------------------------------------------------------------------------

    async def place(self, request: PlaceOrder, owner: str = "") -> PlaceOutcome:
        self._check_backlog(request.instrument)
        command = Place(
            request.side,
            request.price,
            request.quantity,
            request.client_order_id,
            "",
            time.time_ns(),
            request.tif,
            owner,
        )
        first = (await self._submit(request.instrument, command, "place"))[0]
        if type(first) is Accepted:
            return PlaceOutcome(first.order_id, duplicate=False)
        assert isinstance(first, Rejected), first
        if first.reason == DUPLICATE_CLIENT_ORDER_ID:
            return PlaceOutcome(first.order_id, duplicate=True)
        raise Rejection(first.reason)

    async def modify(self, request: ModifyOrder, owner: str = "") -> ChangeOutcome:
        instrument = request.instrument
        if instrument is None:  # no instrument hands out such ids: no engine to ask
            return ChangeOutcome(False, UNKNOWN_ORDER)
        self._check_backlog(instrument)
        command = Modify(
            request.order_id, request.price, "", time.time_ns(), request.quantity, owner
        )
        events = await self._submit(instrument, command, "modify")
        return await self._change_outcome(events, request.order_id, instrument, owner)

    async def cancel(self, request: CancelOrder, owner: str = "") -> ChangeOutcome:
        """Cancels bypass the backlog check: shedding risk must stay possible under load."""
        instrument = request.instrument
        if instrument is None:
            return ChangeOutcome(False, UNKNOWN_ORDER)
        command = Cancel(request.order_id, "", time.time_ns(), owner)
        events = await self._submit(instrument, command, "cancel")
        return await self._change_outcome(events, request.order_id, instrument, owner)

    def _check_backlog(self, instrument: Instrument) -> None:
        behind = self.gateway.backlog(instrument)
        if behind > self.settings.max_backlog:
            raise Unavailable(
                f"the {instrument.symbol} engine is {behind}+ commands behind; retry shortly "
                "(cancels are still accepted)"
            )

    async def _submit(self, instrument: Instrument, command: Command, kind: str) -> list[Event]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            events = await self.gateway.submit(instrument, command)
        except EngineTimeout:
            MUTATIONS.labels(kind, "timeout").inc()
            raise
        except Unavailable:
            MUTATIONS.labels(kind, "unavailable").inc()
            raise
        ROUND_TRIP_BY_KIND[kind].observe(loop.time() - started)
        ANSWERED_BY_KIND[kind, type(events[0]) is Rejected].inc()
        return events

    async def _change_outcome(
        self, events: list[Event], oid: int, instrument: Instrument, owner: str
    ) -> ChangeOutcome:
        """A modify or cancel succeeded unless the engine's first event is a rejection.

        The engine forgets dead orders, so it answers `order_not_alive` whoever asks; with
        owners on, the store tells whose the order was, and another owner gets `not_owner`
        (as for a live order) instead of learning that it was filled or cancelled."""
        first = events[0]
        if type(first) is not Rejected:
            return CHANGED
        if first.reason == ORDER_NOT_ALIVE and owner:
            try:
                async with asyncio.timeout(OWNER_LOOKUP_TIMEOUT_S):
                    await self.read_barrier((instrument,))
                    record = await self.store.get_order(oid)
            except (TimeoutError, Unavailable) as exc:
                # The engine's answer is definite: keep it rather than turn it into a 503.
                self.log.warning("owner_lookup_failed", order_id=oid, error=repr(exc))
                return ChangeOutcome(False, first.reason)
            if record is not None and record.owner != owner:
                return ChangeOutcome(False, NOT_OWNER)
        return ChangeOutcome(False, first.reason)

    # -- feeds ------------------------------------------------------------------------------

    def book_feed(self, instrument: Instrument) -> Hub[BookLevels]:
        return self.gateway.books[instrument.symbol]

    # -- reads ------------------------------------------------------------------------------

    async def read_barrier(self, instruments: tuple[Instrument, ...] | None = None) -> None:
        """Wait until the store has archived every event published so far (for the given
        instruments, default all): a read after an acknowledged write sees it."""
        targets = await self.gateway.published(instruments or self.settings.instruments)
        deadline = time.monotonic() + self.settings.read_barrier_timeout_s
        for number, target in targets.items():
            delay = 0.001
            while await self.store.progress(number) < target:
                if time.monotonic() > deadline:
                    raise Unavailable("the store is behind the engine; retry shortly")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)

    async def order(self, request: GetOrder, owner: str | None = None) -> OrderRecord | None:
        """One order; with `owner` set, another owner's order is reported as not found."""
        if request.instrument is None:
            return None
        await self.read_barrier((request.instrument,))
        record = await self.store.get_order(request.order_id)
        if record is None or (owner is not None and record.owner != owner):
            return None
        return record

    async def orders(self, request: ListOrders, owner: str | None = None) -> list[OrderRecord]:
        scope = (request.instrument,) if request.instrument else None
        await self.read_barrier(scope)
        window = request.window or Window(request.limit, request.after)
        records = await self.store.list_orders(
            alive=request.alive,
            side=request.side,
            limit=window.limit,
            after=window.after,
            owner=owner,
            instrument=request.instrument.number if request.instrument else None,
            before=window.before,
            since=window.since,
            until=window.until,
            descending=window.from_end,
        )
        return _shown(records, window)

    async def trades(self, request: ListTrades) -> list[TradeRecord]:
        scope = (request.instrument,) if request.instrument else None
        if request.order_id is not None:
            instrument = self.settings.instrument_of(request.order_id)
            scope = (instrument,) if instrument else None
        await self.read_barrier(scope)
        window = request.window or Window(request.limit, request.after)
        records = await self.store.list_trades(
            limit=window.limit,
            after=window.after,
            order_id=request.order_id,
            instrument=request.instrument.number if request.instrument else None,
            before=window.before,
            since=window.since,
            until=window.until,
            descending=window.from_end,
        )
        return _shown(records, window)

    async def order_trades(
        self, request: OrderTrades, owner: str | None = None
    ) -> list[TradeRecord] | None:
        """One order's fills; None when the order is not found (or, with `owner`, is
        someone else's), as for the order itself."""
        if await self.order(request.order, owner) is None:
            return None
        return await self.trades(request.trades)

    async def candles(self, request: CandleQuery) -> list[CandleRecord]:
        await self.read_barrier((request.instrument,))
        return await self.store.candles(
            instrument=request.instrument.number,
            interval=request.interval,
            limit=request.limit,
            since=request.since,
            until=request.until,
            newest=request.newest,
        )

    async def candle_updates(
        self, instrument: Instrument, interval: int
    ) -> AsyncIterator[CandleRecord]:
        """The current candle, then each candle again whenever it changes: read from the
        store after the read barrier, so a subscriber sees exactly what `candles` returns,
        never a candle folded on the side. The trade feed only says when to look."""
        sent: dict[int, int] = {}  # bucket start -> the last_seq sent for it
        loop = asyncio.get_running_loop()
        while True:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    sub = await stack.enter_async_context(self.gateway.event_feed())
                except Unavailable as exc:  # no live events yet: look again shortly
                    self.log.warning("candle_feed_unavailable", error=str(exc))
                    await asyncio.sleep(CANDLE_POLL_S)
                    continue
                while not sub.dropped:  # a subscriber the feed dropped subscribes again
                    polled = loop.time()
                    try:
                        for candle in await self._changed_candles(instrument, interval, sent):
                            yield candle
                    except Unavailable as exc:
                        self.log.warning("candle_poll_unavailable", error=str(exc))
                    await _next_trade(sub, instrument)
                    await asyncio.sleep(max(0.0, polled + CANDLE_POLL_S - loop.time()))
                    sub.clear()  # the store read that follows covers what was queued

    async def _changed_candles(
        self, instrument: Instrument, interval: int, sent: dict[int, int]
    ) -> list[CandleRecord]:
        """The candles to send: first the newest; later each candle from the bucket before
        the newest sent onwards (a trade stamped late lands there) that is new or changed."""
        await self.read_barrier((instrument,))
        newest = max(sent, default=None)
        fresh = await self.store.candles(
            instrument=instrument.number,
            interval=interval,
            limit=2 if newest is None else MAX_CANDLES_PER_POLL,
            since=None if newest is None else newest - interval,
            newest=newest is None,
        )
        changed = [c for c in fresh if sent.get(c.start) != c.last_seq]
        for c in fresh:
            sent[c.start] = c.last_seq
        if newest is None:  # on subscribing: the current candle only, the one before known
            changed = changed[-1:]
        oldest_kept = max(sent, default=0) - interval
        for start in [s for s in sent if s < oldest_kept]:
            del sent[start]
        return changed

    async def book(self, request: BookQuery) -> BookLevels:
        await self.read_barrier((request.instrument,))
        stored = await self.store.book(request.depth, request.instrument.number)
        return stored._replace(ts=time.time_ns())

    async def ready(self) -> dict[str, object]:
        """Readiness: every dependency the gateway reports, and the store, are up. `down`
        names those that are not (`redis`, `engine:<symbol>`, `archiver`, `store`)."""
        health = await self.gateway.health()
        engines = {name[7:]: up for name, up in health.items() if name.startswith("engine:")}
        checks: dict[str, object] = {
            name: up for name, up in health.items() if not name.startswith("engine:")
        }
        checks["engine"] = bool(engines) and all(engines.values())
        checks["engines"] = engines
        down = [name for name, up in health.items() if not up]
        try:
            async with asyncio.timeout(STORE_CHECK_TIMEOUT_S):  # a hung store is not ready
                checks["store_progress"] = await self.store.progress()
            checks["store"] = True
        except Exception as exc:  # report, don't raise: this is a health endpoint
            checks["store"] = False
            checks["store_error"] = str(exc) or type(exc).__name__
            down.append("store")
        checks["ready"] = not down
        checks["down"] = down
        return checks


def _shown(records: Sequence[T], window: Window) -> list[T]:
    """The store returns a page in the order it read it (newest first from the newest end);
    the client asked for it oldest or newest first."""
    return list(records if window.from_end == window.newest_first else records[::-1])


async def _next_trade(sub: Subscriber[EventBatch], instrument: Instrument) -> None:
    """Wait until a trade of `instrument` is published, or CANDLE_IDLE_S seconds."""
    try:
        async with asyncio.timeout(CANDLE_IDLE_S):
            while True:
                batch = await sub.get()
                if instrument.owns(batch[0].seq) and any(type(e) is Trade for e in batch):
                    return
    except (TimeoutError, SlowConsumer):
        pass
