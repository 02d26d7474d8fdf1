"""Hostile and careless clients, on raw sockets, for the abuse suite
(`tests/hardening/test_abuse.py`) and its figures (`python -m tests.abuse_bench`).

Each attack reports what the server did (what it answered, when it closed), never what it
should have done: the suite asserts, the benchmark prints.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# Loopback addresses: each attack comes from its own, so per-address limits see one client
# per attack, and the well-behaved probe (127.0.0.2) is never one of them.
PROBE_ADDRESS = "127.0.0.2"
SLOW_HEADER_ADDRESS = "127.0.0.3"
SLOW_BODY_ADDRESS = "127.0.0.4"
SILENT_ADDRESS = "127.0.0.5"

SLOW_HEADER_HEAD = b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
SLOW_HEADER_DRIP = b"X-Slow: 1\r\n"
SLOW_BODY_HEAD = (
    b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n"
)


def host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    assert parts.hostname and parts.port, base_url
    return parts.hostname, parts.port


@dataclass
class Outcome:
    answer: bytes = b""  # everything the server sent
    closed_after: float | None = None  # seconds from connect to the server's close
    error: str = ""  # the connection failed (reset, refused) instead of closing


async def trickle(
    base_url: str, source: str, head: bytes, drip: bytes, interval: float, give_up: float
) -> Outcome:
    """Send `head`, then `drip` every `interval` seconds (nothing when `drip` is empty),
    until the server closes the connection or `give_up` seconds have passed."""
    host, port = host_port(base_url)
    outcome = Outcome()
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    except OSError as exc:
        outcome.error = repr(exc)
        return outcome

    async def read() -> None:
        while data := await reader.read(65536):
            outcome.answer += data
        outcome.closed_after = time.monotonic() - started

    async def write() -> None:
        with contextlib.suppress(OSError):
            if head:
                writer.write(head)
                await writer.drain()
            while drip:
                await asyncio.sleep(interval)
                writer.write(drip)
                await writer.drain()
        await asyncio.Event().wait()  # a client that cannot write any more still reads

    reading = asyncio.ensure_future(read())
    writing = asyncio.ensure_future(write())
    try:
        await asyncio.wait_for(asyncio.shield(reading), give_up)
    except TimeoutError:
        pass
    except OSError as exc:
        outcome.error = repr(exc)
    finally:
        writing.cancel()
        reading.cancel()
        writer.close()
    return outcome


async def send_head_and_wait(
    base_url: str, head: bytes, body_start: bytes, give_up: float
) -> tuple[bytes, float]:
    """Send `head` and the first part of a body, never the rest, and wait for the answer:
    an answer proves the server decided without reading the body. Returns what the server
    sent before closing (or before `give_up`) and the seconds until its first byte."""
    host, port = host_port(base_url)
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    first = 0.0
    answer = b""
    try:
        writer.write(head + body_start)
        await writer.drain()
        async with asyncio.timeout(give_up):
            while data := await reader.read(65536):
                if not answer:
                    first = time.monotonic() - started
                answer += data
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()
    return answer, first


def status_of(answer: bytes) -> int | None:
    """The status code of the last response in `answer` (a 100 Continue may precede it)."""
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    last = answer.rfind(b"HTTP/1.1 ")
    return int(answer[last + 9 : last + 12])


def ws_frame_header(length: int, text: bool = True) -> bytes:
    """The header of one masked client frame with a payload of `length` bytes."""
    first = 0x80 | (0x1 if text else 0x2)
    if length < 126:
        size = bytes([0x80 | length])
    elif length < 1 << 16:
        size = bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        size = bytes([0x80 | 127]) + struct.pack("!Q", length)
    return bytes([first]) + size + os.urandom(4)


def ws_handshake(path: str, subprotocol: str | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: x",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def api_fds(pid: int) -> int:
    """Open file descriptors of a process (Linux)."""
    return len(os.listdir(f"/proc/{pid}/fd"))
