"""The OpenAPI operations of the order mutations, which run below FastAPI: generated from the
body types (`requests.py`) and answer types (`views.py`) the routes use, and merged into
FastAPI's document; and the types of the list reads' query parameters, which FastAPI hands
over as text for `requests.py` to parse (so that every bad one is named at once)."""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import ERROR_RESPONSES
from ..requests import (
    CANDLE_INTERVALS,
    CANDLE_PAGE,
    DEFAULT_PAGE,
    MAX_PAGE,
    ORDER_ID_PATTERN,
    ORDERS,
    ModifyOrderBody,
    PlaceOrderBody,
)
from ..views import ChangedView, PlacedView

REF = "#/components/schemas/{name}"
EXAMPLES: dict[type, dict[str, object]] = {
    PlaceOrderBody: {"side": 1, "price": 101.5, "quantity": 10},
    ModifyOrderBody: {"price": 102},
}

JSONObject = dict[str, Any]  # Any: an OpenAPI document is JSON of any shape


def _components() -> tuple[dict[type, JSONObject], JSONObject]:
    types = (PlaceOrderBody, ModifyOrderBody, PlacedView, ChangedView)
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    for kind, example in EXAMPLES.items():
        components[kind.__name__]["example"] = example
    components[ModifyOrderBody.__name__]["minProperties"] = 1
    return dict(zip(types, refs, strict=True)), components


def _json(schema: JSONObject, description: str) -> JSONObject:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> JSONObject:
    return {str(status): ERROR_RESPONSES[status] for status in statuses}


def order_operations() -> tuple[JSONObject, JSONObject]:
    """(paths, component schemas) of the order mutations."""
    ref, components = _components()
    order_id = {
        "name": "order_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": ORDER_ID_PATTERN, "title": "Order Id"},
    }

    def body(kind: type) -> JSONObject:
        return {"required": True, "content": {"application/json": {"schema": ref[kind]}}}

    changed = _json(ref[ChangedView], "whether the engine applied it")
    paths = {
        "/orders": {
            "post": {
                "summary": "Place an order (limit or market)",
                "operationId": "place_order_orders_post",
                "requestBody": body(PlaceOrderBody),
                "responses": {
                    "201": _json(ref[PlacedView], "the order was accepted"),
                    "200": _json(ref[PlacedView], "client_order_id seen before: the original"),
                    **_errors(400, 401, 409, 413, 415, 422, 429, 503),
                },
            }
        },
        "/orders/{order_id}": {
            "put": {
                "summary": "Modify the price and/or the quantity",
                "operationId": "modify_order_orders__order_id__put",
                "parameters": [order_id],
                "requestBody": body(ModifyOrderBody),
                "responses": {"200": changed, **_errors(400, 401, 413, 415, 422, 429, 503)},
            },
            "delete": {
                "summary": "Cancel the remaining quantity",
                "operationId": "cancel_order_orders__order_id__delete",
                "parameters": [order_id],
                "responses": {"200": changed, **_errors(401, 422, 429, 503)},
            },
        },
    }
    return paths, components


def _cursor(side: str) -> JSONObject:
    return {
        "schema": {"type": "string", "pattern": ORDER_ID_PATTERN},
        "description": f"an id: only items with ids {side} it (exclusive; 0 is the start)",
    }


def _time(bound: str) -> JSONObject:
    return {
        "schema": {"type": "string", "format": "date-time"},
        "description": f"ISO 8601 ({bound}, inclusive, to the microsecond; no offset: UTC)",
    }


def _page_size(default: int) -> JSONObject:
    return {
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": default},
        "description": "page size",
    }


# Each list read's query parameters: their type, and whether required.
PAGE_PARAMETERS: dict[str, JSONObject] = {
    "limit": _page_size(DEFAULT_PAGE),
    "after": _cursor("above"),
    "before": _cursor("below"),
    "order": {
        "schema": {"type": "string", "enum": list(ORDERS), "default": "asc"},
        "description": "asc: oldest first; desc: newest first (and the newest page)",
    },
    "since": _time("from"),
    "until": _time("to"),
}
QUERY_SCHEMAS: dict[str, dict[str, JSONObject]] = {
    "/trades": PAGE_PARAMETERS,
    "/orders/{order_id}/trades": PAGE_PARAMETERS,
    "/orders": {
        **PAGE_PARAMETERS,
        "alive": {"schema": {"type": "boolean"}, "description": "resting (true) or not"},
        "side": {"schema": {"type": "integer", "enum": [1, -1]}, "description": "1 buy, -1 sell"},
    },
    "/candles": {
        "interval": {
            "schema": {"type": "string", "enum": list(CANDLE_INTERVALS)},
            "description": "bucket length",
            "required": True,
        },
        "since": _time("bucket start from"),
        "until": _time("bucket start to"),
        "limit": _page_size(CANDLE_PAGE),
    },
}


def type_query_parameters(document: JSONObject) -> None:
    for path, parameters in QUERY_SCHEMAS.items():
        for parameter in document["paths"][path]["get"]["parameters"]:
            typed = parameters.get(parameter["name"])
            if parameter["in"] == "query" and typed is not None:
                parameter.update(typed)


def merge(document: JSONObject) -> JSONObject:
    """FastAPI's document plus the order mutations, and the list reads' parameter types."""
    paths, components = order_operations()
    for path, operations in paths.items():
        document["paths"].setdefault(path, {}).update(operations)
    document.setdefault("components", {}).setdefault("schemas", {}).update(components)
    type_query_parameters(document)
    return document
