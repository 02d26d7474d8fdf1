"""The OpenAPI operations of the order mutations, which run below FastAPI: generated from the
body types (`requests.py`) and answer types (`views.py`) the routes use, and merged into
FastAPI's document."""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import ERROR_RESPONSES
from ..requests import ORDER_ID_PATTERN, ModifyOrderBody, PlaceOrderBody
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


def merge(document: JSONObject) -> JSONObject:
    """FastAPI's document plus the order mutations."""
    paths, components = order_operations()
    for path, operations in paths.items():
        document["paths"].setdefault(path, {}).update(operations)
    document.setdefault("components", {}).setdefault("schemas", {}).update(components)
    return document
