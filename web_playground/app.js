// The playground: order entry, live book, trade tape, candlestick chart, "my orders" and "my
// fills", all over GraphQL (queries and mutations by HTTP POST, subscriptions over
// graphql-transport-ws). The tape, the chart and the fills are loaded when the page opens and
// then followed by feeds that resume after the last item seen, so neither a page load nor a
// dropped socket leaves a gap.

import { CANDLE_INTERVALS, INTERVALS, candleOf, drawCandles } from "./chart.js";
import { $, decSub, el, fmtPrice, fmtQty, fmtTime, sideClass, sideName } from "./format.js";
import { GraphQLWsClient } from "./gql-ws.js";
import {
  BOOK_QUERY,
  BOOK_SUB,
  CANCEL,
  CANDLES,
  CANDLES_SUB,
  INSTRUMENTS,
  MODIFY,
  ORDER_FIELDS,
  ORDER_UPDATES,
  PLACE,
  RECENT_TRADES,
  TRADES_SUB,
  auth,
  gql,
  graphqlFieldErrors,
} from "./graphql.js";
import { LABELS, checkChange, checkOrder, fieldMessage, reasonMessage } from "./validate.js";

const LEVELS = 5; // ladder depth per side
const TAPE_MAX = 50; // trades loaded at start and kept on the tape
const CANDLES_MAX = 240; // candles loaded per interval
const ORDERS_MAX = 100; // order ids remembered in localStorage
const FILLS_MAX = 50; // fills kept (and remembered)
const RECENT_EVENTS = 500; // order-feed fills kept until their order's id is known
const STORAGE_KEY = "exchange-playground:orders";
const FILLS_KEY = "exchange-playground:fills";
const KEY_STORAGE = "exchange-playground:api-key"; // per tab: sessionStorage
const STALE_BOOK_MS = 3500;

/** The default instrument and its limits (tick size...), from the `instruments` query. */
const market = { instrument: null };

// -- connection status ----------------------------------------------------------------------

const conn = { state: "connecting", retryAt: 0, wasOpen: false, reconnects: 0 };

function renderConn() {
  const box = $("#conn");
  box.dataset.state = conn.state;
  let text = "Connecting…";
  if (conn.state === "open") text = "Live";
  else if (conn.state === "reconnecting") {
    const secs = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
    text = secs > 0 ? `Offline · retrying in ${secs}s` : "Offline · retrying…";
  } else if (conn.state === "closed") text = "Closed";
  $("#conn-text").textContent = text;
}

try {
  auth.apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
} catch {
  /* storage disabled */
}

const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
const client = new GraphQLWsClient(wsUrl, {
  connectionParams: () => (auth.apiKey ? { apiKey: auth.apiKey } : {}),
  onStatus(status) {
    conn.state = status.state;
    if (status.state === "reconnecting") conn.retryAt = Date.now() + status.inMs;
    if (status.state === "open") {
      if (conn.wasOpen) {
        conn.reconnects += 1;
        $("#conn").dataset.reconnects = String(conn.reconnects);
        // The resumable feeds catch up by themselves; the book and the orders are re-read.
        loadBook();
        refreshOrders();
      }
      conn.wasOpen = true;
    }
    renderConn();
  },
});
window.addEventListener("online", () => client.retryNow());

/**
 * A subscription that comes back if the server ends it (e.g. after dropping a slow client).
 * `variables` is a function, called at every (re)subscribe: a resumable feed passes the
 * cursor it has reached.
 */
function live(query, variables, onData) {
  let stop = null;
  let stopped = false;
  const start = () => {
    if (stopped) return;
    stop = client.subscribe(() => ({ query, variables: variables() }), {
      next(payload) {
        if (payload.data) onData(payload.data);
        if (payload.errors) console.warn("subscription errors", JSON.stringify(payload.errors));
      },
      error(errors) {
        console.warn("subscription failed", JSON.stringify(errors));
        setTimeout(start, 2000);
      },
      complete() {
        setTimeout(start, 500);
      },
    });
  };
  start();
  return () => {
    stopped = true;
    stop?.();
  };
}

const symbol = () => market.instrument?.symbol ?? null;

// -- order book ---------------------------------------------------------------------------

const book = { seq: null, receivedAt: 0, source: "" }; // seq: the last `sequence` shown

function buildLadder() {
  for (const side of ["asks", "bids"]) {
    const list = $(`#${side}`);
    // Asks are listed worst first so that the best ask sits next to the spread.
    const ranks = [...Array(LEVELS).keys()];
    if (side === "asks") ranks.reverse();
    for (const rank of ranks) {
      const button = el(
        "button",
        { type: "button", class: "ladder-row level-btn", disabled: true },
        el("span", { class: "bar", "aria-hidden": "true" }),
        el("span", { class: "price", text: "—" }),
        el("span", { class: "qty" }),
        el("span", { class: "total" }),
      );
      button.addEventListener("click", () => usePrice(button.closest("li").dataset.price));
      list.append(el("li", { class: "level", "data-rank": String(rank) }, button));
    }
  }
}

