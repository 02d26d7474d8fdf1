"""GraphiQL (/graphql in a browser) and the OpenAPI UI (/docs) on assets this server holds.

Strawberry's and FastAPI's own pages load their JavaScript from public CDNs, so on a machine
without internet they stay blank. Here both pages load it from /vendor/, the folder that
`make web-assets` fills with the npm packages pinned in web-assets.lock.json."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "web_vendor"
VENDOR_URL = "/vendor"
GRAPHIQL_PAGE = Path(__file__).resolve().parent / "graphiql.html"
GRAPHIQL_FILES = (
    "react/umd/react.production.min.js",
    "react-dom/umd/react-dom.production.min.js",
    "graphiql/graphiql.min.js",
    "graphiql/graphiql.min.css",
)
SWAGGER_FILES = ("swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-dist/swagger-ui.css")


def missing(files: tuple[str, ...]) -> list[str]:
    return [name for name in files if not (VENDOR / name).is_file()]


def not_installed(tool: str, absent: list[str]) -> str:
    """What a browser shows instead of a page that could never load: the fix, not a blank."""
    items = "".join(f"<li><code>web_vendor/{html.escape(name)}</code></li>" for name in absent)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{tool}</title>
<link rel="icon" href="data:,"></head><body style="font-family: sans-serif; max-width: 44rem">
<h1>{tool}: its files are not installed</h1>
<p>This server serves {tool} from files installed with the project, not from the internet.
These are missing:</p><ul>{items}</ul>
<p>Run <code>make web-assets</code> (it fetches the npm packages pinned in
<code>web-assets.lock.json</code> and checks their hashes), then reload.</p></body></html>"""


def graphiql_html() -> str:
    absent = missing(GRAPHIQL_FILES)
    if absent:
        return not_installed("GraphiQL", absent)
    return GRAPHIQL_PAGE.read_text().replace("{{ vendor }}", VENDOR_URL)


def mount(app: FastAPI) -> None:
    """/vendor/ and the OpenAPI UI at /docs (build the app with docs_url=None)."""
    app.mount(VENDOR_URL, StaticFiles(directory=VENDOR, check_dir=False), name="vendor")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        absent = missing(SWAGGER_FILES)
        if absent:
            return HTMLResponse(not_installed("The OpenAPI UI", absent))
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - REST API",
            swagger_js_url=f"{VENDOR_URL}/swagger-ui-dist/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR_URL}/swagger-ui-dist/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR_URL}/swagger-ui-dist/favicon-32x32.png",
            # No badge that would send the document to an online validator.
            swagger_ui_parameters={"validatorUrl": None},
        )
