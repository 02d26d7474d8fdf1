"""The query parameters the list reads share: the page (`limit`, the `after`/`before`
cursors, `order`, the `since`/`until` window) as one FastAPI dependency, and the instrument.

Why as text: `requests.py` parses every parameter of a read together, so that every bad one
is named at once; `openapi.py` documents each one's type (QUERY_SCHEMAS)."""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import Depends, Query

SYMBOL_HELP = "instrument (default: all for lists, the default instrument for the book)"
# A list parameter as the client sent it.
Text = Annotated[str | None, Query()]
Symbol = Annotated[str | None, Query(description=SYMBOL_HELP)]


class PageText(TypedDict):
    """The page parameters of `GET /trades`, `GET /orders` and `GET /orders/{id}/trades`,
    unparsed, named as `requests.py`'s keyword arguments (a TypedDict, so that `**page`
    is type-checked)."""

    limit: str | None
    after: str | None
    before: str | None
    order: str | None
    since: str | None
    until: str | None


def page_text(
    limit: Text = None,
    after: Text = None,
    before: Text = None,
    order: Text = None,
    since: Text = None,
    until: Text = None,
) -> PageText:
    return PageText(limit=limit, after=after, before=before, order=order, since=since, until=until)


def symbol_text(symbol: Symbol = None) -> str | None:
    return symbol


# Dependencies, because FastAPI lists an operation's own parameters before its dependencies'
# ones: the instrument filter follows the page in the document, as it always has.
Page = Annotated[PageText, Depends(page_text)]
SymbolFilter = Annotated[str | None, Depends(symbol_text)]