function renderSide(side, levels, maxQty) {
  let total = 0;
  for (let rank = 0; rank < LEVELS; rank++) {
    const li = $(`#${side} [data-rank="${rank}"]`);
    const button = li.firstChild;
    const level = levels[rank];
    if (!level) {
      delete li.dataset.price;
      li.classList.add("empty");
      button.disabled = true;
      button.removeAttribute("aria-label");
      $(".price", button).textContent = "—";
      $(".qty", button).textContent = "";
      $(".total", button).textContent = "";
      $(".bar", button).style.width = "0";
      continue;
    }
    total += level.quantity;
    li.dataset.price = level.price;
    li.classList.remove("empty");
    button.disabled = false;
    const price = fmtPrice(level.price);
    button.setAttribute("aria-label", `${side === "asks" ? "Ask" : "Bid"} ${price}, quantity ${level.quantity}`);
    $(".price", button).textContent = price;
    $(".qty", button).textContent = fmtQty(level.quantity);
    $(".total", button).textContent = fmtQty(total);
    $(".bar", button).style.width = `${((level.quantity / maxQty) * 100).toFixed(1)}%`;
  }
}

function renderBook(data, source) {
  // A query answer may be older than a snapshot already shown; subscriptions always win.
  if (source === "query" && book.seq !== null && newer(book.seq, data.sequence)) return;
  book.seq = data.sequence;
  book.receivedAt = Date.now();
  book.source = source;
  const bids = data.bids.slice(0, LEVELS);
  const asks = data.asks.slice(0, LEVELS);
  const maxQty = Math.max(1, ...bids.map((l) => l.quantity), ...asks.map((l) => l.quantity));
  renderSide("bids", bids, maxQty);
  renderSide("asks", asks, maxQty);
  const spread = $("#spread");
  if (bids.length && asks.length) {
    const diff = decSub(asks[0].price, bids[0].price);
    const mid = (Number(asks[0].price) + Number(bids[0].price)) / 2;
    const pct = mid > 0 ? ` (${((Number(diff) / mid) * 100).toFixed(2)}%)` : "";
    spread.textContent = `Spread ${fmtPrice(diff)}${pct}`;
  } else {
    spread.textContent = bids.length || asks.length ? "Spread — (one-sided book)" : "Empty book";
  }
  const ladder = $("#book");
  ladder.dataset.seq = data.sequence;
  ladder.dataset.source = source;
  renderBookAge();
}

function renderBookAge() {
  const label = $("#book-updated");
  if (!book.receivedAt) return;
  const stale = Date.now() - book.receivedAt > STALE_BOOK_MS;
  label.classList.toggle("stale", stale);
  label.textContent = `${stale ? "stale · " : ""}seq ${book.seq} · ${fmtTime(new Date(book.receivedAt))}`;
}

async function loadBook() {
  try {
    const { data } = await gql(BOOK_QUERY, { depth: LEVELS, symbol: symbol() });
    if (data?.orderBook) renderBook(data.orderBook, "query");
    return data?.orderBook ?? null;
  } catch (err) {
    console.warn("book query failed", err);
    return null;
  }
}

// -- trades: the tape ---------------------------------------------------------------------

/** newestId: the last trade id on the tape, where the trades feed resumes. */
const tape = { newestId: null, live: 0, lastPrice: null };

const newer = (a, b) => b === null || BigInt(a) > BigInt(b);

function addTrade(trade, { fresh }) {
  if (!newer(trade.tradeId, tape.newestId)) return; // already shown (a resumed feed's overlap)
  tape.newestId = trade.tradeId;
  const previous = tape.lastPrice;
  tape.lastPrice = trade.tradePrice;
  let tick = "";
  if (previous !== null) {
    const diff = Number(trade.tradePrice) - Number(previous);
    tick = diff > 0 ? "up" : diff < 0 ? "down" : "";
  }
  const mine = myOrders.has(trade.bidOrderId) || myOrders.has(trade.askOrderId);
  const row = el(
    "tr",
    {
      class: `${mine ? "mine" : ""}${fresh ? " fresh" : ""}`,
      "data-trade-id": trade.tradeId,
      "data-bid-order-id": trade.bidOrderId,
      "data-ask-order-id": trade.askOrderId,
    },
    el("td", { class: "time", text: fmtTime(trade.timestamp) }),
    el("td", {}, el("span", { class: `tag ${sideClass(trade.aggressorSide)}`, text: sideName(trade.aggressorSide) })),
    el("td", { class: `num price ${tick}`, text: fmtPrice(trade.tradePrice) }),
    el("td", { class: "num qty", text: fmtQty(trade.quantity) }),
  );
  if (mine) row.title = "one of your orders traded";
  const body = $("#tape tbody");
  body.prepend(row);
  while (body.rows.length > TAPE_MAX) body.deleteRow(-1);
  if (fresh) {
    setTimeout(() => row.classList.remove("fresh"), 1200);
    tape.live += 1;
  }
  const last = $("#last-price");
  last.textContent = fmtPrice(trade.tradePrice);
  last.className = `last-price ${tick}`;
}

