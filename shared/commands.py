"""Commands: the only inputs of the engine, journaled on the command stream.

They carry prices in integer ticks (already validated by `shared.prices`), so the engine
core never parses or re-validates. `ts` is stamped by the API gateway when the request
arrives; the engine copies it into events instead of reading a clock, which keeps replay
deterministic. Structs are array-like to keep the encoding small and fast. The constants
are `Final`: the compiled core (`engine.book`) inlines them.
"""

from __future__ import annotations

from typing import Final

import msgspec

BUY: Final = 1
SELL: Final = -1

# Time in force. A market order is a Place with price 0: it walks the book and, like IOC,
# never rests.
GTC: Final = 0  # good till cancelled: the remainder rests
IOC: Final = 1  # immediate or cancel: trade what crosses now, cancel the rest
FOK: Final = 2  # fill or kill: trade the whole quantity now or nothing
MARKET: Final = 0  # the price of a market order


class Place(msgspec.Struct, tag="place", array_like=True, frozen=True, gc=False):
    side: int
    price: int
    quantity: int
    client_order_id: str | None = None
    request_id: str = ""
    ts: int = 0
    tif: int = GTC
    owner: str = ""  # the API key's name when AUTH_MODE=api_key; "" otherwise


class Modify(msgspec.Struct, tag="modify", array_like=True, frozen=True, gc=False):
    """Change price and/or total quantity; 0 leaves that one unchanged."""

    order_id: int
    price: int
    request_id: str = ""
    ts: int = 0
    quantity: int = 0
    owner: str = ""


class Cancel(msgspec.Struct, tag="cancel", array_like=True, frozen=True, gc=False):
    order_id: int
    request_id: str = ""
    ts: int = 0
    owner: str = ""


Command = Place | Modify | Cancel

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(Command)


def encode_command(command: Command) -> bytes:
    return _encoder.encode(command)


def decode_command(data: bytes) -> Command:
    return _decoder.decode(data)
