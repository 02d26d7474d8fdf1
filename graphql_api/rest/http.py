"""Raw ASGI helpers of the routes that run below FastAPI: read a JSON object body, answer
JSON. Shaped as Starlette's own, so a client cannot tell the two kinds of route apart."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from ..asgi import Receive, Send
from ..edge.json_body import loads_body
from ..errors import ApiError

# How a handler gets its request's body: read from ASGI messages on the full path, already
# collected by the edge on the direct one (`graphql_api/edge/direct.py`). A callable, so a
# handler refuses what it can refuse (415, a bad order id) before waiting for the body.
Body = Callable[[], Awaitable[bytes]]


class ClientGone(Exception):
    """The client disconnected before sending its whole body: nothing to answer."""


async def respond(send: Send, status: int, body: bytes, extra: dict[str, str]) -> None:
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    head += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def json_bytes(payload: object) -> bytes:
    """JSON as Starlette's JSONResponse encodes it."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def receive_body(receive: Receive) -> bytes:
    """The whole body from ASGI messages; ClientGone when the client left first."""
    raw = b""  # at most MAX_BODY_BYTES: the edge (graphql_api.edge) cuts longer bodies
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        raw += chunk
        if not message.get("more_body", False):
            return raw


async def read_object(
    headers: dict[bytes, bytes], body: Body, allowed: frozenset[str]
) -> dict[str, object]:
    """The JSON object body, or an ApiError naming what is wrong with it."""
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body must be application/json")
    raw = await body()
    try:
        parsed = loads_body(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object", field="body")
    unknown = sorted(set(parsed) - allowed)
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown field {unknown[0]!r}",
            errors=[{"field": name, "message": "unknown field"} for name in unknown],
        )
    return parsed
