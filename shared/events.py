"""Events: the only outputs of the engine, each with a gap-free sequence number.

A trade's `seq` doubles as its trade id. Trades carry the remaining quantity of both
orders after the fill, so a consumer (the archiver) can set an order's state from one
event without reading anything first, and re-applying an event changes nothing.
"""

from __future__ import annotations

import msgspec


class Accepted(msgspec.Struct, tag="accepted", array_like=True, frozen=True, gc=False):
    seq: int
    order_id: int
    side: int
    price: int
    quantity: int
    ts: int
    client_order_id: str | None = None
    tif: int = 0  # shared.commands.GTC/IOC/FOK; price 0 is a market order
    owner: str = ""


class Rejected(msgspec.Struct, tag="rejected", array_like=True, frozen=True, gc=False):
    """`owner`: who sent the refused command (not always the order's owner: `not_owner`
    goes to the one who tried), so that the private order feed can tell them."""

    seq: int
    reason: str
    order_id: int
    ts: int
    owner: str = ""


class Trade(msgspec.Struct, tag="trade", array_like=True, frozen=True, gc=False):
    seq: int
    price: int
    quantity: int
    bid_order_id: int
    ask_order_id: int
    taker_side: int
    bid_remaining: int
    ask_remaining: int
    ts: int


class Modified(msgspec.Struct, tag="modified", array_like=True, frozen=True, gc=False):
    seq: int
    order_id: int
    price: int
    ts: int


class QuantityChanged(
    msgspec.Struct, tag="quantity_changed", array_like=True, frozen=True, gc=False
):
    """The order's total quantity is now `quantity`, of which `remaining` is still open."""

    seq: int
    order_id: int
    quantity: int
    remaining: int
    ts: int


class Cancelled(msgspec.Struct, tag="cancelled", array_like=True, frozen=True, gc=False):
    seq: int
    order_id: int
    quantity: int
    ts: int


Event = Accepted | Rejected | Trade | Modified | QuantityChanged | Cancelled

# Rejection reasons. Stable strings: clients switch on them.
UNKNOWN_ORDER = "unknown_order"
ORDER_NOT_ALIVE = "order_not_alive"
DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
INVALID_QUANTITY = "quantity_not_above_traded"
NO_LIQUIDITY = "no_liquidity"
NOT_OWNER = "not_owner"
PRICE_OUT_OF_BAND = "price_out_of_band"

_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[Event])


def encode_events(events: list[Event]) -> bytes:
    return _encoder.encode(events)


def decode_events(data: bytes) -> list[Event]:
    return _batch_decoder.decode(data)
