"""Hostile and careless clients against the real stack: every line every process writes is one
JSON object, a bad request is one info line without a traceback, and their volume is capped."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from shared.logs import CLIENT_ERROR_BURST, CLIENT_ERRORS_PER_S
from shared.stack import Stack
from tests.conftest import running_stack


@pytest.fixture
def http(logged_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=logged_stack.api_url(), timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def logged_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("logs")) as stack:
        yield stack


def lines(stack: Stack) -> dict[str, list[str]]:
    assert stack.log_dir is not None
    return {f.stem: f.read_text().splitlines() for f in sorted(stack.log_dir.glob("*.log"))}


def api_lines(stack: Stack) -> list[dict[str, Any]]:
    (name,) = (n for n in lines(stack) if n.startswith("api-"))
    return [json.loads(line) for line in lines(stack)[name]]


def client_errors(stack: Stack) -> list[dict[str, Any]]:
    return [entry for entry in api_lines(stack) if entry["event"] == "client_error"]


def wait_for(stack: Stack, count: int) -> list[dict[str, Any]]:
    """The API's client_error lines once there are at least `count` of them."""
    deadline = time.monotonic() + 10
    while len(found := client_errors(stack)) < count:
        assert time.monotonic() < deadline, f"{len(found)} client_error lines, waited for {count}"
        time.sleep(0.05)
    return found


def raw_http(stack: Stack, data: bytes) -> bytes:
    host, port = stack.api_url().removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        return sock.recv(100)


def websocket_text(stack: Stack, path: str, payload: bytes, protocol: str = "") -> bytes:
    """Sends `payload` as one text frame after the handshake; returns what the server sent."""
    host, port = stack.api_url().removeprefix("http://").split(":")
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if protocol:
        head += f"Sec-WebSocket-Protocol: {protocol}\r\n"
    mask = os.urandom(4)
    frame = bytes([0x81, 0x80 | len(payload)]) + mask
    frame += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((head + "\r\n").encode())
        assert sock.recv(1000).startswith(b"HTTP/1.1 101 ")
        sock.sendall(frame)
        reply = sock.recv(100)
    return reply


def close_code(reply: bytes) -> int:
    assert reply[0] == 0x88, reply  # a close frame
    code: int = struct.unpack("!H", reply[2:4])[0]
    return code


def test_each_bad_request_is_one_info_line_without_a_traceback(
    logged_stack: Stack, http: httpx.Client
) -> None:
    stack = logged_stack
    before = len(client_errors(stack))
    cases: list[tuple[str, Callable[[], object]]] = [
        ("Cannot query field 'nope'", lambda: http.post("/graphql", json={"query": "{ nope }"})),
        ("Syntax Error", lambda: http.post("/graphql", json={"query": "{ orderBook { "})),
        (
            "Int cannot represent",
            lambda: http.post(
                "/graphql",
                json={
                    "query": "query($d: Int!) { orderBook(depth: $d) { seq } }",
                    "variables": {"d": "x"},
                },
            ),
        ),
        ("Syntax Error", lambda: http.get("/graphql?query=%ff")),
        ("Invalid HTTP request", lambda: raw_http(stack, b"\xff\xfe garbage\r\n\r\n")),
        ("Invalid HTTP request", lambda: raw_http(stack, b"GET /\xff HTTP/1.1\r\n\x00\r\n\r\n")),
        (
            "Invalid UTF-8",
            lambda: close_code(websocket_text(stack, "/ws/trades", b"\xff\xfe")) == 1007,
        ),
        (
            "Invalid UTF-8",
            lambda: (
                close_code(
                    websocket_text(stack, "/graphql", b'{"type": "\xff"}', "graphql-transport-ws")
                )
                == 1007
            ),
        ),
    ]
    for i, (expected, send) in enumerate(cases, start=1):
        assert send(), expected
        found = wait_for(stack, before + i)
        assert expected in found[-1]["error"], found[-1]
    # Bodies that are not UTF-8 are refused by the API itself, which logs nothing for them.
    json_type = {"content-type": "application/json"}
    for path, body in [
        ("/graphql", b'{"query": "\xff"}'),
        ("/orders", b'{"side": 1, "x": "\xff"}'),
    ]:
        assert http.post(path, content=body, headers=json_type).status_code == 400
    entries = client_errors(stack)[before:]
    assert len(entries) == len(cases), "one line per bad request"
    for entry in entries:
        assert entry["level"] == "info"
        assert "exception" not in entry and "stack" not in entry, entry


def test_client_errors_are_rate_limited_and_counted(
    logged_stack: Stack, http: httpx.Client
) -> None:
    stack = logged_stack
    before = client_errors(stack)
    flood = 5 * CLIENT_ERROR_BURST
    started = time.monotonic()
    for _ in range(flood):
        http.post("/graphql", json={"query": "{ nope }"})
    # Then one at a time, slower than the rate, until a line reports the last ones dropped.
    sent = flood

    def accounted() -> tuple[list[dict[str, Any]], int]:
        entries = client_errors(stack)[len(before) :]
        return entries, len(entries) + sum(e.get("suppressed", 0) for e in entries)

    deadline = time.monotonic() + 20
    while (found := accounted())[1] < sent:
        assert time.monotonic() < deadline, f"{found[1]} of {sent} bad requests accounted for"
        time.sleep(1 / CLIENT_ERRORS_PER_S)
        http.post("/graphql", json={"query": "{ nope }"})
        sent += 1
    elapsed = time.monotonic() - started
    entries, total = accounted()
    assert total == sent, "every bad request is either logged or counted as suppressed"
    assert sum(e.get("suppressed", 0) for e in entries) > 0
    # A bound, not a timing: the burst plus what the rate refilled over the measured time.
    assert len(entries) <= CLIENT_ERROR_BURST + CLIENT_ERRORS_PER_S * elapsed + 1


def test_every_line_of_every_process_is_one_json_object(logged_stack: Stack) -> None:
    """Runs last in this module: the stack has seen every bad request above by now."""
    stack = logged_stack
    stack.stop()  # shutdown lines too
    seen = lines(stack)
    assert {"engine", "archiver"} <= set(seen) and any(n.startswith("api-") for n in seen)
    for name, text in seen.items():
        assert text, f"{name} wrote nothing"
        for line in text:
            entry = json.loads(line)
            assert isinstance(entry, dict), f"{name}: {line}"
            assert {"event", "level", "timestamp", "service"} <= entry.keys(), f"{name}: {line}"
            assert "Traceback" not in line, f"{name}: {line}"
