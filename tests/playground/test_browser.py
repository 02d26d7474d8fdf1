"""The web playground in a real browser (Debian's Chromium driven by Playwright) against the
real stack: trade through the form, watch the tape, the ladder and "my orders" follow, modify
and cancel, see inline errors, survive a dropped WebSocket, and fit on a phone. GraphiQL and
the OpenAPI UI run a query each with every request off this machine refused.

The screenshots in docs/img/ are taken here, after trades, so they show a populated view.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, Route, async_playwright, expect

pytestmark = pytest.mark.usefixtures("empty_book")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# `UPDATE_SCREENSHOTS=1 make test` refreshes the README's pictures; otherwise they go to a
# temporary folder, so a test run never dirties the work tree.
IMG = (
    Path(__file__).resolve().parents[2] / "docs" / "img"
    if os.environ.get("UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "playground-screenshots"
)
TIMEOUT = 5000  # ms; the book is broadcast every second, so 5 s is generous on a slow box
WIDE = {"width": 1280, "height": 860}
NARROW = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser test drives Debian's Chromium "
            "(Playwright's own download cannot work here). Install it with `make chromium` "
            "(make test does it) or `apt-get install chromium`."
        )
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def ahttp(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another trader, over REST: fills the book around the browser's orders."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        yield client


async def place(client: httpx.AsyncClient, side: int, price: str, quantity: int) -> str:
    response = await client.post(
        "/orders", json={"side": side, "price": price, "quantity": quantity}
    )
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def open_playground(browser: Browser, base_url: str) -> tuple[Page, list[str]]:
    """A fresh page whose subscriptions are live; also returns the page's JS errors."""
    page = await browser.new_page(viewport=WIDE)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"{base_url}/")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=TIMEOUT)
    # A snapshot from the orderBook subscription proves both subscriptions are running.
    await expect(page.locator("#book")).to_have_attribute(
        "data-source", "subscription", timeout=TIMEOUT
    )
    return page, errors


async def submit(page: Page, side: str, price: str, quantity: str, client_id: str = "") -> str:
    """Fill the order form, submit it and return the id the API gave the order."""
    result = page.locator("#place-result")
    previous = await result.get_attribute("data-order-id")
    await page.locator(f'label[for="side-{side}"]').click()
    await page.fill("#price", price)
    await page.fill("#quantity", quantity)
    await page.fill("#client-order-id", client_id)
    await expect(page.locator("#place")).to_have_text(f"{side.title()} {quantity} @ {price}")
    await page.click("#place")
    if previous is None:
        await expect(result).to_have_attribute("data-order-id", re.compile(r"^\d+$"))
    else:
        await expect(result).not_to_have_attribute("data-order-id", previous)
    order_id = await result.get_attribute("data-order-id")
    assert order_id is not None
    await expect(result).to_have_text(f"{side.title()} order #{order_id} placed")
    return order_id


def level(page: Page, side: str, rank: int) -> Locator:
    return page.locator(f'#{side} [data-rank="{rank}"]')


async def expect_level(page: Page, side: str, rank: int, price: str, quantity: str) -> None:
    row = level(page, side, rank)
    await expect(row.locator(".price")).to_have_text(price, timeout=TIMEOUT)
    await expect(row.locator(".qty")).to_have_text(quantity, timeout=TIMEOUT)


def my_order(page: Page, order_id: str) -> Locator:
    return page.locator(f'#my-orders [data-order-id="{order_id}"]')