function renderTapeCount() {
  const shown = $("#tape tbody").rows.length;
  $("#tape-count").textContent = shown
    ? `newest first · ${tape.live} since page load`
    : "none yet";
}

/** The newest trades, then every trade after the newest of them, live. */
async function startTrades() {
  let loaded = false;
  try {
    const { data, errors } = await gql(RECENT_TRADES, { last: TAPE_MAX, symbol: symbol() });
    if (errors) console.warn("recent trades", errors);
    const nodes = [...(data?.trades?.nodes ?? [])];
    nodes.sort((a, b) => (BigInt(a.tradeId) < BigInt(b.tradeId) ? -1 : 1));
    for (const trade of nodes) addTrade(trade, { fresh: false });
    $("#tape").dataset.loaded = String(nodes.length);
    loaded = !errors;
  } catch (err) {
    console.warn("recent trades failed", err);
  }
  renderTapeCount();
  // After the newest trade shown; "0" (from the first) when the store had none; live only
  // when the history could not be read (not every trade since the exchange began).
  const after = () => tape.newestId ?? (loaded ? "0" : null);
  live(TRADES_SUB, () => ({ after: after(), symbol: symbol() }), (data) => {
    addTrade(data.trades, { fresh: true });
    renderTapeCount();
  });
}

// -- candles ------------------------------------------------------------------------------

const chart = { interval: "1m", candles: [], stop: null, generation: 0 };

/** A candle's newest state: a state with fewer trades than the one shown is an older one. */
function upsertCandle(candle) {
  const list = chart.candles;
  let i = list.length;
  while (i > 0 && list[i - 1].start > candle.start) i -= 1;
  if (i > 0 && list[i - 1].start === candle.start) {
    if (candle.count >= list[i - 1].count) list[i - 1] = candle;
  } else list.splice(i, 0, candle);
  if (list.length > CANDLES_MAX) list.splice(0, list.length - CANDLES_MAX);
}

function renderChart() {
  drawCandles($("#chart"), chart.candles, INTERVALS[chart.interval]);
  $("#chart").dataset.interval = chart.interval;
}

/**
 * The candles of the chosen interval, then each candle as trades change it. The subscription
 * starts first and its candles wait for the query's: a change made between the two is in one
 * or the other, and `upsertCandle` keeps the newer state of each.
 */
async function startCandles() {
  chart.stop?.();
  const generation = ++chart.generation;
  const interval = chart.interval;
  const seconds = INTERVALS[interval];
  const since = new Date(Date.now() - CANDLES_MAX * seconds * 1000).toISOString();
  const waiting = [];
  let loaded = false;
  $("#chart").dataset.state = "loading";
  chart.stop = live(
    CANDLES_SUB,
    () => ({ interval: CANDLE_INTERVALS[interval], symbol: symbol() }),
    (data) => {
      if (generation !== chart.generation) return;
      const candle = candleOf(data.candles);
      if (!loaded) return void waiting.push(candle);
      upsertCandle(candle);
      renderChart();
    },
  );
  let candles = [];
  try {
    const variables = { interval: CANDLE_INTERVALS[interval], since, symbol: symbol() };
    const { data, errors } = await gql(CANDLES, variables);
    if (errors) console.warn("candles", errors);
    candles = (data?.candles ?? []).map(candleOf);
  } catch (err) {
    console.warn("candles failed", err);
  }
  if (generation !== chart.generation) return; // another interval was chosen meanwhile
  chart.candles = candles;
  waiting.forEach(upsertCandle);
  loaded = true;
  renderChart();
  $("#chart").dataset.state = "live";
}

for (const input of document.querySelectorAll('#intervals input[name="interval"]')) {
  input.addEventListener("change", () => {
    chart.interval = input.value;
    startCandles();
  });
}

// -- order entry --------------------------------------------------------------------------

const form = $("#order-form");
const FIELDS = {
  side: "side-field",
  type: "type-field",
  price: "price",
  quantity: "quantity",
  timeInForce: "tif",
  clientOrderId: "client-order-id",
};

