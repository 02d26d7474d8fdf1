"""Access control and abuse limits for the API: API keys, rate limits, WebSocket origins.

Keys are configured as SHA-256 digests (`API_KEYS=name:hexdigest,...`), so the process
never holds a usable key, and a presented key is compared with every configured digest in
constant time. The rate limiter is a token bucket per client (the owner of a valid API key,
else the peer address; behind a proxy, the forwarded one) kept in each replica: with N
replicas a client gets up to N times the rate, which is the usual trade for not putting a
shared counter on the hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping

from strawberry.http.websocket_origin import is_same_origin, normalize_origin

from shared.config import Settings

from .asgi import ASGIApp, Receive, Scope, Send

API_KEY_HEADER = "x-api-key"


class Unauthenticated(Exception):
    """A key is required (AUTH_MODE=api_key) and none, or an unknown one, was presented."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_mode == "api_key"
        if settings.auth_mode not in ("off", "api_key"):
            raise ValueError(f"AUTH_MODE must be 'off' or 'api_key', not {settings.auth_mode!r}")
        self.digests: list[tuple[bytes, str]] = []
        for pair in filter(None, (p.strip() for p in settings.api_keys.split(","))):
            name, _, digest = pair.partition(":")
            if not name or len(digest) != 64:
                raise ValueError("API_KEYS entries must be name:sha256-hex")
            self.digests.append((bytes.fromhex(digest), name))
        if self.enabled and not self.digests:
            raise ValueError("AUTH_MODE=api_key needs at least one entry in API_KEYS")

    def owner(self, key: str | None) -> str:
        """The owner name for a presented key; "" when auth is off."""
        if not self.enabled:
            return ""
        if not key:
            raise Unauthenticated("an API key is required: send it in the X-API-Key header")
        presented = hashlib.sha256(key.encode()).digest()
        found = ""
        for digest, name in self.digests:  # no early exit: same work for every key
            if hmac.compare_digest(presented, digest):
                found = name
        if not found:
            raise Unauthenticated("unknown API key")
        return found


class RateLimiter:
    """Token buckets keyed by client; `retry_after` is 0 when the request may go ahead."""

    def __init__(self, rate: float, burst: float, max_clients: int = 100_000) -> None:
        self.rate, self.burst, self.max_clients = rate, max(burst, 1.0), max_clients
        self.buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, client: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, last = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if len(self.buckets) >= self.max_clients and client not in self.buckets:
                self.buckets.clear()  # bounded memory: forgetting buckets only forgives
            self.buckets[client] = (tokens - 1.0, now)
            return 0.0
        self.buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate


def origin_allowed(headers: Mapping[str, str], allowed: tuple[str, ...]) -> bool:
    """The same rule Strawberry applies to GraphQL WebSockets, for the plain ones."""
    origin = headers.get("origin")
    if origin is None:  # not a browser: no ambient credentials to abuse
        return True
    if is_same_origin(origin, headers.get("host")) or "*" in allowed:
        return True
    return normalize_origin(origin) in {normalize_origin(a) for a in allowed}


class RateLimitMiddleware:
    """Pure ASGI middleware (no per-request task overhead): 429 + Retry-After when a
    client's bucket is empty. Health checks are exempt so orchestrators never get a 429."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, keys: ApiKeys) -> None:
        self.app = app
        self.limiter = limiter
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope).startswith("/health"):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.retry_after(client_id(scope, self.keys))
        if not wait:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": "rate_limited", "message": f"too many requests; retry in {wait:.2f} s"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def route_path(scope: Scope) -> str:
    """The path the app routes on: without the `root_path` a proxy mounts it under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def client_id(scope: Scope, keys: ApiKeys) -> str:
    """The rate-limit bucket of a request or WebSocket: a valid API key's owner when keys
    are on, else the peer address. A key that is merely presented never picks the bucket:
    random keys would each get a fresh one."""
    if keys.enabled:
        for name, value in scope.get("headers", ()):
            if name == API_KEY_HEADER.encode():
                try:
                    return "key:" + keys.owner(value.decode("latin-1"))
                except Unauthenticated:
                    break
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:unknown"
