"""The web playground in a real browser (Debian's Chromium driven by Playwright) against the
real stack: the recent trades and the candles are there when it opens; trade through the form
(limit and market, GTC/IOC/FOK), watch the tape, the ladder, the candles, "my orders" and "my
fills" (the private order feed) follow; change price and quantity, cancel; see every invalid
field at once in a trader's words; catch up after a dropped WebSocket; fit on a phone.
GraphiQL and the OpenAPI UI run a query each with every request off this machine refused.

The screenshots in docs/img/ are taken here, after trades, so they show a populated view.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import (
    Browser,
    Locator,
    Page,
    Route,
    ViewportSize,
    async_playwright,
    expect,
)

from tests.conftest import running_stack

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
WIDE: ViewportSize = {"width": 1280, "height": 860}
NARROW: ViewportSize = {"width": 390, "height": 844}


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
    context = await browser.new_context(viewport=WIDE)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"{base_url}/")
    await loaded(page)
    return page, errors


async def loaded(page: Page) -> None:
    """The page has loaded its history (tape, candles) and its subscriptions are live."""
    await expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=TIMEOUT)
    # A snapshot from the orderBook subscription proves the subscriptions are running.
    await expect(page.locator("#book")).to_have_attribute(
        "data-source", "subscription", timeout=TIMEOUT
    )
    await expect(page.locator("#tape")).to_have_attribute("data-loaded", re.compile(r"^\d+$"))
    await expect(page.locator("#chart")).to_have_attribute("data-state", "live")


async def submit(
    page: Page,
    side: str,
    price: str | None,
    quantity: str,
    client_id: str = "",
    tif: str = "GTC",
) -> str:
    """Fill the order form (price None: a market order), submit it and return the id the
    API gave the order."""
    result = page.locator("#place-result")
    previous = await result.get_attribute("data-order-id")
    await page.locator(f'label[for="side-{side}"]').click()
    await page.locator(f'label[for="type-{"market" if price is None else "limit"}"]').click()
    if price is not None:
        await page.fill("#price", price)
    await page.fill("#quantity", quantity)
    await page.select_option("#tif", tif)
    await page.fill("#client-order-id", client_id)
    if price is None:
        label = f"{side.title()} {quantity} at market ({tif})"
    else:
        label = f"{side.title()} {quantity} @ {price}{'' if tif == 'GTC' else ' ' + tif}"
    await expect(page.locator("#place")).to_have_text(label)
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


def my_fills(page: Page, order_id: str) -> Locator:
    return page.locator(f'#fills tbody tr[data-order-id="{order_id}"]')


async def expect_fill(fill: Locator, price: str, quantity: str, left: str) -> None:
    await expect(fill.locator(".price")).to_have_text(price, timeout=TIMEOUT)
    await expect(fill.locator(".qty")).to_have_text(quantity)
    await expect(fill.locator(".left")).to_have_text(left)


async def newest_trades(client: httpx.AsyncClient, limit: int) -> list[dict[str, Any]]:
    response = await client.get("/trades", params={"order": "desc", "limit": limit})
    assert response.status_code == 200, response.text
    trades: list[dict[str, Any]] = response.json()
    return trades


def utc(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp).astimezone(UTC)


async def test_trade_modify_cancel_and_errors(
    browser: Browser, base_url: str, ahttp: httpx.AsyncClient
) -> None:
    page, errors = await open_playground(browser, base_url)
    await expect(page.locator("#tick-hint")).to_have_text("· tick 0.01")

    # A resting sell through the form shows up as the best ask.
    sell_id = await submit(page, "sell", "100.50", "5", client_id=f"pw-{uuid.uuid4().hex[:12]}")
    await expect_level(page, "asks", 0, "100.50", "5")
    await expect(page.locator("#spread")).to_contain_text("one-sided")

    # A crossing buy: the trade reaches the tape, the chart and my fills; the ladder shrinks.
    buy_id = await submit(page, "buy", "100.50", "3")
    started = time.monotonic()
    newest = page.locator("#tape tbody tr").first
    await expect(newest.locator(".price")).to_have_text("100.50", timeout=TIMEOUT)
    await expect(newest.locator(".qty")).to_have_text("3")
    await expect(newest.locator(".tag")).to_have_text("Buy")  # the buy was the aggressor
    await expect(newest.locator(".time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    await expect(newest).to_have_class(re.compile(r"\bmine\b"))
    await expect(page.locator("#last-price")).to_have_text("100.50")
    await expect(page.locator("#chart g.candle").last).to_have_attribute(
        "data-close", "100.5", timeout=TIMEOUT
    )
    await expect_level(page, "asks", 0, "100.50", "2")
    print(f"trade on tape and ladder updated {time.monotonic() - started:.2f}s after the click")
    # Both sides were this browser's: one fill each, from the private order feed.
    await expect_fill(my_fills(page, buy_id), "100.50", "3", "0")
    await expect_fill(my_fills(page, sell_id), "100.50", "3", "2")

    # My orders: the buy is filled, the sell partially filled and still alive.
    buy_row, sell_row = my_order(page, buy_id), my_order(page, sell_id)
    await expect(buy_row).to_have_attribute("data-state", "filled", timeout=TIMEOUT)
    await expect(buy_row).to_have_attribute("data-alive", "false")
    await expect(buy_row.locator(".o-detail")).to_contain_text("traded 3 · remaining 0")
    await expect(buy_row.locator(".o-kind")).to_have_text("Limit GTC")
    await expect(sell_row).to_have_attribute("data-traded", "3", timeout=TIMEOUT)
    await expect(sell_row).to_have_attribute("data-alive", "true")
    await expect(sell_row.locator(".o-status")).to_have_text("partially filled")
    await expect(sell_row.locator(".o-detail")).to_contain_text("client id pw-")

    # Modify the sell's price from My orders.
    await sell_row.locator(".modify-price").fill("100.60")
    await sell_row.locator(".modify").click()
    await expect(sell_row.locator(".result")).to_have_text(
        "Modified: price 100.60", timeout=TIMEOUT
    )
    await expect(sell_row.locator(".o-price")).to_have_text("100.60", timeout=TIMEOUT)
    await expect_level(page, "asks", 0, "100.60", "2")

    # Clicking a level puts its price into the form.
    await level(page, "asks", 0).locator("button").click()
    await expect(page.locator("#price")).to_have_value("100.60")

    # A price off the tick grid and a quantity of zero: both refused in the page, at once.
    await sell_row.locator(".modify-price").fill("100.605")
    await sell_row.locator(".modify-quantity").fill("0")
    await sell_row.locator(".modify").click()
    await expect(sell_row.locator(".result")).to_have_text(
        "Price must be in steps of 0.01 (tick size) · Quantity must be at least 1"
    )
    await expect(sell_row.locator(".modify-price")).to_have_attribute("aria-invalid", "")
    await expect(sell_row.locator(".modify-quantity")).to_have_attribute("aria-invalid", "")

    # Cancel it.
    await sell_row.locator(".cancel").click()
    await expect(sell_row.locator(".result")).to_have_text("Cancelled", timeout=TIMEOUT)
    await expect(sell_row).to_have_attribute("data-state", "cancelled", timeout=TIMEOUT)
    await expect(sell_row).to_have_attribute("data-alive", "false")
    await expect(sell_row.locator(".o-detail")).to_contain_text("cancelled 2")
    await expect(level(page, "asks", 0)).to_have_class(re.compile(r"\bempty\b"), timeout=TIMEOUT)

    # Every invalid field at once, in a trader's words, and nothing is sent.
    sent: list[str] = []
    page.on(
        "request",
        lambda r: sent.append(r.post_data or "") if "placeOrder" in (r.post_data or "") else None,
    )
    orders_before = await page.locator("#my-orders > li").count()
    await page.locator('label[for="side-buy"]').click()
    await page.fill("#price", "100.005")
    await page.fill("#quantity", "1.5")
    await page.click("#place")
    price_error, quantity_error = page.locator("#price-error"), page.locator("#quantity-error")
    await expect(price_error).to_have_text("Price must be in steps of 0.01 (tick size)")
    await expect(quantity_error).to_have_text("Quantity must be a whole number of units")
    await expect(page.locator("#form-errors")).to_have_text("2 fields to fix: Price, Quantity.")
    await expect(page.locator("#price")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#quantity")).to_have_attribute("aria-invalid", "true")
    # A market order refuses GTC in the page too; the price field is not used.
    await page.locator('label[for="type-market"]').click()
    await expect(page.locator("#price")).to_be_disabled()
    await expect(page.locator("#tif")).to_have_value("IOC")
    await page.fill("#quantity", "-3")
    await page.click("#place")
    await expect(quantity_error).to_have_text("Quantity must be at least 1")
    await expect(price_error).to_be_hidden()
    await expect(page.locator("#form-errors")).to_have_text("Check quantity before sending.")
    assert sent == [], "an order with invalid fields was sent"
    assert await page.locator("#my-orders > li").count() == orders_before

    # Fixing the fields clears the errors; this buy rests in the book.
    await page.locator('label[for="type-limit"]').click()
    await page.fill("#price", "99.90")
    await expect(price_error).to_be_hidden()
    await expect(page.locator("#price")).not_to_have_attribute("aria-invalid", "true")
    open_id = await submit(page, "buy", "99.90", "7")
    await expect(page.locator("#form-errors")).to_be_hidden()
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
    await expect(page.locator("#tape tbody tr").first.locator(".price")).to_have_text(
        prices[-1], timeout=TIMEOUT
    )
    await expect_level(page, "asks", 0, "100.70", "4")
    await expect_level(page, "asks", 3, "101.50", "20")
    await expect_level(page, "bids", 0, "99.90", "7")  # the browser's own order
    await expect_level(page, "bids", 4, "98.90", "25")
    await expect(page.locator("#spread")).to_have_text("Spread 0.80 (0.80%)")
    await expect(page.locator("#chart g.candle").last).to_have_attribute(
        "data-close", "100.45", timeout=TIMEOUT
    )

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
    await page.context.close()


async def test_recent_trades_and_candles_are_there_on_open(
    browser: Browser, base_url: str, ahttp: httpx.AsyncClient
) -> None:
    for i, price in enumerate(["101.10", "101.30", "100.90", "101.20"]):
        await place(ahttp, -1, price, 2 + i)
        await place(ahttp, 1, price, 2 + i)
    page, errors = await open_playground(browser, base_url)

    # The tape holds the newest trades, newest first, before any trade happens.
    rows = page.locator("#tape tbody tr")
    expected = await newest_trades(ahttp, 50)
    await expect(rows).to_have_count(len(expected))
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.tradeId)") == [
        t["trade_id"] for t in expected
    ]
    await expect(rows.first.locator(".price")).to_have_text("101.20")
    await expect(page.locator("#last-price")).to_have_text("101.20")

    # The chart's newest candle is the OHLCV of every trade in its minute.
    newest = page.locator("#chart g.candle").last
    start = utc(await newest.get_attribute("data-start") or "")
    bucket = await ahttp.get(
        "/trades",
        params={
            "since": start.isoformat(),
            "until": (start + timedelta(seconds=60) - timedelta(microseconds=1)).isoformat(),
            "limit": 1000,
        },
    )
    trades = bucket.json()
    assert trades and trades[-1]["trade_id"] == expected[0]["trade_id"], trades
    prices = [Decimal(str(t["trade_price"])) for t in trades]
    assert Decimal(await newest.get_attribute("data-open") or "") == prices[0]
    assert Decimal(await newest.get_attribute("data-high") or "") == max(prices)
    assert Decimal(await newest.get_attribute("data-low") or "") == min(prices)
    assert Decimal(await newest.get_attribute("data-close") or "") == prices[-1]
    assert await newest.get_attribute("data-volume") == str(sum(t["quantity"] for t in trades))

    # Another interval reloads the chart: one hour holds at least that minute's trades.
    await page.locator('label[for="interval-1h"]').click()
    await expect(page.locator("#chart")).to_have_attribute("data-interval", "1h")
    await expect(page.locator("#chart")).to_have_attribute("data-state", "live")
    hour = page.locator("#chart g.candle").last
    assert int(await hour.get_attribute("data-volume") or "0") >= sum(t["quantity"] for t in trades)
    assert errors == []
    await page.context.close()


async def test_market_ioc_fok_quantity_change_and_own_fills(
    browser: Browser, base_url: str, ahttp: httpx.AsyncClient
) -> None:
    page, errors = await open_playground(browser, base_url)
    await place(ahttp, -1, "101.00", 3)
    await place(ahttp, -1, "101.50", 2)

    # A market buy of 6, IOC: it takes both asks (5) and the rest is cancelled.
    market_id = await submit(page, "buy", None, "6", tif="IOC")
    row = my_order(page, market_id)
    await expect(row).to_have_attribute("data-state", "cancelled", timeout=TIMEOUT)
    await expect(row.locator(".o-status")).to_have_text("part filled, rest cancelled")
    await expect(row.locator(".o-kind")).to_have_text("Market IOC")
    await expect(row.locator(".o-price")).to_have_text("market")
    await expect(row.locator(".o-detail")).to_contain_text("traded 5 · remaining 0 · cancelled 1")
    fills = my_fills(page, market_id)
    await expect(fills).to_have_count(2, timeout=TIMEOUT)
    await expect_fill(fills.nth(0), "101.50", "2", "1")  # newest first
    await expect_fill(fills.nth(1), "101.00", "3", "3")
    await expect(level(page, "asks", 0)).to_have_class(re.compile(r"\bempty\b"), timeout=TIMEOUT)

    # A market order with nothing to trade against is refused, in words.
    await page.locator('label[for="side-sell"]').click()
    await page.fill("#quantity", "2")
    await page.click("#place")
    await expect(page.locator("#place-result")).to_have_attribute(
        "data-reason", "no_liquidity", timeout=TIMEOUT
    )
    await expect(page.locator("#place-result")).to_contain_text(
        "the other side of the book is empty"
    )

    # FOK: 4 wanted, 2 on offer at the limit: nothing trades.
    await place(ahttp, -1, "102.00", 2)
    fok_id = await submit(page, "buy", "102.00", "4", tif="FOK")
    fok = my_order(page, fok_id)
    await expect(fok).to_have_attribute("data-state", "cancelled", timeout=TIMEOUT)
    await expect(fok.locator(".o-kind")).to_have_text("Limit FOK")
    await expect(fok.locator(".o-detail")).to_contain_text("traded 0 · remaining 0 · cancelled 4")
    await expect_level(page, "asks", 0, "102.00", "2")

    # A resting buy whose quantity changes from My orders.
    bid_id = await submit(page, "buy", "99.00", "7")
    bid = my_order(page, bid_id)
    await expect(bid).to_have_attribute("data-state", "open", timeout=TIMEOUT)
    await expect(bid.locator(".modify-quantity")).to_have_value("7")
    await bid.locator(".modify-quantity").fill("4")
    await bid.locator(".modify").click()
    await expect(bid.locator(".result")).to_have_text("Modified: quantity 4", timeout=TIMEOUT)
    await expect(bid).to_have_attribute("data-quantity", "4", timeout=TIMEOUT)
    await expect(bid.locator(".o-qty")).to_have_text("4")
    await expect_level(page, "bids", 0, "99.00", "4")

    # Another trader sells into it: my fill arrives on the private feed.
    await place(ahttp, -1, "99.00", 3)
    await expect_fill(my_fills(page, bid_id), "99.00", "3", "1")
    await expect(bid).to_have_attribute("data-traded", "3", timeout=TIMEOUT)
    # The quantity cannot go to what is already traded: the API says so, in words.
    await bid.locator(".modify-quantity").fill("3")
    await bid.locator(".modify").click()
    await expect(bid.locator(".result")).to_have_text(
        "Modify refused: The new quantity must be above the 3 already traded.", timeout=TIMEOUT
    )

    # Fills made while the page is closed arrive when it opens again (the feed resumes).
    context = page.context
    await page.close()
    await place(ahttp, -1, "99.00", 1)
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base_url}/")
    await loaded(page)
    await expect(my_fills(page, bid_id)).to_have_count(2, timeout=TIMEOUT)
    await expect_fill(my_fills(page, bid_id).first, "99.00", "1", "0")
    await expect(my_fills(page, market_id)).to_have_count(2)  # remembered from before
    await expect(my_order(page, bid_id)).to_have_attribute("data-state", "filled", timeout=TIMEOUT)
    assert errors == []
    await page.context.close()


async def test_with_api_keys_the_page_trades_and_sees_fills_as_its_key(
    browser: Browser, tmp_path: Path
) -> None:
    keys = {"alice": "alice-secret", "bob": "bob-secret"}
    spec = ",".join(f"{n}:{hashlib.sha256(k.encode()).hexdigest()}" for n, k in keys.items())
    with running_stack(tmp_path, AUTH_MODE="api_key", API_KEYS=spec) as stack:
        base_url = stack.api_url(stack.api_ports[0])
        page, errors = await open_playground(browser, base_url)
        await page.locator('label[for="side-sell"]').click()
        await page.fill("#price", "100.00")
        await page.fill("#quantity", "5")
        await page.click("#place")
        await expect(page.locator("#place-result")).to_have_text(
            "This exchange needs an API key to trade: enter yours at the top of the page.",
            timeout=TIMEOUT,
        )

        await page.fill("#api-key", keys["alice"])
        await page.locator("#api-key").press("Enter")
        await page.locator("#api-key").blur()  # "change": the socket reconnects with the key
        await expect(page.locator("#conn")).to_have_attribute("data-reconnects", "1")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "open")
        sell_id = await submit(page, "sell", "100.00", "5")
        await expect(my_order(page, sell_id)).to_have_attribute("data-state", "open")

        # Bob buys 2 over REST: Alice's private feed brings her the fill.
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as bob:
            response = await bob.post(
                "/orders",
                json={"side": 1, "price": "100.00", "quantity": 2},
                headers={"X-API-Key": keys["bob"]},
            )
            assert response.status_code == 201, response.text
        await expect_fill(my_fills(page, sell_id), "100.00", "2", "3")
        await expect(my_order(page, sell_id)).to_have_attribute("data-traded", "2")
        assert errors == []
        await page.context.close()


async def test_subscriptions_come_back_after_a_dropped_socket(
    browser: Browser, base_url: str, ahttp: httpx.AsyncClient
) -> None:
    page, errors = await open_playground(browser, base_url)
    conn = page.locator("#conn")

    # Offline, the socket drops and cannot come back; meanwhile two trades happen.
    await page.context.set_offline(True)
    await page.evaluate("window.playground.client.ws.close()")
    await expect(conn).to_have_attribute("data-state", "reconnecting", timeout=TIMEOUT)
    for price in ("100.20", "100.30"):
        await place(ahttp, -1, price, 1)
        await place(ahttp, 1, price, 1)
    await page.context.set_offline(False)
    await page.evaluate("window.playground.client.retryNow()")
    await expect(conn).to_have_attribute("data-reconnects", "1", timeout=TIMEOUT)
    await expect(conn).to_have_attribute("data-state", "open")
    await expect(page.locator("#conn-text")).to_have_text("Live")
    # The trades feed resumed after the last trade it had: the missed trades, once each.
    rows = page.locator("#tape tbody tr")
    await expect(rows.nth(0).locator(".price")).to_have_text("100.30", timeout=TIMEOUT)
    await expect(rows.nth(1).locator(".price")).to_have_text("100.20")
    ids = await rows.evaluate_all("rows => rows.map(r => r.dataset.tradeId)")
    assert len(ids) == len(set(ids)), "a trade was shown twice"

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
    await page.context.close()


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


async def open_graphiql(browser: Browser, base_url: str) -> tuple[Page, list[str], list[str]]:
    """GraphiQL on an offline page, its query editor shown; the page, the URLs it tried
    outside this machine, and the page's script errors (both lists filled as it runs)."""
    page, outside = await offline_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base_url}/graphql")
    await expect(page.locator(GRAPHIQL_EDITOR)).to_be_visible(timeout=TIMEOUT)
    return page, outside, errors


