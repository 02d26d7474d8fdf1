"""The FastAPI application: REST, WebSockets, GraphQL, health, metrics and the playground,
assembled around a service that `bootstrap.py` wires to its adapters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from cross_web import HTTPException
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from strawberry.fastapi import GraphQLRouter

from shared import gc_policy
from shared.jsonstrict import loads

from .edge.json_body import loads_body
from .errors import ANSWERED, error_response
from .requests import Requests
from .rest import feeds, market, openapi, orders
from .rest.fast_lane import FastLane
from .schema import build_schema
from .security import ApiKeys, RateLimiter, RateLimitMiddleware, route_path
from .service import ExchangeService
from .tool_pages import graphiql_html
from .tool_pages import mount as mount_tool_pages

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
PLAYGROUND = Path(__file__).resolve().parent.parent / "web_playground"


class ExchangeGraphQLRouter(GraphQLRouter[Any, Any]):  # Any: Strawberry's context, root
    """Strawberry's router, answering 400 (not 500) to every body it cannot use, and closing
    a WebSocket with 4400 on every message that is not a protocol message."""

    @staticmethod
    def _loads(data: str | bytes) -> Any:  # Any: JSON of any shape
        """Every unreadable document as a JSONDecodeError, which Strawberry turns into a 400
        over HTTP and a 4400 close over WebSockets (bad UTF-8, deep nesting, 4300-digit
        integers and repeated keys raise other errors that it would not catch)."""
        try:
            return loads(data)
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as exc:
            raise json.JSONDecodeError(str(exc), "", 0) from None

    def decode_json(self, data: str | bytes) -> object:
        """A WebSocket message (HTTP bodies go through `parse_json`). Strawberry's protocol
        handlers index the message and its payload as objects, so a message of another
        shape would crash the connection without a close frame: refuse it as invalid."""
        message = self._loads(data)
        if not isinstance(message, dict):
            raise json.JSONDecodeError("a message must be a JSON object", "", 0)
        kind = message.get("type")
        if kind in ("subscribe", "start", "complete", "stop") and not isinstance(
            message.get("id"), str
        ):
            raise json.JSONDecodeError("id must be a string", "", 0)  # it keys a dict
        if kind in ("subscribe", "start"):
            payload = message.get("payload")
            if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
                raise json.JSONDecodeError("payload.query must be a string", "", 0)
        return message

    @property
    def graphql_ide_html(self) -> str:
        """GraphiQL on the server's own copy of its assets (Strawberry's page uses a CDN)."""
        return graphiql_html()

    def parse_json(self, data: str | bytes) -> Any:  # Any: Strawberry's signature
        """An HTTP body: a repeated key is a 422 naming it, as on REST."""
        try:
            parsed = loads_body(data)
        except (ValueError, RecursionError):
            raise HTTPException(400, "Unable to parse request body as JSON") from None
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "The request body must be a JSON object")
        return parsed


class ExchangeApp(FastAPI):
    """FastAPI, holding the order mutations' fast lane (`rest/fast_lane.py`), which the
    edge's HTTP protocol serves without going through the application (`edge/direct.py`)."""

    fast_lane: FastLane | None = None


def build_app(service: ExchangeService) -> FastAPI:
    settings = service.settings
    requests = Requests(settings)
    keys = ApiKeys(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        gc_policy.settle()
        try:
            yield
        finally:
            await service.stop()

    app = ExchangeApp(
        title="Order-matching exchange",
        version="0.1.0",
        description="Limit order book with price-time priority. GraphQL at /graphql.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from local assets by tool_pages
        redoc_url=None,
        # Metrics are Prometheus (/metrics); FastAPI's OpenTelemetry hooks would only add
        # per-request environment lookups on the hot path.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service
    mount_tool_pages(app)

    async def answered(request: Request, exc: Exception) -> JSONResponse:
        rendered = error_response(exc)
        assert rendered is not None, exc  # registered only for the classes it renders
        status, body, headers = rendered
        return JSONResponse(body, status_code=status, headers=headers)

    for kind in ANSWERED:
        app.add_exception_handler(kind, answered)

    @app.exception_handler(RequestValidationError)
    async def invalid_params(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": str(err["loc"][-1]) if err.get("loc") else "request", "message": err["msg"]}
            for err in exc.errors()
        ]
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse(
            {"error": "invalid_request", "message": message, "errors": errors}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown routes and methods answer in the same shape as every other error."""
        error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the first route matching the path: ask every route.
            served = orders.served_methods(route_path(request.scope))  # below FastAPI
            allowed = [
                method
                for method in HTTP_METHODS
                if method in served
                or any(
                    route.matches({**request.scope, "method": method})[0] == Match.FULL
                    for route in app.routes
                )
            ]
            if allowed:  # (a mounted app's own 405 keeps the Allow it set)
                headers["Allow"] = ", ".join(allowed)
        return JSONResponse(
            {"error": error, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        checks = await service.ready()
        return JSONResponse(checks, status_code=200 if checks["ready"] else 503)

    app.include_router(orders.reads(service, requests, keys))
    app.include_router(market.reads(service, requests))
    app.include_router(feeds.feeds(service, requests, keys))

    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)

    async def context() -> dict[str, Any]:  # Any: Strawberry adds its own entries
        return {"service": service, "requests": requests, "keys": keys, "limiter": limiter}

    graphql = ExchangeGraphQLRouter(
        build_schema(production=settings.production),
        context_getter=context,
        graphql_ide=None if settings.production else "graphiql",
        allowed_origins=settings.allowed_origins,
        max_subscriptions_per_connection=settings.max_subscriptions,
        connection_init_wait_timeout=timedelta(seconds=settings.header_timeout_s),
        include_in_schema=False,  # GraphQL has its own schema; OpenAPI covers REST
    )
    app.include_router(graphql, prefix="/graphql")
    # Innermost of the middleware: rate limits and CORS apply to the order routes too.
    app.add_middleware(orders.OrderMutations, service=service, requests=requests, keys=keys)
    mutations = orders.OrderMutations(app.router, service, requests, keys)
    app.fast_lane = FastLane(mutations, limiter, keys, cors=bool(settings.allowed_origins))
    generate_openapi = app.openapi

    def document() -> dict[str, Any]:  # Any: an OpenAPI document is JSON of any shape
        """FastAPI's document plus the order mutations that run below it."""
        if app.openapi_schema is None:
            app.openapi_schema = openapi.merge(generate_openapi())
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["content-type", "x-api-key"],
            allow_credentials=False,
        )
    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiter,
        keys=keys,
    )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if PLAYGROUND.is_dir():
        # The page at "/", its files under /playground/: a catch-all mount at "/" would
        # answer every unknown API path (405 for POST /nope instead of 404).
        @app.get("/", include_in_schema=False)
        async def playground() -> FileResponse:
            return FileResponse(PLAYGROUND / "index.html")

        app.mount("/playground", StaticFiles(directory=PLAYGROUND), name="playground")
    return app
