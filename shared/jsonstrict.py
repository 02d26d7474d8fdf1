"""JSON documents in which every object names each key once.

The standard decoder keeps the last of repeated keys, so `{"side": 1, ..., "side": -1}`
places a sell while a proxy, a log or an audit tool that keeps the first one sees a buy.
Refusing the document is the only reading every party agrees on. REST bodies and GraphQL
documents (HTTP and WebSocket) go through `loads`.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKey(ValueError):
    """A JSON object names `key` more than once."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Building the dict in C and comparing sizes costs about nothing on the usual object;
    # only a document that has a repeated key pays for finding which one.
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return found


# One decoder for every document: `json.loads` with a hook builds a decoder (and its
# scanner) per call, which cost more than decoding an order's body.
_DECODER = json.JSONDecoder(object_pairs_hook=_object)


def loads(data: str | bytes) -> Any:
    """`json.loads`, raising `DuplicateKey` for an object with a repeated key.

    Other failures raise what `json.loads` raises: `json.JSONDecodeError`, a
    `UnicodeDecodeError` for bytes that are not UTF-8 (both `ValueError`s), or a
    `RecursionError` for very deep nesting."""
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    elif isinstance(data, bytes | bytearray):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    else:
        raise TypeError(
            f"the JSON object must be str, bytes or bytearray, not {type(data).__name__}"
        )
    return _DECODER.decode(data)