function ticket() {
  return {
    side: Number(form.elements.side.value),
    type: form.elements.type.value,
    price: $("#price").value.trim(),
    quantity: $("#quantity").value.trim(),
    timeInForce: $("#tif").value,
    clientOrderId: $("#client-order-id").value,
  };
}

function renderTicket() {
  const t = ticket();
  const isMarket = t.type === "MARKET";
  const price = $("#price");
  price.disabled = isMarket;
  price.placeholder = isMarket ? "at the best prices available" : "100.00";
  if (isMarket) clearFieldError("price");
  const gtc = $('#tif option[value="GTC"]');
  gtc.disabled = isMarket;
  if (isMarket && t.timeInForce === "GTC") $("#tif").value = "IOC";
  const button = $("#place");
  button.className = `primary ${sideClass(t.side)}`;
  const tif = $("#tif").value;
  if (isMarket) {
    button.textContent = t.quantity ? `${sideName(t.side)} ${t.quantity} at market (${tif})` : sideName(t.side);
  } else {
    const suffix = tif === "GTC" ? "" : ` ${tif}`;
    button.textContent = t.quantity && t.price ? `${sideName(t.side)} ${t.quantity} @ ${t.price}${suffix}` : sideName(t.side);
  }
}

function clearFieldError(field) {
  const message = $(`#${field}-error`);
  if (message) {
    message.hidden = true;
    message.textContent = "";
  }
  $(`#${FIELDS[field]}`)?.removeAttribute("aria-invalid");
  renderFormErrors();
}

/** Every field error at once: inline under its field, and counted above the button. */
function showFieldErrors(errors) {
  const other = [];
  let first = null;
  for (const { field, message } of errors) {
    const box = field && FIELDS[field] ? $(`#${field}-error`) : null;
    if (!box) {
      other.push(message);
      continue;
    }
    box.hidden = false;
    box.textContent = message;
    const input = $(`#${FIELDS[field]}`);
    input.setAttribute("aria-invalid", "true");
    first ??= input;
  }
  if (first?.focus) first.focus();
  renderFormErrors(other);
}

function renderFormErrors(other = []) {
  const fields = Object.keys(FIELDS).filter((f) => $(`#${f}-error`) && !$(`#${f}-error`).hidden);
  const box = $("#form-errors");
  const lines = [...other];
  if (fields.length) {
    const names = fields.map((f) => LABELS[f]).join(", ");
    lines.unshift(fields.length === 1 ? `Check ${names.toLowerCase()} before sending.` : `${fields.length} fields to fix: ${names}.`);
  }
  box.hidden = !lines.length;
  box.dataset.count = String(fields.length);
  box.replaceChildren(...lines.map((line) => el("p", { text: line })));
}

const unauthenticated = (errors) => (errors || []).some((e) => e.extensions?.code === "UNAUTHENTICATED");

function keyMessage() {
  return auth.apiKey
    ? "The exchange does not know this API key: check the key at the top of the page."
    : "This exchange needs an API key to trade: enter yours at the top of the page.";
}

function setResult(node, kind, text) {
  node.className = `result ${kind}`;
  node.textContent = text;
}

function usePrice(price) {
  if (!price) return;
  if (form.elements.type.value === "MARKET") {
    $("#type-limit").checked = true;
    renderTicket();
  }
  const input = $("#price");
  input.value = fmtPrice(price);
  clearFieldError("price");
  renderTicket();
  input.classList.remove("flash");
  void input.offsetWidth; // restart the animation
  input.classList.add("flash");
}