GRAPHIQL_EDITOR = ".graphiql-query-editor .CodeMirror"


async def test_graphiql_runs_a_query_offline(
    browser: Browser, base_url: str, ahttp: httpx.AsyncClient
) -> None:
    await place(ahttp, -1, "100.25", 3)
    page, outside, errors = await open_graphiql(browser, base_url)
    editor = page.locator(GRAPHIQL_EDITOR)

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


async def test_graphiql_subscriptions_send_the_key_from_its_headers(
    browser: Browser, tmp_path: Path
) -> None:
    """With API keys on, the key put in GraphiQL's Headers editor reaches the subscriptions
    too (GraphiQL sends those headers as the WebSocket's connection_init payload): Alice's
    private order feed, resumed from the start, brings her the order she placed."""
    key = "alice-secret"
    spec = f"alice:{hashlib.sha256(key.encode()).hexdigest()}"
    with running_stack(tmp_path, AUTH_MODE="api_key", API_KEYS=spec) as stack:
        base_url = stack.api_url(stack.api_ports[0])
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as alice:
            placed = await alice.post(
                "/orders",
                json={"side": 1, "price": "10", "quantity": 1},
                headers={"X-API-Key": key},
            )
            assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]

        page, outside, errors = await open_graphiql(browser, base_url)
        editor = page.locator(GRAPHIQL_EDITOR)
        await page.get_by_role("button", name="Headers").click()
        headers = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror")
        await headers.click()
        await page.keyboard.type(json.dumps({"X-API-Key": key}))
        query = (
            'subscription { orderUpdates(after: "0") { ... on OrderAcceptedEvent { orderId } } }'
        )
        await editor.evaluate("(node, query) => node.CodeMirror.setValue(query)", query)
        # GraphiQL parses an edit (and sees a subscription, which it sends over the
        # WebSocket) 100 ms later, in the handler that also stores the query.
        await page.wait_for_function("q => localStorage.getItem('graphiql:query') === q", arg=query)
        await page.locator(".graphiql-execute-button").click()
        response = page.locator(".graphiql-response .CodeMirror")
        await expect(response).to_contain_text('"orderUpdates"', timeout=TIMEOUT)
        answer = json.loads(await response.evaluate("node => node.CodeMirror.getValue()"))
        assert answer == {"data": {"orderUpdates": {"orderId": order_id}}}
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
