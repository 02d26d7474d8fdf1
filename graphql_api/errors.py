"""How the API's exceptions become HTTP error responses.

One table for FastAPI's exception handlers and for the order routes that run below FastAPI
(`rest/orders.py`), so every route answers a given failure with the same status, body and
headers, and the OpenAPI document lists them once (`ERROR_RESPONSES`).
"""

from __future__ import annotations

from typing import Any

from .ports import Unavailable
from .requests import InvalidInput
from .security import Unauthenticated
from .service import Rejection


class ApiError(Exception):
    """A request the REST layer refuses before the application layer sees it."""

    def __init__(self, status: int, error: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra


Rendered = tuple[int, dict[str, object], dict[str, str]]


def error_response(exc: Exception) -> Rendered | None:
    """(status, JSON body, extra headers) for an exception the API answers, else None."""
    if isinstance(exc, InvalidInput):
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
        return 422, {"error": "invalid_request", "message": str(exc), "errors": errors}, {}
    if isinstance(exc, ApiError):
        return exc.status, {"error": exc.error, "message": exc.message, **exc.extra}, {}
    if isinstance(exc, Rejection):
        return 409, {"error": "rejected", "reason": exc.reason, "message": str(exc)}, {}
    if isinstance(exc, Unauthenticated):
        body: dict[str, object] = {"error": "unauthenticated", "message": str(exc)}
        return 401, body, {"WWW-Authenticate": "ApiKey"}
    if isinstance(exc, Unavailable):
        return 503, {"error": "unavailable", "message": str(exc)}, {"Retry-After": "1"}
    return None


ANSWERED = (InvalidInput, ApiError, Rejection, Unauthenticated, Unavailable)

ERROR_BODY = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "reason": {"type": "string"},
        "field": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
# Any: OpenAPI response objects are JSON of any shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/json": {"schema": ERROR_BODY}}}
    for status, text in {
        400: "malformed JSON",
        401: "API key missing or unknown (AUTH_MODE=api_key)",
        404: "no such order or route",
        409: "rejected by the engine (e.g. no_liquidity)",
        413: "body too large",
        415: "body is not application/json",
        422: "invalid input; `errors` names each field",
        429: "rate limited; see Retry-After",
        503: "engine or store unavailable, or engine backlog too long; see Retry-After",
    }.items()
}
