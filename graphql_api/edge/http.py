"""uvicorn's httptools protocol with the edge's limits, enforced as the bytes arrive.

uvicorn has a keep-alive timeout, but no limit on how long headers or a body may take, how
large a body or the headers may be, or how many connections one client may hold: a slow
client, a silent one or a 10 MB body each held the process's resources for as long as the
client liked. The limits are checked in the parser callbacks, before the application sees
the request: a declared `Content-Length` over the body limit is refused before any of the
body is read, and a chunked body is counted as it arrives and cut at the limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .limits import (
    REFUSALS,
    ConnectionGate,
    EdgeLimits,
    client_address,
    error_response,
    linger,
    refused,
)

# The cut request's application task sees a disconnect; what it raises then is expected.
# (Made outside logging's registry: uvicorn's dictConfig re-enables registered loggers.)
_SILENT = logging.Logger("graphql_api.edge.cut", logging.CRITICAL + 1)
_SILENT.disabled = True


class Refused(Exception):
    """Raised inside a parser callback to stop parsing; the answer is in `refusal`."""


class EdgeConfig(Config):
    """uvicorn's configuration plus the edge's limits and its connection gate, which the
    protocols of every connection share."""

    def __init__(self, *args: Any, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.gate = ConnectionGate(limits.max_connections, limits.max_connections_per_client)


class EdgeHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, EdgeConfig), "serve through graphql_api.edge.server"
        self.limits = config.limits
        self.gate = config.gate
        self.timeout_keep_alive = self.limits.keepalive_timeout_s  # type: ignore[assignment]
        self.deadline: asyncio.TimerHandle | None = None
        self.refusal: tuple[int, str, str] | None = None
        self.head_bytes = 0  # of the request being read
        self.body_bytes = 0
        self.started = False  # a byte of the current request has arrived

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        refused = self.gate.admit(transport, client_address(self.client))
        if refused is not None:
            status, message = refused
            self._refuse(status, "too_many_connections", message, retry_after=True)
            return
        # The first request's headers are due within the header timeout of the accept: a
        # connection that sends nothing is closed then.
        self._arm(self.limits.header_timeout_s, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.gate.release(self.transport)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._disarm()
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            status, error, message = self.refusal or (400, "invalid_http", "Invalid HTTP request")
            self._refuse(status, error, message)

    # -- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = self.body_bytes = 0
        self.started = True
        if self.deadline is None:  # after a keep-alive pause: from this first byte
            self._arm(self.limits.header_timeout_s, self._header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url), 414, "url_too_long")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4, 431, "headers_too_large")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        declared = next((v for n, v in self.headers if n == b"content-length"), b"")
        if declared.strip().isdigit() and int(declared) > self.limits.max_body_bytes:
            self._stop(413, "body_too_large", self._too_large())
        super().on_headers_complete()
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm(self.limits.body_timeout_s, self._body_timeout)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body_bytes:
            self._stop(413, "body_too_large", self._too_large())
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self.started = False
        super().on_message_complete()

    # -- limits -------------------------------------------------------------------------

    def _too_large(self) -> str:
        return f"the body must be at most {self.limits.max_body_bytes} bytes"

    def _count_head(self, size: int, status: int, error: str) -> None:
        self.head_bytes += size
        if self.head_bytes > self.limits.max_header_bytes:
            limit = self.limits.max_header_bytes
            self._stop(status, error, f"the request line and headers must be at most {limit} bytes")

    def _stop(self, status: int, error: str, message: str) -> None:
        self.refusal = (status, error, message)
        raise Refused(error)  # httptools stops parsing and raises HttpParserError

    def _header_timeout(self) -> None:
        self.deadline = None
        if not self.started:  # silent since the accept or the last response: just close
            REFUSALS.labels("idle").inc()
            self.transport.close()
            return
        message = f"the request headers must arrive within {self.limits.header_timeout_s:g} s"
        self._refuse(408, "request_timeout", message)

    def _body_timeout(self) -> None:
        self.deadline = None
        message = f"the request body must arrive within {self.limits.body_timeout_s:g} s"
        self._refuse(408, "request_timeout", message)

    def _refuse(self, status: int, error: str, message: str, retry_after: bool = False) -> None:
        """Answer `status` unless a response has begun, cut the request the application may
        be reading, and end the connection."""
        self._disarm()
        self._unset_keepalive_if_required()
        refused(error, message, self.client)
        cycle = self.cycle
        current = cycle is not None and not cycle.response_complete
        answered = current and cycle.response_started
        if current:
            cycle.disconnected = True  # its receive() says http.disconnect, send() is dropped
            cycle.logger = _SILENT
            cycle.message_event.set()
        extra = (("retry-after", "1"),) if retry_after else ()
        payload = b"" if answered else error_response(status, error, message, *extra)
        linger(self.transport, self, self.gate, payload)

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