for (const field of Object.keys(FIELDS)) {
  $(`#${FIELDS[field]}`).addEventListener(["side", "type", "timeInForce"].includes(field) ? "change" : "input", () => {
    clearFieldError(field);
    if (field === "type") clearFieldError("timeInForce");
    $("#place-result").textContent = "";
    renderTicket();
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("#place");
  const result = $("#place-result");
  if (button.disabled) return;
  Object.keys(FIELDS).forEach(clearFieldError);
  const t = ticket();
  const problems = checkOrder(t, market.instrument);
  if (problems.length) {
    setResult(result, "err", "");
    showFieldErrors(problems);
    return;
  }
  const input = {
    side: t.side,
    type: t.type,
    quantity: Number(t.quantity),
    timeInForce: t.timeInForce,
    clientOrderId: t.clientOrderId === "" ? null : t.clientOrderId,
    symbol: symbol(),
  };
  if (t.type === "LIMIT") input.price = t.price;
  button.disabled = true;
  setResult(result, "pending", "Sending…");
  try {
    const { data, errors } = await gql(PLACE, { input });
    const answer = data?.placeOrder;
    if (answer?.__typename === "OrderPlaced") {
      const duplicate = answer.duplicate ? " (client order id seen before: this is the original order)" : "";
      setResult(result, "ok", `${sideName(t.side)} order #${answer.orderId} placed${duplicate}`);
      result.dataset.orderId = answer.orderId;
      $("#client-order-id").value = "";
      rememberOrder(answer.orderId);
    } else if (answer?.__typename === "OrderRejected") {
      const fields = answer.errors.map((e) => ({ field: e.field, message: fieldMessage(e.field, e.message) }));
      setResult(result, "err", reasonMessage(answer.reason));
      result.dataset.reason = answer.reason;
      showFieldErrors(fields);
    } else if (unauthenticated(errors)) {
      setResult(result, "err", keyMessage());
    } else {
      const fields = graphqlFieldErrors(errors || []).map((e) => ({
        field: e.field,
        message: e.field ? fieldMessage(e.field, e.message) : e.message,
      }));
      setResult(result, "err", "The exchange refused the order.");
      showFieldErrors(fields);
    }
  } catch (err) {
    setResult(result, "err", `Could not reach the exchange (${err.message}); the order may not have been placed.`);
  } finally {
    button.disabled = false;
    renderTicket();
  }
});

// -- my orders ----------------------------------------------------------------------------

/** id -> { id, createdAt, data, row } for the orders placed from this browser. */
const myOrders = new Map();

function loadStored() {
  try {
    const stored = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
    return Array.isArray(stored) ? stored.filter((o) => o && typeof o.id === "string") : [];
  } catch {
    return [];
  }
}

function saveStored() {
  const list = [...myOrders.values()]
    .sort((a, b) => Number(b.id) - Number(a.id))
    .slice(0, ORDERS_MAX)
    .map(({ id, createdAt }) => ({ id, createdAt: createdAt || null }));
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(list));
  } catch {
    /* storage full or disabled: the list just won't survive a reload */
  }
}

function rememberOrder(id, createdAt = null) {
  if (!myOrders.has(id)) {
    const entry = { id, createdAt, data: undefined, row: buildOrderRow(id) };
    myOrders.set(id, entry);
    insertRow(entry.row, id);
    while (myOrders.size > ORDERS_MAX) forgetOrder(oldestId());
  }
  saveStored();
  refreshOrders();
  // Its trades may have arrived on the tape, and its fills on the order feed, before the
  // answer to placeOrder did.
  for (const row of document.querySelectorAll(
    `#tape tr[data-bid-order-id="${id}"], #tape tr[data-ask-order-id="${id}"]`,
  )) {
    row.classList.add("mine");
  }
  for (const event of fills.recent) addFill(event);
}

function oldestId() {
  return [...myOrders.keys()].sort((a, b) => Number(a) - Number(b))[0];
}

function forgetOrder(id) {
  const entry = myOrders.get(id);
  if (!entry) return;
  entry.row.remove();
  myOrders.delete(id);
  saveStored();
  renderOrdersEmpty();
}

function insertRow(row, id) {
  const list = $("#my-orders");
  const after = [...list.children].find((li) => Number(li.dataset.orderId) < Number(id));
  list.insertBefore(row, after || null);
  renderOrdersEmpty();
}

function renderOrdersEmpty() {
  $("#orders-empty").hidden = myOrders.size > 0;
}

function buildOrderRow(id) {
  const input = (cls, placeholder, mode, label) => {
    const node = el("input", { class: cls, type: "text", inputMode: mode, placeholder, "aria-label": label });
    node.addEventListener("input", () => {
      node.dataset.dirty = "1";
      node.removeAttribute("aria-invalid");
    });
    return node;
  };
  const priceInput = input("modify-price", "price", "decimal", `New price for order ${id}`);
  const qtyInput = input("modify-quantity", "quantity", "numeric", `New total quantity for order ${id}`);
  const modify = el("button", { type: "submit", class: "modify", text: "Modify" });
  const cancel = el("button", { type: "button", class: "cancel danger", text: "Cancel" });
  const actions = el(
    "form",
    { class: "order-actions", noValidate: true },
    el("label", { class: "mini" }, el("span", { text: "Price" }), priceInput),
    el("label", { class: "mini" }, el("span", { text: "Qty" }), qtyInput),
    modify,
    cancel,
  );
  const result = el("p", { class: "result", "aria-live": "polite" });
  const row = el(
    "li",
    { class: "order", "data-order-id": id },
    el(
      "div",
      { class: "order-main" },
      el("span", { class: "oid", text: `#${id}` }),
      el("span", { class: "tag side" }),
      el("span", { class: "o-desc" }),
      el("span", { class: "o-kind muted small" }),
      el("span", { class: "o-status badge", text: "loading…" }),
    ),
    el("div", { class: "progress", "aria-hidden": "true" }, el("span")),
    el("div", { class: "o-detail muted small" }),
    actions,
    result,
  );
  actions.addEventListener("submit", async (event) => {
    event.preventDefault();
    await modifyOrder(row, priceInput, qtyInput);
  });
  cancel.addEventListener("click", () => change(row, "Cancel", CANCEL, { id }, "cancelOrder"));
  return row;
}

