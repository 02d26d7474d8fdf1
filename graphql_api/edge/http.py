"""uvicorn's httptools protocol with the edge's limits, enforced as the bytes arrive.

uvicorn has a keep-alive timeout, but no limit on how long headers or a body may take, how
large a body or the headers may be, or how many connections one client may hold: a slow
client, a silent one or a 10 MB body each held the process's resources for as long as the
client liked. The limits are checked in the parser callbacks, before the application sees
the request: a declared `Content-Length` over the body limit is refused before any of the
body is read, and a chunked body is counted as it arrives and cut at the limit.

Two costs per request are kept off the hot path. The connection's deadlines (headers, body,
keep-alive) share one timer that is not cancelled and re-armed per request: arming a
deadline only records when it falls, and the timer, when it fires early, sleeps again until
the deadline then in force. And a response's head is held until its body is written, so
that the two go out in one send instead of two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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


class HeldWrites:
    """The transport a request's cycle writes to: a write is held until the next one (a
    response's head until its body) or the end of the event loop's turn, whichever comes
    first, and then the two go out together."""

    __slots__ = ("held", "loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self.held
        if held is None:
            self.held = data
            self.loop.call_soon(self.flush)
        else:
            self.held = None
            self.transport.write(held + data)

    def flush(self) -> None:
        held = self.held
        if held is not None:
            self.held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


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
        # The deadline in force (0: none), what to do then, and the one timer behind it.
        self.due = 0.0
        self.on_due: Callable[[], None] = self._header_timeout
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.held: HeldWrites | None = None
        self.refusal: tuple[int, str, str] | None = None
        self.head_bytes = 0  # of the request being read
        self.body_bytes = 0
        self.started = False  # a byte of the current request has arrived

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.held = HeldWrites(transport, self.loop)
        refused = self.gate.admit(transport, client_address(self.client))
        if refused is not None:
            status, message = refused
            self._refuse(status, "too_many_connections", message, retry_after=True)
            return
        # The first request's headers are due within the header timeout of the accept: a
        # connection that sends nothing is closed then.
        self._arm(self.limits.header_timeout_s, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if self.held is not None:
            self.held.held = None  # nobody to send it to
        self.gate.release(self.transport)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
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
        if not self.due or self.on_due != self._header_timeout:
            # After a keep-alive pause: from this first byte (the first request's headers
            # are due from the accept).
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
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.transport = self.held  # type: ignore[assignment]
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

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive wait on the connection's deadline instead of a
        timer of its own per response."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._arm(self.limits.keepalive_timeout_s, self.timeout_keep_alive_handler)

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
        if not self.started:  # silent since the accept or the last response: just close
            REFUSALS.labels("idle").inc()
            self.transport.close()
            return
        message = f"the request headers must arrive within {self.limits.header_timeout_s:g} s"
        self._refuse(408, "request_timeout", message)

    def _body_timeout(self) -> None:
        message = f"the request body must arrive within {self.limits.body_timeout_s:g} s"
        self._refuse(408, "request_timeout", message)

    def _refuse(self, status: int, error: str, message: str, retry_after: bool = False) -> None:
        """Answer `status` unless a response has begun, cut the request the application may
        be reading, and end the connection."""
        self._stop_timer()
        if self.held is not None:
            self.held.flush()  # a head the cycle wrote goes first
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

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        """Make `callback` due in `seconds`, replacing the deadline in force. The timer is
        moved only when it would fire after the new deadline."""
        due = self.due = self.loop.time() + seconds
        self.on_due = callback
        if self.timer is None or self.timer_at > due:
            self._schedule(due)

    def _disarm(self) -> None:
        self.due = 0.0  # the timer, when it fires, finds nothing due

    def _schedule(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._fire)
        self.timer_at = when

    def _fire(self) -> None:
        self.timer = None
        due = self.due
        if not due:
            return
        if due > self.loop.time():  # re-armed since: sleep until the deadline now in force
            self._schedule(due)
            return
        self.due = 0.0
        self.on_due()

    def _stop_timer(self) -> None:
        self.due = 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
