"""The ports the service runs over: the engine gateway here, the store in `store.port`.

Two gateways implement `EngineGateway`: `gateway.redis.RedisGateway` (the command and event
streams of the deployed system) and `gateway.inprocess.InProcessGateway` (the real matching
engine called in the API process, for tests and demos). One behaviour suite runs over both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from shared.commands import Command
from shared.config import Instrument
from shared.events import Event
from store.port import BookLevels

from .hub import Hub, Subscriber

# One instrument's events in ascending seq, as its engine published them together (the
# events of one command): a batch never ends inside a command, so after a whole batch a
# book is in a state that the store can also show.
EventBatch = Sequence[Event]
# Events a subscriber of the event feed may be behind before it is dropped (a client's
# feed; the API's own followers, the book replicas and the order router, ask for more).
EVENT_QUEUE = 1000


class Unavailable(Exception):
    """The engine or the store did not answer in time. A mutation may still be applied:
    retry places with the same client_order_id, or read the order back."""


class EngineTimeout(Unavailable):
    """The command was handed over but its answer did not come back in time."""


class EngineGateway(Protocol):
    def event_feed(
        self, maxsize: int | None = None
    ) -> AbstractAsyncContextManager[Subscriber[EventBatch]]:
        """Every instrument's events, live, batch by batch, from the moment the context is
        entered: every event that the subscriber is not given has a sequence number at
        most the position `published` reports from then on. So a subscriber that reads
        the store after a read barrier, and then takes batches, misses nothing (the
        snapshot-and-buffer technique). The events are read only while someone
        subscribes. `maxsize`: how many events (default EVENT_QUEUE) may wait before the
        subscriber is dropped; it gets what fitted, then `SlowConsumer`."""

    @property
    def books(self) -> Mapping[str, Hub[BookLevels]]:
        """Per symbol: the engine's periodic book."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, instrument: Instrument, command: Command) -> list[Event]:
        """Journal `command` for `instrument`'s engine and return its events (the first one
        answers it). Raises `Unavailable` when that cannot be known in time."""

    def backlog(self, instrument: Instrument) -> int:
        """Commands the instrument's engine has not answered yet (a recent count)."""

    async def published(self, instruments: tuple[Instrument, ...]) -> dict[int, int]:
        """Per instrument number: the sequence number of the newest published event (absent:
        none yet). A read that waits for the store to reach it sees every acknowledged
        write."""

    async def health(self) -> dict[str, bool]:
        """Whether each dependency is up, by name: the transport (`redis`), every engine
        (`engine:<symbol>`) and the archiver; one that cannot be known is left out."""