/** Sends what changed (price, total quantity or both) after checking it in the page. */
async function modifyOrder(row, priceInput, qtyInput) {
  const entry = myOrders.get(row.dataset.orderId);
  const o = entry?.data;
  const result = $(".result", row);
  const price = priceInput.value.trim();
  const quantity = qtyInput.value.trim();
  const wanted = {
    price: o && price === fmtPrice(o.orderPrice) ? "" : price,
    quantity: o && quantity === String(o.orderQuantity) ? "" : quantity,
  };
  if (!wanted.price && !wanted.quantity) {
    setResult(result, "err", "Change the price or the quantity first.");
    return;
  }
  const problems = checkChange(wanted, market.instrument);
  priceInput.toggleAttribute("aria-invalid", problems.some((p) => p.field === "price"));
  qtyInput.toggleAttribute("aria-invalid", problems.some((p) => p.field === "quantity"));
  if (problems.length) {
    setResult(result, "err", problems.map((p) => p.message).join(" · "));
    return;
  }
  const variables = { id: row.dataset.orderId };
  const done = [];
  if (wanted.price) {
    variables.price = wanted.price;
    done.push(`price ${fmtPrice(wanted.price)}`);
  }
  if (wanted.quantity) {
    variables.quantity = Number(wanted.quantity);
    done.push(`quantity ${fmtQty(wanted.quantity)}`);
  }
  await change(row, "Modify", MODIFY, variables, "modifyOrder", `Modified: ${done.join(" and ")}`);
  priceInput.dataset.dirty = "";
  qtyInput.dataset.dirty = "";
}

async function change(row, verb, mutation, variables, field, success = `${verb}led`) {
  const result = $(".result", row);
  const buttons = row.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  setResult(result, "pending", `${verb === "Cancel" ? "Cancelling" : "Modifying"}…`);
  try {
    const { data, errors } = await gql(mutation, variables);
    const answer = data?.[field];
    if (answer?.success) {
      setResult(result, "ok", success);
    } else if (answer) {
      const details = answer.errors.map((e) => fieldMessage(e.field, e.message));
      const text = details.length ? details.join(" · ") : reasonMessage(answer.reason, myOrders.get(row.dataset.orderId)?.data);
      setResult(result, "err", `${verb} refused: ${text}`);
      result.dataset.reason = answer.reason ?? "";
    } else if (unauthenticated(errors)) {
      setResult(result, "err", `${verb} refused: ${keyMessage()}`);
    } else {
      const details = graphqlFieldErrors(errors || []).map((e) => (e.field ? fieldMessage(e.field, e.message) : e.message));
      setResult(result, "err", `${verb} refused: ${details.join(" · ")}`);
    }
  } catch (err) {
    setResult(result, "err", `${verb} failed: could not reach the exchange (${err.message})`);
  } finally {
    await refreshOrders();
    renderOrder(myOrders.get(row.dataset.orderId));
  }
}

function orderStatus(o) {
  if (o === null) return ["gone", "not found"];
  if (o.orderAlive) return o.tradedQuantity > 0 ? ["partial", "partially filled"] : ["open", "open"];
  if (o.cancelledQuantity > 0) {
    return o.tradedQuantity > 0 ? ["cancelled", "part filled, rest cancelled"] : ["cancelled", "cancelled"];
  }
  return ["filled", "filled"];
}

