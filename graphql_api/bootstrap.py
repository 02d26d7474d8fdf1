"""The composition root: the one place that picks the adapters (engine gateway, store) from
the settings and wires them into the service and the application."""

from __future__ import annotations

from fastapi import FastAPI

from shared.config import Settings
from store import Store, open_store

from .app import build_app
from .ports import EngineGateway
from .service import ExchangeService


def build_gateway(settings: Settings, store: Store) -> EngineGateway:
    """`ENGINE_GATEWAY=inprocess` runs the engine in this process; else (the default) the
    engines are behind Redis at REDIS_URL."""
    if settings.engine_gateway == "inprocess":
        from .gateway.inprocess import InProcessGateway

        return InProcessGateway(settings, store)
    if settings.engine_gateway != "redis":
        raise ValueError(
            f"ENGINE_GATEWAY must be 'redis' or 'inprocess', not {settings.engine_gateway!r}"
        )
    from .gateway.redis_gateway import RedisGateway, connect

    return RedisGateway(settings, connect(settings))


def create_app(
    settings: Settings | None = None,
    *,
    gateway: EngineGateway | None = None,
    store: Store | None = None,
) -> FastAPI:
    """The application over the adapters the settings name (or those given)."""
    settings = settings or Settings.from_env()
    store = store or open_store(settings)
    gateway = gateway or build_gateway(settings, store)
    return build_app(ExchangeService(settings, gateway, store))
