"""The edge's limits, its connection gate, and how it refuses a connection.

Why refusals linger: a server that answers and closes while the client is still sending
(a 10 MB body, a 15 MB WebSocket frame) closes a socket with unread input, and the kernel
then sends a reset that can destroy the answer before the client reads it. So a refused
connection writes its answer, half-closes, drops whatever still arrives, and is closed when
the client closes its side or after `LINGER_S`, whichever comes first (nginx's
lingering close, bounded the same way).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from prometheus_client import Counter as Metric

from shared.config import Settings
from shared.logs import CLIENT_ERROR_LOGGER

LINGER_S = 1.0
# File descriptors kept back from the connection cap for Redis, the store, logs and the
# listening socket.
RESERVED_FDS = 128

# One `client_error` line per refusal, rate-limited with the other client errors
# (shared.logs).
CLIENT_ERRORS = logging.getLogger(CLIENT_ERROR_LOGGER)

REFUSALS = Metric(
    "exchange_api_edge_refusals_total",
    "Requests and connections the edge refused or cut, by reason",
    ["reason"],
)


@dataclass(frozen=True)
class EdgeLimits:
    max_body_bytes: int
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float
    send_timeout_s: float
    max_connections: int
    max_connections_per_client: int  # 0: no cap
    ws_max_message_bytes: int
    ws_messages_per_s: float  # 0: no limit

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        """The settings, with the connection cap lowered to what the process's file limit
        can hold (a cap above it would let the server fail on accept instead of refusing)."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = settings.max_connections
        if soft != resource.RLIM_INFINITY:
            cap = max(1, min(cap, soft - RESERVED_FDS))
        return cls(
            max_body_bytes=settings.max_body_bytes,
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            keepalive_timeout_s=settings.keepalive_timeout_s,
            send_timeout_s=settings.send_timeout_s,
            max_connections=cap,
            max_connections_per_client=settings.max_connections_per_client,
            ws_max_message_bytes=settings.ws_max_message_bytes,
            ws_messages_per_s=settings.ws_messages_per_s,
        )


class ConnectionGate:
    """Open connections, in total and per client address, of one API process.

    A connection holds its place from accept until its socket is closed, across a WebSocket
    upgrade and a lingering close, so the counts are what the process really holds."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total, self.per_client = total, per_client
        self.open: dict[object, str] = {}  # transport -> client address
        self.by_client: Counter[str] = Counter()
        self.lingering = 0

    def admit(self, transport: object, client: str) -> tuple[int, str] | None:
        """None when the connection may stay, else (status, reason) to refuse it with."""
        if len(self.open) >= self.total:
            return 503, f"the server holds its maximum of {self.total} connections"
        if self.per_client and self.by_client[client] >= self.per_client:
            return 429, f"at most {self.per_client} open connections per client"
        self.open[transport] = client
        self.by_client[client] += 1
        return None

    def release(self, transport: object) -> None:
        client = self.open.pop(transport, None)
        if client is not None:
            self.by_client[client] -= 1
            if not self.by_client[client]:
                del self.by_client[client]


def error_response(status: int, error: str, message: str, *headers: tuple[str, str]) -> bytes:
    """A complete HTTP/1.1 response in the API's error shape, ending the connection."""
    body = json.dumps({"error": error, "message": message}, separators=(",", ":")).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Linger(asyncio.Protocol):
    """Takes over a refused connection: drops what arrives, closes on the client's EOF or
    after `seconds`, then hands the loss to the protocol it replaced (which keeps its own
    bookkeeping: the gate, uvicorn's connection set, a waiting request or WebSocket)."""

    def __init__(self, replaced: asyncio.BaseProtocol, gate: ConnectionGate) -> None:
        self.replaced = replaced
        self.gate = gate
        self.timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.lingering -= 1
        if self.timer is not None:
            self.timer.cancel()
        self.replaced.connection_lost(exc)


def linger(
    transport: asyncio.Transport,
    replaced: asyncio.BaseProtocol,
    gate: ConnectionGate,
    payload: bytes = b"",
) -> asyncio.TimerHandle | None:
    """Write `payload` (the refusal), half-close, and let `Linger` finish the connection;
    returns the timer that will close it (None: closed now)."""
    if transport.is_closing():
        return None
    if payload:
        transport.write(payload)
    if gate.lingering >= gate.total or not transport.can_write_eof():
        transport.close()  # a flood of refusals must not hold descriptors for long
        return None
    transport.write_eof()
    protocol = Linger(replaced, gate)
    gate.lingering += 1
    transport.set_protocol(protocol)
    transport.resume_reading()  # uvicorn's flow control may have paused it
    protocol.timer = asyncio.get_running_loop().call_later(LINGER_S, transport.close)
    return protocol.timer


def refused(reason: str, message: str, client: Any) -> None:
    """Count a refusal, and log it as a client error."""
    REFUSALS.labels(reason).inc()
    CLIENT_ERRORS.warning("%s from %s: %s", reason, client_address(client), message)


def client_address(client: Any) -> str:
    return str(client[0]) if client else "unknown"