function renderOrder(entry) {
  if (!entry || entry.data === undefined) return;
  const { row, data: o } = entry;
  const [state, label] = orderStatus(o);
  row.dataset.state = state;
  const status = $(".o-status", row);
  status.textContent = label;
  status.className = `o-status badge ${state}`;
  const buttons = row.querySelectorAll("button");
  const inputs = row.querySelectorAll(".order-actions input");
  if (o === null) {
    row.dataset.alive = "false";
    $(".o-desc", row).textContent = "not in the store (was the data reset?)";
    buttons.forEach((b) => (b.disabled = true));
    inputs.forEach((i) => (i.disabled = true));
    return;
  }
  row.dataset.alive = String(o.orderAlive);
  row.dataset.traded = String(o.tradedQuantity);
  row.dataset.quantity = String(o.orderQuantity);
  row.dataset.price = o.orderPrice ?? "";
  row.dataset.type = o.orderType;
  const side = $(".side", row);
  side.textContent = sideName(o.side);
  side.className = `tag side ${sideClass(o.side)}`;
  $(".o-desc", row).replaceChildren(
    el("span", { class: "o-qty", text: fmtQty(o.orderQuantity) }),
    o.orderPrice === null ? " at " : " @ ",
    el("span", { class: "o-price", text: o.orderPrice === null ? "market" : fmtPrice(o.orderPrice) }),
  );
  $(".o-kind", row).textContent = `${o.orderType === "MARKET" ? "Market" : "Limit"} ${o.timeInForce}`;
  $(".progress span", row).style.width = `${(o.tradedQuantity / o.orderQuantity) * 100}%`;
  const detail = [`traded ${fmtQty(o.tradedQuantity)}`, `remaining ${fmtQty(o.remainingQuantity)}`];
  if (o.cancelledQuantity) detail.push(`cancelled ${fmtQty(o.cancelledQuantity)}`);
  if (o.clientOrderId) detail.push(`client id ${o.clientOrderId}`);
  detail.push(`updated ${fmtTime(o.updatedAt)}`);
  $(".o-detail", row).textContent = detail.join(" · ");
  const busy = $(".result", row).classList.contains("pending");
  buttons.forEach((b) => (b.disabled = busy || !o.orderAlive));
  const [priceInput, qtyInput] = inputs;
  inputs.forEach((i) => (i.disabled = !o.orderAlive));
  if (!priceInput.dataset.dirty && document.activeElement !== priceInput) {
    priceInput.value = o.orderAlive && o.orderPrice !== null ? fmtPrice(o.orderPrice) : "";
  }
  if (!qtyInput.dataset.dirty && document.activeElement !== qtyInput) {
    qtyInput.value = o.orderAlive ? String(o.orderQuantity) : "";
  }
}

const refresh = { running: null, again: false };

/** Re-read every order that can still change (one query, one alias per order). */
function refreshOrders() {
  if (refresh.running) {
    refresh.again = true;
    return refresh.running;
  }
  refresh.running = refreshLoop().finally(() => (refresh.running = null));
  return refresh.running;
}

async function refreshLoop() {
  do {
    refresh.again = false;
    const pending = [...myOrders.values()].filter((o) => o.data === undefined || o.data?.orderAlive);
    if (!pending.length) return;
    const params = pending.map((_, i) => `$i${i}: ID!`).join(", ");
    const fields = pending.map((_, i) => `o${i}: order(id: $i${i}) { ${ORDER_FIELDS} }`).join("\n");
    const variables = Object.fromEntries(pending.map((o, i) => [`i${i}`, o.id]));
    try {
      const { data } = await gql(`query MyOrders(${params}) {\n${fields}\n}`, variables);
      if (!data) return;
      pending.forEach((entry, i) => {
        const order = data[`o${i}`];
        if (order && entry.createdAt && order.createdAt !== entry.createdAt) {
          forgetOrder(entry.id); // same id, different order: the exchange's data was reset
          return;
        }
        if (order && !entry.createdAt) {
          entry.createdAt = order.createdAt;
          saveStored();
        }
        entry.data = order;
        renderOrder(entry);
      });
    } catch (err) {
      console.warn("order refresh failed", err);
      return;
    }
  } while (refresh.again);
}

$("#forget-done").addEventListener("click", () => {
  for (const entry of [...myOrders.values()]) {
    if (entry.data === null || entry.data?.orderAlive === false) forgetOrder(entry.id);
  }
});

// -- my fills: the private order feed -----------------------------------------------------

/**
 * after: the last `seq` of the order feed handled, where it resumes (kept across reloads, so
 * fills made while the page was closed arrive when it opens); list: the fills shown (newest
 * first); recent: trade events not yet known to be ours (placeOrder may answer after them).
 */
const fills = { after: null, list: [], recent: [], keys: new Set() };

function loadFills() {
  try {
    const stored = JSON.parse(localStorage.getItem(FILLS_KEY) || "null");
    if (stored && typeof stored.after === "string" && Array.isArray(stored.list)) {
      fills.after = stored.after;
      for (const fill of stored.list.slice(0, FILLS_MAX).reverse()) showFill(fill, false);
    }
  } catch {
    /* nothing stored */
  }
}

function saveFills() {
  try {
    localStorage.setItem(FILLS_KEY, JSON.stringify({ after: fills.after, list: fills.list }));
  } catch {
    /* storage full or disabled */
  }
}

/** One trade event of the feed: a fill for each of its two orders that is ours. */
function addFill(event) {
  for (const [side, orderId, remaining] of [
    [1, event.bidOrderId, event.bidRemaining],
    [-1, event.askOrderId, event.askRemaining],
  ]) {
    if (!myOrders.has(orderId)) continue;
    const fill = {
      key: `${event.tradeId}:${side}`,
      tradeId: event.tradeId,
      orderId,
      side,
      price: event.price,
      quantity: event.quantity,
      remaining,
      timestamp: event.timestamp,
    };
    if (!fills.keys.has(fill.key)) showFill(fill, true);
  }
}

