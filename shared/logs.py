"""Structured logging for every process: one JSON object per line on stderr.

structlog's loggers and the standard library's (uvicorn, Strawberry, asyncio, redis, pymongo,
`warnings`) share one handler and one renderer, so every line is a JSON object, a traceback is
the `exception` field of its line, and lines from different threads never interleave. An
exception nobody catches, in the main thread or another one, is logged the same way instead
of Python printing it.

What a client sent wrong (GraphQL that does not parse or validate, bytes that are not HTTP,
invalid UTF-8 in a WebSocket text frame) is not a fault of the server: it is logged once, at
info, as `client_error` without a traceback, and at most CLIENT_ERRORS_PER_S a second after a
burst of CLIENT_ERROR_BURST, so no client can flood the log. The next `client_error` let through
counts the ones dropped before it in `suppressed`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict, Processor, WrappedLogger

CLIENT_ERRORS_PER_S = 5.0
CLIENT_ERROR_BURST = 20
# A client's error message can quote what it sent; this bounds what one line repeats of it.
MESSAGE_LIMIT = 500

# What uvicorn logs (at warning or error, some with a traceback) about bytes a client sent.
UVICORN_CLIENT_ERRORS = frozenset(
    {
        "Invalid HTTP request received.",
        "Invalid UTF-8 sequence received from client.",
        "Unsupported upgrade request.",
    }
)
# Every record of this standard-library logger is a client error, whatever its level: the API's
# edge (graphql_api.edge) logs there each request or connection it refuses.
CLIENT_ERROR_LOGGER = "client_error"
# Attributes the filter below sets on a standard-library record, copied into its JSON line.
FIELDS = ("error", "suppressed")


def _graphql_client_error(error: Any) -> bool:
    """A GraphQL error the client caused: parsing, validation, variable coercion and errors
    the resolvers raise as GraphQLError on purpose (bad input, authentication). Anything
    else a resolver raised is a server fault."""
    from graphql import GraphQLError

    original = getattr(error, "original_error", None)
    return original is None or isinstance(original, GraphQLError)


class TokenBucket:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class ThirdPartyRecords(logging.Filter):
    """Gives library records their place in our log: client errors become rate-limited info
    lines without a traceback; a GraphQL server error keeps its level and traceback."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold
        self.budget = TokenBucket(CLIENT_ERRORS_PER_S, CLIENT_ERROR_BURST)
        self.suppressed = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "strawberry.execution":
            message = str(getattr(record.msg, "message", record.getMessage()))
            if not _graphql_client_error(record.msg):
                record.msg, record.args, record.error = "graphql_error", (), message[:MESSAGE_LIMIT]
                return True
        elif record.name == "uvicorn.error" and record.msg in UVICORN_CLIENT_ERRORS:
            message = str(record.msg)
        elif record.name == CLIENT_ERROR_LOGGER:
            message = record.getMessage()
        else:
            return True
        if self.threshold > logging.INFO:
            return False
        with self.lock:
            if not self.budget.take():
                self.suppressed += 1
                return False
            suppressed, self.suppressed = self.suppressed, 0
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = record.stack_info = None
        record.msg, record.args, record.error = "client_error", (), message[:MESSAGE_LIMIT]
        if suppressed:
            record.suppressed = suppressed
        return True


def _library_fields(service: str) -> Processor:
    def add(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        record: logging.LogRecord = event["_record"]
        event["service"] = service
        event["logger"] = record.name
        for name in FIELDS:
            if hasattr(record, name):
                event[name] = getattr(record, name)
        return event

    return add


def configure(service: str, level: str = "info") -> structlog.stdlib.BoundLogger:
    threshold = logging.getLevelName(level.upper())
    timestamped: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ThirdPartyRecords(threshold))
    handler.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=[*timestamped, _library_fields(service)],
            processors=[
                ProcessorFormatter.remove_processors_meta,
                structlog.processors.StackInfoRenderer(),
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[*timestamped, ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(service=service)
    _log_uncaught(logger)
    return logger


def _log_uncaught(logger: Any) -> None:
    def main_thread(
        kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        logger.critical("uncaught_exception", exc_info=(kind, exc, tb))

    def other_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None:
            return
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        thread = args.thread.name if args.thread else None
        logger.critical("uncaught_exception", thread=thread, exc_info=exc_info)

    sys.excepthook = main_thread
    threading.excepthook = other_thread
