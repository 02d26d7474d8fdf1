"""Serve the API with uvicorn, its HTTP and WebSocket protocols replaced by the edge's.

Why uvicorn with its protocol classes extended, rather than another server: uvicorn has no
header or body timeout, no body or header size limit and no per-client connection cap, but
it takes its protocol classes as parameters (`http=`, `ws=`), and its httptools protocol
exposes each parser callback. Hypercorn has a read timeout, a keep-alive timeout and a
WebSocket message size, but neither a body limit nor a per-client connection cap, and a
switch would change the request path of every route, whose speed is measured (uvicorn
with httptools and uvloop). The limits then hold for `make run` with no proxy in front.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from shared.config import Settings

from .http import EdgeConfig, EdgeHttpProtocol
from .limits import EdgeLimits
from .websocket import EdgeWebSocketProtocol


def config(settings: Settings, app: Any = "graphql_api.bootstrap:create_app") -> EdgeConfig:
    """uvicorn's configuration for `app` (an import string of a factory, or the
    application itself) behind the edge's limits."""
    return EdgeConfig(
        app,
        factory=isinstance(app, str),
        host=settings.api_host,
        port=settings.api_port,
        http=EdgeHttpProtocol,
        ws=EdgeWebSocketProtocol,
        ws_max_size=settings.ws_max_message_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        # uvicorn's loggers propagate to the JSON handler `shared.logs.configure` installed
        # instead of getting plain-text handlers of their own.
        log_config=None,
        log_level="warning",
        access_log=False,
        limits=EdgeLimits.from_settings(settings),
    )


def serve(settings: Settings) -> None:
    uvicorn.Server(config(settings)).run()
