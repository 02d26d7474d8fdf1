"""The engine's answers on an API replica's reply stream: what the engine appends, and how a
replica reads it back.

A published batch gives each replica that asked one entry, field `b`: a msgpack array of
[request id, events] pairs, each command's events embedded as the engine encoded them for
the event stream. At live batch sizes (about a dozen commands per read), one XADD per
command was half of the publish script's Redis time; one per batch and replica costs about
as much as one of them, and a replica decodes a batch's answers in one call. A publish
that skips entries already published (a new leader's first batches) answers each remaining
command in an entry of its own, fields `r` (request id) and `e` (events): rare, and simple.
"""

from __future__ import annotations

import msgspec

from .events import Event, decode_events

BATCH_FIELD = b"b"


def pack_answer(request_id: bytes, events: bytes) -> bytes:
    """One [request id, events] pair of a batch entry; `events` is already msgpack."""
    n = len(request_id)
    if n < 32:
        head = bytes((0x92, 0xA0 | n))
    elif n < 256:
        head = bytes((0x92, 0xD9, n))
    else:
        head = b"\x92\xda" + n.to_bytes(2, "big")
    return head + request_id + events


def pack_answers(answers: list[bytes]) -> bytes:
    """A batch entry's value: the pairs (`pack_answer`) as one msgpack array."""
    n = len(answers)
    if n < 16:
        head = bytes((0x90 | n,))
    elif n < 65536:
        head = b"\xdc" + n.to_bytes(2, "big")
    else:
        head = b"\xdd" + n.to_bytes(4, "big")
    return head + b"".join(answers)


_batch = msgspec.msgpack.Decoder(list[tuple[str, list[Event]]])


def read_answers(fields: list[bytes]) -> list[tuple[str, list[Event]]]:
    """(request id, events) of every answer in a reply entry, its fields a flat list as Redis
    sends them; none in any other entry (the `open` one a replica starts its stream with)."""
    if len(fields) == 2 and fields[0] == BATCH_FIELD:
        return _batch.decode(fields[1])
    found = dict(zip(fields[::2], fields[1::2], strict=False))
    request_id, events = found.get(b"r"), found.get(b"e")
    if request_id is None or events is None:
        return []
    return [(request_id.decode(), decode_events(events))]
