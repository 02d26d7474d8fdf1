"""Request bodies as strict JSON, for REST and GraphQL alike: a repeated key is a 422 that
names it (see `shared.jsonstrict` for why), every other failure is the caller's to map."""

from __future__ import annotations

from typing import Any

from shared.jsonstrict import DuplicateKey, loads

from ..errors import ApiError


def loads_body(raw: str | bytes) -> Any:
    """The parsed body; `ApiError(422)` naming a repeated key; otherwise what
    `json.loads` raises (`ValueError`s, `RecursionError`)."""
    try:
        return loads(raw)
    except DuplicateKey as exc:
        raise ApiError(
            422,
            "invalid_request",
            str(exc),
            errors=[{"field": exc.key, "message": "duplicate key"}],
        ) from None
