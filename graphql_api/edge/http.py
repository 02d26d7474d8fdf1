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

The order mutations' fast lane skips uvicorn's request cycle altogether: the protocol
collects such a request's body and answers it itself (`direct.py`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools
from uvicorn._types import ASGI3Application, HTTPScope
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from ..rest.orders import first_headers
from .direct import DirectRequest, ForwardedClient, encode_answer, server_error
from .limits import (
    REFUSALS,
    ConnectionGate,
    EdgeLimits,
    client_address,
    error_response,
    linger,
    refused,
)

if TYPE_CHECKING:
    from ..rest.fast_lane import FastLane

# The cut request's application task sees a disconnect; what it raises then is expected.
# (Made outside logging's registry: uvicorn's dictConfig re-enables registered loggers.)
_SILENT = logging.Logger("graphql_api.edge.cut", logging.CRITICAL + 1)
_SILENT.disabled = True


class Refused(Exception):
    """Raised inside a parser callback to stop parsing; the answer is in `refusal`."""


class EdgeConfig(Config):
    """uvicorn's configuration plus the edge's limits, its connection gate, and the fast
    lane of the application it loads, which the protocols of every connection share."""

    def __init__(self, *args: Any, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.gate = ConnectionGate(limits.max_connections, limits.max_connections_per_client)
        self.lane: FastLane | None = None
        self.forwarded: ForwardedClient | None = None

    def load(self) -> None:
        """uvicorn's, then the application's fast lane, unless uvicorn is set up to do per
        request what the direct path does not (a concurrency limit's 503s, fresh context
        variables): those requests then all take uvicorn's path."""
        super().load()
        app = self.loaded_app
        if isinstance(app, ProxyHeadersMiddleware):
            self.forwarded = ForwardedClient(app)
            app = app.app
        if self.limit_concurrency is None and not self.reset_contextvars:
            self.lane = getattr(app, "fast_lane", None)


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
        if self.transport.is_closing():
            # Dropped (the send timeout, a refusal): uvicorn marks only the last request
            # read as disconnected, and an earlier one woken from its drain still answers.
            self.held = None
            return
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
        self.send_timer: asyncio.TimerHandle | None = None  # while writing is paused
        self.send_buffered = 0  # bytes waiting when the send timer was armed
        self.held: HeldWrites | None = None
        self.refusal: tuple[int, str, str] | None = None
        # The request whose headers and body are being read, once it is a cycle or a direct
        # request (None before its headers are complete and after its body is): a refusal
        # while it is None, or while it waits in the pipeline, is for a request after one
        # still unanswered, and waits for that answer (`_refuse`).
        self.reading: RequestResponseCycle | DirectRequest | None = None
        self.refusal_due: bytes | None = None  # written once the answers owed before it are
        self.head_bytes = 0  # of the request being read
        self.body_bytes = 0
        self.started = False  # a byte of the current request has arrived
        # The fast lane's mutations are answered here (`direct.py`), unless an access log
        # would write uvicorn's line per request (its level is WARNING as `server.py` sets
        # it up: its INFO lines are never written).
        logs = self.access_log and self.access_logger.isEnabledFor(logging.INFO)
        self.lane = None if logs else config.lane
        self.forwarded = config.forwarded
        self.defaults_of: list[tuple[bytes, bytes]] | None = None
        self.defaults = b""

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
        self._stop_send_timer()
        if self.held is not None:
            self.held.held = None  # nobody to send it to
        self.gate.release(self.transport)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refusal_due is not None:
            return  # a refusal waits for earlier answers: nothing more is read
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
        """uvicorn's, with its scope left to `on_headers_complete`, for the requests that
        take its path."""
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.head_bytes = self.body_bytes = 0
        self.started = True
        self.reading = None
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
        if self.lane is not None:
            direct = self._direct()
            if direct is not None:
                self._queue(direct)
                self.reading = direct
                return
        self.scope = self._scope()
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        self.reading = cycle if cycle is not before else None  # (None: an upgrade)
        if cycle is not None and not cycle.response_complete:
            cycle.transport = self.held  # type: ignore[assignment]
            if not self.pipeline or self.pipeline[0][0] is not cycle:
                self._arm(self.limits.body_timeout_s, self._body_timeout)
            # (A pipelined request's body is due from its turn, `on_response_complete`:
            # reading is paused until then, so it could not arrive.)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body_bytes:
            self._stop(413, "body_too_large", self._too_large())
        cycle: RequestResponseCycle | DirectRequest = self.cycle
        if type(cycle) is DirectRequest:
            cycle.body += body
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self.started = False
        self.reading = None
        cycle: RequestResponseCycle | DirectRequest = self.cycle
        if type(cycle) is DirectRequest:
            cycle.more_body = False
            if cycle.started:
                self._run(cycle)
            return
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive wait on the connection's deadline instead of a
        timer of its own per response."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            if self.refusal_due is None:
                self.flow.resume_reading()
                if cycle.more_body:  # its body is due now that it can be read
                    self._arm(self.limits.body_timeout_s, self._body_timeout)
            self._start_asgi_task(cycle, app)
        elif self.refusal_due is not None:
            payload, self.refusal_due = self.refusal_due, None
            linger(self.transport, self, self.gate, payload)
        else:
            self.flow.resume_reading()
            self._arm(self.limits.keepalive_timeout_s, self.timeout_keep_alive_handler)

    def _scope(self) -> HTTPScope:
        """The scope uvicorn's `on_message_begin` builds."""
        return {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """uvicorn's, for a cycle; a direct request's turn has come (in a pipeline)."""
        queued: RequestResponseCycle | DirectRequest = cycle
        if type(queued) is DirectRequest:
            queued.started = True
            if not queued.more_body:
                self._run(queued)
            return
        super()._start_asgi_task(cycle, app)

    def pause_writing(self) -> None:
        """The client reads slower than it is answered: from now on, while the answers wait
        for it (and so do its next requests), it must take some of them every
        `send_timeout_s`, or the connection is dropped, as nginx's `send_timeout` does.
        Without this a client that sends requests and never reads their answers held a
        connection, a task and a buffer for as long as it liked."""
        super().pause_writing()
        if self.send_timer is None:
            self._arm_send_timer()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_send_timer()

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes the transport, and with it the pause's resume and
        # the connection's loss: this timer would outlive it and cut the WebSocket.
        self._stop_send_timer()
        super().handle_websocket_upgrade()

    def _arm_send_timer(self) -> None:
        self.send_buffered = self.transport.get_write_buffer_size()
        self.send_timer = self.loop.call_later(self.limits.send_timeout_s, self._send_timeout)

    def _stop_send_timer(self) -> None:
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    def _send_timeout(self) -> None:
        """A client that took some of its answers meanwhile gets another period; one that
        took none is dropped with a reset (SO_LINGER 0, as nginx's reset_timedout_connection):
        an abort alone drops only what waits in the process, and the kernel would still
        hold the socket's unread answers, and send them, for no process."""
        self.send_timer = None
        if self.transport.get_write_buffer_size() < self.send_buffered:
            self._arm_send_timer()
            return
        message = f"read none of its answers within {self.limits.send_timeout_s:g} s"
        refused("send_timeout", message, self.client)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    # -- the direct path (direct.py) --------------------------------------------------

    def _direct(self) -> DirectRequest | None:
        """The request as a direct one when the fast lane takes it and nothing about it
        needs uvicorn's path."""
        lane = self.lane
        assert lane is not None
        parser = self.parser
        if self.expect_100_continue or parser.should_upgrade():
            return None
        try:
            path = httptools.parse_url(self.url).path.decode("ascii")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            return None  # uvicorn's path refuses it
        if "%" in path:
            path = unquote(path)  # as uvicorn does; the root path is not in the URL
        headers = self.headers
        found = lane.route(parser.get_method().decode("ascii"), path, headers)
        if found is None:
            return None
        if lane.limited:
            client = self.client if self.forwarded is None else self.forwarded(self.client, headers)
            if not lane.admits(headers, client):
                return None  # the full path's middleware answers the 429
        handler, oid = found
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return DirectRequest(handler, oid, first_headers(headers), keep_alive, self.logger)

    def _queue(self, direct: DirectRequest) -> None:
        """Make `direct` the request being read; it waits in uvicorn's pipeline (reading
        paused) while an earlier request on the connection is unanswered."""
        existing = self.cycle
        self.cycle = direct  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            direct.started = True
            self._arm(self.limits.body_timeout_s, self._body_timeout)
        else:  # its body is due from its turn (`on_response_complete`)
            self.flow.pause_reading()
            self.pipeline.appendleft((direct, self.app))  # type: ignore[arg-type]

    def _run(self, direct: DirectRequest) -> None:
        task = self.loop.create_task(self._serve(direct))
        task.add_done_callback(self.tasks.discard)  # uvicorn's shutdown waits for them
        self.tasks.add(task)

    async def _serve(self, direct: DirectRequest) -> None:
        lane = self.lane
        assert lane is not None
        if direct.disconnected:
            # Cut before it ran (the client left, or the edge refused what followed it in
            # the same read and answered that instead): on uvicorn's path its body would
            # read as a disconnect, and nothing is carried out.
            return
        try:
            status, body, extra = await lane.answer(
                direct.handler, direct.headers, direct.read, direct.oid
            )
        except BaseException as exc:  # as uvicorn's cycle: log, answer 500, close
            direct.logger.error("Exception in ASGI application\n", exc_info=exc)
            response, keep_alive = server_error(self._defaults()), False
        else:
            response, keep_alive = encode_answer(
                status, body, extra, self._defaults(), direct.keep_alive
            )
        if self.flow.write_paused and not direct.disconnected:
            await self.flow.drain()
        if direct.disconnected or self.transport.is_closing():
            return  # as uvicorn's cycle drops what is sent after the client left
        direct.response_started = direct.response_complete = True
        if self.held is not None:
            self.held.flush()  # an earlier response's head (a HEAD's) goes first
        self.transport.write(response)
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _defaults(self) -> bytes:
        """uvicorn's default headers (`date`, `server`), encoded again only when its server
        replaces them (once a second)."""
        headers = self.server_state.default_headers
        if headers is not self.defaults_of:
            self.defaults_of = headers
            self.defaults = b"".join(b"%s: %s\r\n" % pair for pair in headers)
        return self.defaults

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
        be reading, and end the connection. When the refused request follows one still
        unanswered (pipelined), the refusal goes out after the answers owed before it, and
        then the connection ends: written at once, it would read as the answer to the
        earlier request, which may be an order carried out meanwhile."""
        if self.refusal_due is not None:
            return  # refused already, waiting for earlier answers
        self._stop_timer()
        if self.held is not None:
            self.held.flush()  # a head the cycle wrote goes first
        self._unset_keepalive_if_required()
        refused(error, message, self.client)
        extra = (("retry-after", "1"),) if retry_after else ()
        reading, pipeline = self.reading, self.pipeline
        queued = reading is not None and any(c is reading for c, _ in pipeline)
        unanswered = self.cycle is not None and not self.cycle.response_complete
        if queued or (reading is None and unanswered):
            if queued:
                pipeline.remove(next(item for item in pipeline if item[0] is reading))
                assert reading is not None
                reading.disconnected = True
                reading.logger = _SILENT
            self.refusal_due = error_response(status, error, message, *extra)
            self.flow.pause_reading()
            return
        cycle = self.cycle
        current = cycle is not None and not cycle.response_complete
        answered = current and cycle.response_started
        if current:
            cycle.disconnected = True  # its receive() says http.disconnect, send() is dropped
            cycle.logger = _SILENT
            cycle.message_event.set()
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
