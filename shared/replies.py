"""The engine's answers on an API replica's reply stream: what the engine appends, and how a
replica reads it back.

A published batch gives each replica that asked one entry, field `b`: a msgpack array of
[request id, events] pairs, each command's events embedded as the engine encoded them for
the event stream. At live batch sizes (about a dozen commands per read), one XADD per
command was half of the publish script's Redis time; one per batch and replica costs about
as much as one of them, and a replica decodes a batch's answers in one call. A publish
that skips entries already published (a new leader's first batches) answers each remaining
command in an entry of its own, fields `r` (request id) and `e` (events): rare, and simple.

On a single server each entry is also published on the channel named after its stream, as
its id and fields joined by spaces (`notice_entry` reads it back): a replica subscribed there
needs no read after every batch, and reads the stream only to catch up after a reconnect.
"""

from __future__ import annotations

import msgspec

from .events import Event, decode_events
from .stream_entries import stream_id

BATCH_FIELD = b"b"


SHORT_HEADS = [bytes((0x92, 0xA0 | n)) for n in range(32)]  # `answer_head` by id length


def answer_head(request_id: bytes) -> bytes:
    """What precedes the request id in its [request id, events] pair. The engine looks
    request ids under 32 bytes (all the API's) up in SHORT_HEADS itself: a call per
    command costs more than the lookup."""
    n = len(request_id)
    if n < 32:
        return SHORT_HEADS[n]
    if n < 256:
        return bytes((0x92, 0xD9, n))
    return b"\x92\xda" + n.to_bytes(2, "big")


def pack_answers(pieces: list[bytes]) -> bytes:
    """A batch entry's value: its answers as one msgpack array, from their pieces, three
    per answer: `answer_head`, the request id, the events (already msgpack)."""
    n = len(pieces) // 3
    if n < 16:
        head = bytes((0x90 | n,))
    elif n < 65536:
        head = b"\xdc" + n.to_bytes(2, "big")
    else:
        head = b"\xdd" + n.to_bytes(4, "big")
    return head + b"".join(pieces)


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


def notice_entry(message: bytes) -> tuple[bytes, list[bytes]]:
    """A reply entry (id, fields) from its message on the stream's channel. Only the last
    value may hold a space: entry ids, field names and request ids never do. Raises
    ValueError on a message that is not one (its id would become a reader's position)."""
    entry_id, name, rest = message.split(b" ", 2)
    stream_id(entry_id)
    if name == BATCH_FIELD:
        return entry_id, [name, rest]
    request_id, events_name, events = rest.split(b" ", 2)
    return entry_id, [name, request_id, events_name, events]
