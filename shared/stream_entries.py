"""The shapes of Redis stream replies, as each kind of client hands them over: every service
that reads a stream (the engine, its standby, the archiver) reads them through these.

A single server's replies come raw (a raw client, or a connection read directly): XREAD as
[stream, entries] pairs under RESP2 or a map under RESP3, an entry's fields as a flat
[name, value, ...] list. A cluster client parses them, fields into a dict.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Entries = list[Any]  # raw stream entries: [entry id, fields], fields a flat list or a dict


def streams_of(response: Any) -> Iterable[tuple[Any, Entries]]:
    """(stream, entries) pairs of an XREAD reply: a map under RESP3, pairs under RESP2.
    redis-py's parsed RESP3 reply (`?protocol=3` in the URL) wraps each stream's entries in
    one more list, {stream: [entries]}; an entry itself starts with its id, never a list."""
    if not response:
        return ()
    pairs = response.items() if isinstance(response, dict) else response
    return [(stream, _unwrapped(entries)) for stream, entries in pairs]


def _unwrapped(entries: Entries) -> Entries:
    if entries and isinstance(entries[0], list) and not isinstance(entries[0][0], bytes | str):
        return entries[0]
    return entries


def read_entries(response: Any) -> Entries:
    """The entries of an XREAD reply of one stream (none when it timed out)."""
    for _, entries in streams_of(response):
        return entries
    return []


def field(fields: list[bytes] | dict[bytes, bytes], name: bytes) -> bytes:
    """A field of a stream entry: a flat [name, value, ...] list as Redis sends it, or a
    dict (a cluster client parses its replies)."""
    if isinstance(fields, dict):
        return fields[name]
    for i in range(0, len(fields), 2):
        if fields[i] == name:
            return fields[i + 1]
    raise KeyError(name)


def stream_id(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id as the pair of numbers Redis orders it by ("1-10" after "1-9")."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)