async def test_trade_modify_cancel_and_errors(
    browser: Browser, base_url: str, ahttp: httpx.AsyncClient
) -> None:
    page, errors = await open_playground(browser, base_url)

    # A resting sell through the form shows up as the best ask.
    sell_id = await submit(page, "sell", "100.50", "5", client_id=f"pw-{uuid.uuid4().hex[:12]}")
    await expect_level(page, "asks", 0, "100.50", "5")
    await expect(page.locator("#spread")).to_contain_text("one-sided")

    # A crossing buy: the trade reaches the tape and the ladder shrinks.
    buy_id = await submit(page, "buy", "100.50", "3")
    started = time.monotonic()
    newest = page.locator("#tape tbody tr").first
    await expect(newest.locator(".price")).to_have_text("100.50", timeout=TIMEOUT)
    await expect(newest.locator(".qty")).to_have_text("3")
    await expect(newest.locator(".tag")).to_have_text("Buy")  # the buy was the aggressor
    await expect(newest.locator(".time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    await expect(newest).to_have_class(re.compile(r"\bmine\b"))
    await expect(page.locator("#last-price")).to_have_text("100.50")
    await expect(page.locator("#chart svg circle")).to_have_count(1)
    await expect_level(page, "asks", 0, "100.50", "2")
    print(f"trade on tape and ladder updated {time.monotonic() - started:.2f}s after the click")

    # My orders: the buy is filled, the sell partially filled and still alive.
    buy_row, sell_row = my_order(page, buy_id), my_order(page, sell_id)
    await expect(buy_row).to_have_attribute("data-state", "filled", timeout=TIMEOUT)
    await expect(buy_row).to_have_attribute("data-alive", "false")
    await expect(buy_row.locator(".o-detail")).to_contain_text("traded 3 · remaining 0")
    await expect(sell_row).to_have_attribute("data-traded", "3", timeout=TIMEOUT)
    await expect(sell_row).to_have_attribute("data-alive", "true")
    await expect(sell_row.locator(".o-status")).to_have_text("partially filled")
    await expect(sell_row.locator(".o-detail")).to_contain_text("client id pw-")

    # Modify the sell's price from My orders.
    await sell_row.locator(".modify-price").fill("100.60")
    await sell_row.locator(".modify").click()
    await expect(sell_row.locator(".result")).to_have_text("Modify: success", timeout=TIMEOUT)
    await expect(sell_row.locator(".o-price")).to_have_text("100.60", timeout=TIMEOUT)
    await expect_level(page, "asks", 0, "100.60", "2")

    # Clicking a level puts its price into the form.
    await level(page, "asks", 0).locator("button").click()
    await expect(page.locator("#price")).to_have_value("100.60")

    # A price off the tick grid is refused by the API and shown inline (modify).
    await sell_row.locator(".modify-price").fill("100.605")
    await sell_row.locator(".modify").click()
    await expect(sell_row.locator(".result")).to_have_text(
        "Modify failed: invalid_input (price must be a multiple of the tick size 0.01)",
        timeout=TIMEOUT,
    )

    # Cancel it.
    await sell_row.locator(".cancel").click()
    await expect(sell_row.locator(".result")).to_have_text("Cancel: success", timeout=TIMEOUT)
    await expect(sell_row).to_have_attribute("data-state", "cancelled", timeout=TIMEOUT)
    await expect(sell_row).to_have_attribute("data-alive", "false")
    await expect(sell_row.locator(".o-detail")).to_contain_text("cancelled 2")
    await expect(level(page, "asks", 0)).to_have_class(re.compile(r"\bempty\b"), timeout=TIMEOUT)

    # A bad price through the form: the API's rejection names the price field, inline.
    orders_before = await page.locator("#my-orders > li").count()
    await page.locator('label[for="side-buy"]').click()
    await page.fill("#price", "10.001")
    await page.fill("#quantity", "7")
    await page.click("#place")
    price_error = page.locator("#price-error")
    await expect(price_error).to_be_visible(timeout=TIMEOUT)
    await expect(price_error).to_have_text("price must be a multiple of the tick size 0.01")
    await expect(page.locator("#price")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#place-result")).to_have_text("Rejected (invalid_input)")
    await expect(page.locator("#quantity-error")).to_be_hidden()
    # A quantity that is no integer is refused by GraphQL itself; still shown on its field.
    await page.fill("#quantity", "1.5")
    await page.click("#place")
    await expect(page.locator("#quantity-error")).to_contain_text("quantity must be a whole number")
    await expect(page.locator("#price-error")).to_be_hidden()  # the Int check comes first
    assert await page.locator("#my-orders > li").count() == orders_before

    # Fixing the fields clears the errors; this buy rests in the book.
    await page.fill("#price", "99.90")
    await expect(price_error).to_be_hidden()
    await expect(page.locator("#price")).not_to_have_attribute("aria-invalid", "true")
    open_id = await submit(page, "buy", "99.90", "7")
    await expect(my_order(page, open_id)).to_have_attribute("data-state", "open", timeout=TIMEOUT)

    # Another trader fills the book and trades at a few prices, for a populated view.
    for price, quantity in [("100.70", 4), ("100.90", 12), ("101.20", 6), ("101.50", 20)]:
        await place(ahttp, -1, price, quantity)
    for price, quantity in [("99.80", 9), ("99.50", 15), ("99.20", 5), ("98.90", 25)]:
        await place(ahttp, 1, price, quantity)
    prices = ["100.10", "100.25", "100.05", "100.40", "100.30", "100.55", "100.45"]
    for i, price in enumerate(prices):
        aggressor = 1 if i % 2 == 0 else -1
        await place(ahttp, -aggressor, price, 2 + i)
        await place(ahttp, aggressor, price, 2 + i)
    await expect(page.locator("#tape tbody tr")).to_have_count(1 + len(prices), timeout=TIMEOUT)
    await expect(page.locator("#tape tbody tr").first.locator(".price")).to_have_text(prices[-1])
    await expect(page.locator("#chart svg polyline")).to_have_count(1)
    await expect_level(page, "asks", 0, "100.70", "4")
    await expect_level(page, "asks", 3, "101.50", "20")
    await expect_level(page, "bids", 0, "99.90", "7")  # the browser's own order
    await expect_level(page, "bids", 4, "98.90", "25")
    await expect(page.locator("#spread")).to_have_text("Spread 0.80 (0.80%)")

    await page.fill("#price", "")
    await page.fill("#quantity", "")
    await page.evaluate("document.activeElement.blur()")
    await page.mouse.move(0, 0)
    await page.wait_for_timeout(1300)  # let the highlight of the newest trade fade

    IMG.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(IMG / "playground.png"), full_page=True)

    # A phone: one column, nothing wider than the screen.
    await page.set_viewport_size(NARROW)
    await expect(page.locator("main.layout")).to_have_css(
        "grid-template-columns", re.compile(r"^\S+$")
    )
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= NARROW["width"] + 1, f"horizontal overflow: {scroll_width}px"
    await page.screenshot(path=str(IMG / "playground-narrow.png"), full_page=True)

    assert errors == []
    await page.close()


async def test_subscriptions_come_back_after_a_dropped_socket(
    browser: Browser, base_url: str, ahttp: httpx.AsyncClient
) -> None:
    page, errors = await open_playground(browser, base_url)
    conn = page.locator("#conn")

    await page.evaluate("window.playground.client.ws.close()")
    await expect(conn).to_have_attribute("data-reconnects", "1", timeout=TIMEOUT)
    await expect(conn).to_have_attribute("data-state", "open")
    await expect(page.locator("#conn-text")).to_have_text("Live")

    # Both subscriptions were re-sent on the new connection.
    await place(ahttp, -1, "100.00", 4)
    await expect_level(page, "asks", 0, "100.00", "4")
    await place(ahttp, 1, "100.00", 4)
    newest = page.locator("#tape tbody tr").first
    await expect(newest.locator(".price")).to_have_text("100.00", timeout=TIMEOUT)
    await expect(newest.locator(".qty")).to_have_text("4")
    await expect(newest.locator(".tag")).to_have_text("Buy")
    await expect(level(page, "asks", 0)).to_have_class(re.compile(r"\bempty\b"), timeout=TIMEOUT)
    assert errors == []
    await page.close()


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


async def offline_page(browser: Browser) -> tuple[Page, list[str]]:
    """A page that can reach this machine only, as on a host without internet; also returns
    the URLs it tried to fetch from anywhere else (each refused)."""
    context = await browser.new_context(viewport=WIDE)
    outside: list[str] = []

    async def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_local)
    page = await context.new_page()
    return page, outside


async def test_graphiql_runs_a_query_offline(
    browser: Browser, base_url: str, ahttp: httpx.AsyncClient
) -> None:
    await place(ahttp, -1, "100.25", 3)
    page, outside = await offline_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base_url}/graphql")
    editor = page.locator(".graphiql-query-editor .CodeMirror")
    await expect(editor).to_be_visible(timeout=TIMEOUT)

    # Type a query over the example, as a person would, and run it.
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await page.keyboard.type("{ orderBook(depth: 3) { asks { price quantity ")
    typed = await editor.evaluate("node => node.CodeMirror.getValue()")
    assert typed.startswith("{ orderBook(depth: 3) { asks { price quantity"), typed
    await page.locator(".graphiql-execute-button").click()
    response = page.locator(".graphiql-response .CodeMirror")
    await expect(response).to_contain_text("100.25", timeout=TIMEOUT)
    answer = json.loads(await response.evaluate("node => node.CodeMirror.getValue()"))
    assert answer == {"data": {"orderBook": {"asks": [{"price": "100.25", "quantity": 3}]}}}

    assert outside == [], f"GraphiQL fetched from outside this machine: {outside}"
    assert errors == []
    await page.context.close()


async def test_openapi_ui_tries_get_orderbook_offline(
    browser: Browser, base_url: str, ahttp: httpx.AsyncClient
) -> None:
    await place(ahttp, 1, "99.75", 6)
    page, outside = await offline_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base_url}/docs")
    operation = page.locator("#operations-default-order_book_orderbook_get")
    await expect(operation).to_be_visible(timeout=TIMEOUT)

    await operation.locator(".opblock-summary").click()
    await operation.get_by_role("button", name="Try it out").click()
    await operation.locator('input[placeholder="depth"]').fill("2")
    await operation.get_by_role("button", name="Execute").click()
    answer = operation.locator(".live-responses-table tr.response")
    await expect(answer.locator(".response-col_status")).to_have_text("200", timeout=TIMEOUT)
    body = json.loads(await answer.locator(".response-col_description pre").first.inner_text())
    assert body["bids"] == [{"price": 99.75, "quantity": 6}], body
    assert body["asks"] == []
    await expect(operation.locator(".request-url pre")).to_contain_text("/orderbook?depth=2")

    assert outside == [], f"the OpenAPI UI fetched from outside this machine: {outside}"
    assert errors == []
    await page.context.close()
