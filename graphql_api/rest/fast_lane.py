"""The order mutations' fast lane: which requests the edge's HTTP protocol serves itself,
without uvicorn's ASGI machinery, FastAPI or Starlette's middleware.

Why: profiling an API replica under `python -m tests.load` (py-spy) showed the layers a
mutation crossed on its way to `OrderMutations` taking a large share of the API's CPU per
mutation: first FastAPI's and Starlette's entry and middleware, then, once the lane ran from
the application's entry, uvicorn's own per-request work (the scope, a request cycle with its
event and task, the proxy-headers middleware, the receive and send messages, the response
head encoded in Python). A mutation needs none of it but what is kept here and in the edge
(`graphql_api/edge/direct.py`): the rate limit is checked with the same limiter, on the
client address the proxy-headers setting gives (a request it refuses takes the full path,
whose middleware answers the 429); with CORS on, a request that carries an Origin takes the
full path (its headers are CORSMiddleware's); the handlers are `OrderMutations`' own, over
the same service. Every other request, and every other method on these paths, takes the
full path, where `OrderMutations` still sits.
"""

from __future__ import annotations

from ..security import ApiKeys, RateLimiter, client_id
from .orders import Handler, OrderMutations, served_methods

MUTATION_METHODS = frozenset(("POST", "PUT", "DELETE"))


class FastLane:
    def __init__(
        self, mutations: OrderMutations, limiter: RateLimiter, keys: ApiKeys, cors: bool
    ) -> None:
        self.mutations = mutations
        self.limiter = limiter
        self.keys = keys
        self.cors = cors
        self.limited = limiter.rate > 0  # else the client address is never needed
        self.answer = mutations.answer

    def route(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[Handler, str] | None:
        """The mutation to serve for this request (`path` without the root path, unquoted),
        and the path's order id part; None when the request takes the full path. The rate
        limit is `admits`' (asked last: it takes a token)."""
        if method not in MUTATION_METHODS or method not in served_methods(path):
            return None
        if self.cors and any(name == b"origin" for name, _ in headers):
            return None
        return self.mutations.handlers[method], path[8:]

    def admits(self, headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None) -> bool:
        """Whether the rate limiter lets the request of this client (the address the
        proxy-headers middleware would give) through now."""
        scope = {"headers": headers, "client": client}
        return not self.limiter.retry_after(client_id(scope, self.keys))
