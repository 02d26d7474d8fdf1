"""Order mutations served straight from the edge's HTTP protocol (`http.py`).

Why: for every request uvicorn builds a scope dict, a request cycle with an asyncio.Event, a
task running its ASGI wrapper, the proxy-headers middleware and the application, receive and
send message dicts, and it encodes the response head field by field; under
`python -m tests.load` (py-spy) those were a good part of the API's CPU per mutation, which
needs none of them. For a request the fast lane takes (`rest/fast_lane.py`), the protocol
instead collects the body under the same edge limits, runs `OrderMutations`' handler over
the service in one task, and writes the status line, headers and body in one send.

What a client sees is what uvicorn's path shows it: the same head (uvicorn's `date` and
`server`, then the handler's headers), `connection: close` and a closed connection when the
request is HTTP/1.0 or asks for it or the server is shutting down; answers in request order
on a pipelined connection (a direct request waits its turn in uvicorn's pipeline, as a cycle
does, with reading paused meanwhile); a bug logged as uvicorn logs it and answered with
uvicorn's 500. What it cannot keep cheaply takes uvicorn's path instead (`EdgeConfig`,
`EdgeHttpProtocol._direct`): `Expect: 100-continue`, an upgrade, an access log, a
concurrency limit, fresh context variables per request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

if TYPE_CHECKING:
    from ..rest.orders import Handler, Headers

SERVER_ERROR = b"Internal Server Error"


class _NoReader:
    """What uvicorn's `connection_lost` and the edge's refusal wake when the request in
    progress is a direct one (a cycle's `message_event`): nothing waits for its body."""

    __slots__ = ()

    def set(self) -> None:
        pass


class DirectRequest:
    """A request the fast lane serves, in the place of uvicorn's request cycle: uvicorn's
    pipeline, `connection_lost` and `shutdown`, and the edge's refusals read and set the
    same attributes on it as on a cycle."""

    __slots__ = (
        "body",
        "disconnected",
        "handler",
        "headers",
        "keep_alive",
        "logger",
        "more_body",
        "oid",
        "response_complete",
        "response_started",
        "started",
    )
    message_event = _NoReader()

    def __init__(
        self,
        handler: Handler,
        oid: str,
        headers: Headers,
        keep_alive: bool,
        logger: logging.Logger,
    ) -> None:
        self.handler = handler
        self.oid = oid
        self.headers = headers
        self.keep_alive = keep_alive  # uvicorn's shutdown turns it off
        self.logger = logger  # the edge's refusal silences it
        self.body = b""
        self.more_body = True
        self.started = False  # its turn: every earlier answer on the connection is written
        self.response_started = self.response_complete = self.disconnected = False

    async def read(self) -> bytes:
        """The handler's `Body`: the whole body, collected by the protocol before the
        handler runs."""
        return self.body


def encode_answer(
    status: int, body: bytes, extra: dict[str, str], defaults: bytes, keep_alive: bool
) -> tuple[bytes, bool]:
    """The response as uvicorn writes what `rest.http.respond` sends (the head of
    `defaults`, the JSON headers, then `extra`), and whether the connection stays open."""
    parts = [
        STATUS_LINE[status],
        defaults,
        b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
    ]
    closing = False
    for name, value in extra.items():
        field, text = name.lower().encode(), value.encode()
        if field == b"connection" and b"close" in [t.strip().lower() for t in text.split(b",")]:
            closing = True
        parts.append(b"%s: %s\r\n" % (field, text))
    if not keep_alive and not closing:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts), keep_alive and not closing


def server_error(defaults: bytes) -> bytes:
    """uvicorn's answer to an application that raised before answering."""
    return b"".join(
        (
            STATUS_LINE[500],
            defaults,
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(SERVER_ERROR),
            SERVER_ERROR,
        )
    )


class ForwardedClient:
    """The client address uvicorn's proxy-headers middleware would put in the scope, from
    its own trusted hosts (the rate limiter buckets by it)."""

    def __init__(self, middleware: ProxyHeadersMiddleware) -> None:
        self.trusted = middleware.trusted_hosts

    def __call__(
        self, client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]]
    ) -> tuple[str, int] | None:
        if (client[0] if client else None) not in self.trusted:
            return client
        forwarded = [value for name, value in headers if name == b"x-forwarded-for"]
        if not forwarded:
            return client
        host, port = self.trusted.get_trusted_client_address(b", ".join(forwarded).decode("latin1"))
        return (host, port) if host else client
