"""Replies of redis-py, checked and typed as a client without decode_responses answers.

redis-py types a reply for every client setting at once (bytes or str, and None where a
pipeline or RESP3 may answer nothing), so a test reading a stream or a key would have to
narrow each value by hand. These check the shape once and hand the reply on as bytes.
"""

from __future__ import annotations

Entry = tuple[bytes, dict[bytes, bytes]]


def entries(reply: object) -> list[Entry]:
    """The entries of an XRANGE or XREVRANGE reply."""
    assert isinstance(reply, list), reply
    checked: list[Entry] = []
    for entry_id, fields in reply:
        assert isinstance(entry_id, bytes) and isinstance(fields, dict), (entry_id, fields)
        assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in fields.items())
        checked.append((entry_id, fields))
    return checked


def value(reply: object) -> bytes | None:
    """A string key's value (None where the key does not exist)."""
    assert reply is None or isinstance(reply, bytes), reply
    return reply


def read_entries(reply: object) -> list[Entry]:
    """The entries of an XREAD reply for one stream (none when the read timed out)."""
    if not reply:
        return []
    assert isinstance(reply, list) and len(reply) == 1, reply
    _, found = reply[0]
    return entries(found)