function showFill(fill, fresh) {
  fills.keys.add(fill.key);
  fills.list.unshift(fill);
  fills.list.length = Math.min(fills.list.length, FILLS_MAX);
  const row = el(
    "tr",
    { class: fresh ? "fresh" : "", "data-trade-id": fill.tradeId, "data-order-id": fill.orderId },
    el("td", { class: "time", text: fmtTime(fill.timestamp) }),
    el("td", { class: "oid", text: `#${fill.orderId}` }),
    el("td", {}, el("span", { class: `tag ${sideClass(fill.side)}`, text: sideName(fill.side) })),
    el("td", { class: "num price", text: fmtPrice(fill.price) }),
    el("td", { class: "num qty", text: fmtQty(fill.quantity) }),
    el("td", { class: "num left", text: fill.remaining === null || fill.remaining === undefined ? "" : fmtQty(fill.remaining) }),
  );
  const body = $("#fills tbody");
  body.prepend(row);
  while (body.rows.length > FILLS_MAX) body.deleteRow(-1);
  if (fresh) setTimeout(() => row.classList.remove("fresh"), 1200);
  $("#fills-empty").hidden = true;
  $("#fills").dataset.count = String(body.rows.length);
}

function onOrderEvent(event) {
  if (event.seq && newer(event.seq, fills.after)) fills.after = event.seq;
  if (event.__typename === "OrderTradeEvent") {
    fills.recent.push(event);
    if (fills.recent.length > RECENT_EVENTS) fills.recent.shift();
    addFill(event);
    if (myOrders.has(event.bidOrderId) || myOrders.has(event.askOrderId)) refreshOrders();
  } else if (myOrders.has(event.orderId ?? event.rejectedOrderId)) {
    refreshOrders();
  }
  saveFills();
}

/**
 * Follows the private order feed. A first visit starts at the book's `seq` as the page
 * loaded it (nothing of ours can be older); a stored cursor beyond it means the exchange's
 * data was reset, and the stored fills go.
 */
function startFills(loadedBook) {
  const seq = loadedBook ? loadedBook.sequence : null;
  if (fills.after !== null && seq !== null && newer(fills.after, seq)) {
    fills.after = null;
    fills.list = [];
    fills.keys.clear();
    $("#fills tbody").replaceChildren();
    $("#fills-empty").hidden = false;
  }
  fills.after ??= seq;
  saveFills();
  live(ORDER_UPDATES, () => ({ after: fills.after, symbol: symbol() }), (data) => onOrderEvent(data.orderUpdates));
}

// -- start --------------------------------------------------------------------------------

/** A new key: every request and the socket (so the private feed) are now that key's. */
const keyInput = $("#api-key");
keyInput.value = auth.apiKey;
keyInput.addEventListener("change", () => {
  auth.apiKey = keyInput.value.trim();
  try {
    sessionStorage.setItem(KEY_STORAGE, auth.apiKey);
  } catch {
    /* storage disabled: the key lasts until the page is reloaded */
  }
  client.reconnect();
  refreshOrders();
});

async function loadInstrument() {
  try {
    const { data } = await gql(INSTRUMENTS);
    market.instrument = data?.instruments?.[0] ?? null;
  } catch (err) {
    console.warn("instruments failed", err); // the API still checks every order
  }
  if (market.instrument) {
    $("#tick-hint").textContent = `· tick ${market.instrument.tickSize}`;
    form.dataset.tick = market.instrument.tickSize;
  }
}

buildLadder();
renderTicket();
renderConn();
for (const { id, createdAt } of loadStored()) {
  const entry = { id, createdAt, data: undefined, row: buildOrderRow(id) };
  myOrders.set(id, entry);
  insertRow(entry.row, id);
}
renderOrdersEmpty();
loadFills();
renderChart();

(async () => {
  await loadInstrument();
  live(BOOK_SUB, () => ({ depth: LEVELS, symbol: symbol() }), (data) => renderBook(data.orderBook, "subscription"));
  const loadedBook = await loadBook();
  startFills(loadedBook);
  startTrades();
  startCandles();
  refreshOrders();
})();

setInterval(() => {
  refreshOrders();
  renderBookAge();
  if (conn.state === "reconnecting") renderConn();
}, 2000);
new ResizeObserver(() => renderChart()).observe($("#chart"));

// For poking at it from the browser console (and for the browser test).
window.playground = { client, gql, market, tape, chart, fills };
