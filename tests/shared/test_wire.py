"""Round trips of the wire contract: commands and event batches through msgpack."""

from __future__ import annotations

import msgspec
import pytest

from shared.commands import (
    BUY,
    SELL,
    Cancel,
    Command,
    Modify,
    Place,
    decode_command,
    encode_command,
)
from shared.events import (
    DUPLICATE_CLIENT_ORDER_ID,
    ORDER_NOT_ALIVE,
    UNKNOWN_ORDER,
    Accepted,
    Cancelled,
    Event,
    Modified,
    Rejected,
    Trade,
    decode_events,
    encode_events,
)

COMMANDS = [
    Place(BUY, 10150, 7),
    Place(SELL, 1, 1_000_000_000, "client-1", "req-1", 1_700_000_000_000_000_000),
    Place(SELL, 5, 3, None, "req-2", 42),
    Modify(12, 9999),
    Modify(12, 9999, "req-3", 43),
    Cancel(12),
    Cancel(7, "req-4", 44),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_round_trip(command: Command) -> None:
    data = encode_command(command)
    assert isinstance(data, bytes)
    decoded = decode_command(data)
    assert decoded == command
    assert type(decoded) is type(command)


def test_commands_are_tagged_so_kinds_do_not_collide() -> None:
    # Modify and Cancel-with-request-id have overlapping shapes; the tag tells them apart
    assert type(decode_command(encode_command(Modify(3, 4)))) is Modify
    assert type(decode_command(encode_command(Cancel(3, "4")))) is Cancel


def test_decode_command_rejects_garbage() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_command(b"\xc1")
    with pytest.raises(msgspec.ValidationError):
        decode_command(msgspec.msgpack.encode(["nope", 1, 2]))


def test_event_batch_round_trip() -> None:
    events: list[Event] = [
        Accepted(1, 1, BUY, 100, 5, 10, None),
        Accepted(2, 2, SELL, 99, 3, 11, "c-2"),
        Trade(3, 100, 3, 1, 2, SELL, 2, 0, 11),
        Modified(4, 1, 101, 12),
        Cancelled(5, 1, 2, 13),
        Rejected(6, UNKNOWN_ORDER, 99, 14),
        Rejected(7, ORDER_NOT_ALIVE, 1, 15),
        Rejected(8, DUPLICATE_CLIENT_ORDER_ID, 2, 16),
    ]
    decoded = decode_events(encode_events(events))
    assert decoded == events
    assert [type(e) for e in decoded] == [type(e) for e in events]
    assert decode_events(encode_events([])) == []


def test_rejection_reasons_are_stable_strings() -> None:
    assert UNKNOWN_ORDER == "unknown_order"
    assert ORDER_NOT_ALIVE == "order_not_alive"
    assert DUPLICATE_CLIENT_ORDER_ID == "duplicate_client_order_id"
    assert BUY == 1
    assert SELL == -1
