"""Storage: the port (`store.port`) and its adapters (`store.sqlite`, `store.mongo`).

`open_store` is the one place that picks an adapter from the settings; the port module
imports no adapter, and the adapters import only the port.
"""

from __future__ import annotations

from shared.config import Settings

from .port import BookLevels, GapError, OrderRecord, Store, TradeRecord

__all__ = ["BookLevels", "GapError", "OrderRecord", "Store", "TradeRecord", "open_store"]


def open_store(settings: Settings, blocking: bool = False) -> Store:
    """MongoDB when `MONGODB_URL` is set, else the embedded SQLite store in `DATA_DIR`
    (`blocking`: its calls run on the caller's thread, see `SqliteReads`)."""
    if settings.mongodb_url:
        from .mongo import MongoStore

        return MongoStore(settings.mongodb_url, settings.mongodb_db)
    from .sqlite import SqliteStore

    return SqliteStore(settings.data_dir / "exchange.sqlite3", blocking)
