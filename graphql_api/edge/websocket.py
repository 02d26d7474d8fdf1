"""uvicorn's WebSocket protocol (websockets, sans-I/O) with the edge's limits.

The message size limit is the websockets parser's own (`max_size`, from
`WS_MAX_MESSAGE_BYTES`): it reads a frame's declared length from its header and fails the
connection with 1009 before reading the payload. What this class adds:
- a per-connection message rate limit: a client over it is closed with 1008;
- invalid UTF-8 in a text message closes with 1007 quietly (uvicorn logs a traceback);
- a lingering close when the connection fails, so that a client still sending its 15 MB
  frame reads the close frame instead of a reset (see `limits`);
- the connection's place in the gate, released when its socket closes.
Dead or silent peers are closed by uvicorn's keep-alive pings (`WS_PING_INTERVAL_S`,
`WS_PING_TIMEOUT_S`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import Frame

from .http import EdgeConfig
from .limits import linger, refused

POLICY_VIOLATION = 1008


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, EdgeConfig), "serve through graphql_api.edge.server"
        self.gate = config.gate
        self.rate = config.limits.ws_messages_per_s
        self.burst = 2 * self.rate
        self.tokens = self.burst
        self.refilled = self.loop.time()
        self.failed = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.release(self.transport)
        super().connection_lost(exc)

    # Every data frame and ping costs a token; control frames the server asked for (pongs,
    # the close handshake) do not.
    def handle_text(self, event: Frame) -> None:
        if self._charge():
            super().handle_text(event)

    def handle_bytes(self, event: Frame) -> None:
        if self._charge():
            super().handle_bytes(event)

    def handle_cont(self, event: Frame) -> None:
        if self._charge():
            super().handle_cont(event)

    def handle_ping(self) -> None:
        if self._charge():
            super().handle_ping()

    def send_receive_event_to_app(self) -> None:
        """Invalid UTF-8 in a text message closes with 1007 as before, without uvicorn's
        error log and traceback: it is the client's fault, not the server's."""
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                self.conn.fail(1007, "Invalid UTF-8 in a text message")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def _charge(self) -> bool:
        if self.failed:
            return False  # frames parsed in the same read as the failing one
        if not self.rate:
            return True
        now = self.loop.time()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.conn.fail(POLICY_VIOLATION, "message rate limit exceeded")
        self.handle_parser_exception()
        return False

    def handle_parser_exception(self) -> None:
        """The connection failed (a message over the size limit, a protocol error, the rate
        limit): tell the application, send the close frame, linger."""
        self.failed = True
        sent = self.conn.close_sent
        code = sent.code if sent is not None else 1006
        refused(f"websocket_{code}", sent.reason if sent else "protocol error", self.client)
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": code, "reason": sent.reason if sent else ""}
        )
        self.close_sent = True
        self.disconnected = True  # the application's sends now raise ClientDisconnected
        self.stop_keepalive()
        # uvicorn closes the socket when the application returns unless a close is already
        # scheduled: the lingering close is that close (closing earlier would reset it).
        self.close_timer = linger(
            self.transport, self, self.gate, b"".join(self.conn.data_to_send())
        )
