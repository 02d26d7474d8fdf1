"""The GraphQL schema (Strawberry): types (`types.py`), resolvers (`resolvers.py`) and
extensions (`extensions.py`); subscriptions (`subscriptions.py`, `feed_types.py`).

Prices travel as the `Price` scalar: a decimal string on output; a string or a number on
input, validated by the same parser as REST.
"""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from .extensions import extensions
from .resolvers import Mutation, Query
from .subscriptions import Subscription
from .types import PRICE_SCALAR, Price


def build_schema(production: bool = False) -> strawberry.Schema:
    """The schema with its abuse limits; `production` also turns introspection off."""
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions(production),
        config=StrawberryConfig(scalar_map={Price: PRICE_SCALAR}),
    )


schema = build_schema()
