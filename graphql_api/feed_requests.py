"""Typed requests for the resumable feeds (`/ws/trades`, `/ws/orders`, their GraphQL
subscriptions): which instruments, and where to resume each.

A resume cursor is per instrument, because each instrument has its own sequence numbers
(and trade ids, which are sequence numbers). `after` is the last trade id (trade feed) or
sequence number (order feed) the client has, or several of them comma-separated, one per
instrument; each names its instrument by its value. Given `after`, every instrument of
the feed is resumed: after its cursor, or from its first event when `after` names none
of its ids (the client has nothing of it). `0` alone: from the start of every one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import Instrument
from shared.prices import InputError

from .requests import InvalidInput, Requests, parse_cursor

MAX_CURSORS = 64


@dataclass(frozen=True, slots=True)
class FeedRequest:
    instruments: tuple[Instrument, ...]
    # Per instrument number: resume strictly after this id; None: live only.
    after: Mapping[int, int] | None = None

    def covers(self, identifier: int) -> bool:
        """Whether an id or sequence number belongs to one of the feed's instruments."""
        return any(i.owns(identifier) for i in self.instruments)


def feed_request(requests: Requests, symbol: object = None, after: object = None) -> FeedRequest:
    """Every instrument, or `symbol`'s; resumed after `after` (see the module docstring)."""
    errors: list[InputError] = []
    instruments = requests.settings.instruments
    if symbol is not None:
        try:
            instruments = (requests.instrument(symbol),)
        except InvalidInput as exc:
            errors.extend(exc.errors)
    cursors: dict[int, int] | None = None
    if after is not None:
        try:
            cursors = _cursors(requests, after, instruments)
        except InputError as exc:
            errors.append(exc)
    if errors:
        raise InvalidInput(errors)
    if cursors is None:
        return FeedRequest(instruments)
    return FeedRequest(instruments, {i.number: cursors.get(i.number, i.base) for i in instruments})


def _cursors(
    requests: Requests, after: object, instruments: tuple[Instrument, ...]
) -> dict[int, int]:
    if not isinstance(after, str | int) or isinstance(after, bool):
        raise InputError("after", "must be an id such as '42', or ids separated by commas")
    parts = str(after).split(",")
    if len(parts) > MAX_CURSORS:
        raise InputError("after", f"at most {MAX_CURSORS} ids")
    cursors: dict[int, int] = {}
    for part in parts:
        value = parse_cursor(part.strip(), "after")
        if value == 0:
            if len(parts) > 1:
                raise InputError("after", "0 (from the start) stands alone")
            continue
        instrument = requests.settings.instrument_of(value)
        if instrument is None or instrument not in instruments:
            raise InputError("after", f"{value} is no id of this feed's instruments")
        if instrument.number in cursors:
            raise InputError("after", f"two ids of {instrument.symbol}: give one per instrument")
        cursors[instrument.number] = value
    return cursors
