"""The order mutations' fast lane: served from the application's entry, before FastAPI's and
Starlette's middleware.

Why: profiling an API replica under `python -m tests.load` (py-spy) showed the layers a
mutation crossed on its way to `OrderMutations` (FastAPI's and Starlette's entry, the
server-error, exception-telemetry and body-limit middleware, the rate limiter) taking a
tenth of the API's CPU per mutation, and a mutation needs none of them but the rate limit.
What they did is kept: the rate limit is checked here with the same limiter (a request it
refuses takes the full path, whose middleware answers the 429); with CORS on, a request that
carries an Origin takes the full path (its headers are CORSMiddleware's); an unexpected
exception goes up to uvicorn, which logs it and answers 500, as Starlette's server-error
middleware did. Every other request, and every other method on these paths, takes the full
path, where `OrderMutations` still sits.
"""

from __future__ import annotations

from ..asgi import Receive, Scope, Send
from ..security import ApiKeys, RateLimiter, client_id, route_path
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

    def match(self, scope: Scope) -> tuple[Handler, str] | None:
        """The mutation to serve for this request, and the path's order id part; None when
        the request takes the full path."""
        if scope["type"] != "http":
            return None
        method = scope["method"]
        if method not in MUTATION_METHODS:
            return None
        path = route_path(scope)
        if method not in served_methods(path):
            return None
        if self.cors and any(name == b"origin" for name, _ in scope["headers"]):
            return None
        if self.limiter.rate > 0 and self.limiter.retry_after(client_id(scope, self.keys)):
            return None
        return self.mutations.handlers[method], path[8:]

    async def serve(
        self, found: tuple[Handler, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        handler, oid = found
        await self.mutations.serve(handler, scope, receive, send, oid)
