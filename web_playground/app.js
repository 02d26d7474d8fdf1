// The playground: order entry, live book, trade tape, chart and "my orders", all over
// GraphQL (mutations and queries by HTTP POST, subscriptions over graphql-transport-ws).

import { drawChart } from "./chart.js";
import { $, decSub, el, fmtPrice, fmtQty, fmtTime, sideClass, sideName } from "./format.js";
import { GraphQLWsClient } from "./gql-ws.js";
import {
  BOOK_QUERY,
  BOOK_SUB,
  CANCEL,
  MODIFY,
  ORDER_FIELDS,
  PLACE,
  TRADES_SUB,
  gql,
  variableErrors,
} from "./graphql.js";

const LEVELS = 5; // ladder depth per side
const TAPE_MAX = 50; // trades kept on the tape
const CHART_MAX = 100; // trades kept for the chart
const ORDERS_MAX = 100; // order ids remembered in localStorage
const STORAGE_KEY = "exchange-playground:orders";
const STALE_BOOK_MS = 3500;

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

const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
const client = new GraphQLWsClient(wsUrl, {
  onStatus(status) {
    conn.state = status.state;
    if (status.state === "reconnecting") conn.retryAt = Date.now() + status.inMs;
    if (status.state === "open") {
      if (conn.wasOpen) {
        conn.reconnects += 1;
        $("#conn").dataset.reconnects = String(conn.reconnects);
        // Back after a gap: catch up on what the subscriptions could not tell us.
        loadBook();
        refreshOrders();
      }
      conn.wasOpen = true;
    }
    renderConn();
  },
});
window.addEventListener("online", () => client.retryNow());

/** A subscription that comes back if the server ends it (e.g. after dropping a slow client). */
function live(query, variables, onData) {
  const start = () =>
    client.subscribe(
      { query, variables },
      {
        next(payload) {
          if (payload.data) onData(payload.data);
          if (payload.errors) console.warn("subscription errors", payload.errors);
        },
        error(errors) {
          console.warn("subscription failed", errors);
          setTimeout(start, 2000);
        },
        complete() {
          setTimeout(start, 500);
        },
      },
    );
  start();
}

// -- order book ---------------------------------------------------------------------------

const book = { seq: -1, receivedAt: 0, source: "" };

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
  if (source === "query" && data.seq < book.seq) return;
  book.seq = data.seq;
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
  ladder.dataset.seq = String(data.seq);
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
    const { data } = await gql(BOOK_QUERY, { depth: LEVELS });
    if (data?.orderBook) renderBook(data.orderBook, "query");
  } catch (err) {
    console.warn("book query failed", err);
  }
}

// -- trades: tape and chart ---------------------------------------------------------------

const tape = { count: 0, lastPrice: null, chart: [] };

function onTrade(trade) {
  tape.count += 1;
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
      class: `${mine ? "mine" : ""} fresh`,
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
  setTimeout(() => row.classList.remove("fresh"), 1200);
  $("#tape-count").textContent = `${tape.count} since page load`;
  const last = $("#last-price");
  last.textContent = fmtPrice(trade.tradePrice);
  last.className = `last-price ${tick}`;

  tape.chart.push({
    price: Number(trade.tradePrice),
    side: trade.aggressorSide,
    time: fmtTime(trade.timestamp),
  });
  if (tape.chart.length > CHART_MAX) tape.chart.shift();
  renderChart();
  if (mine) refreshOrders();
}

function renderChart() {
  drawChart($("#chart"), tape.chart);
}

// -- order entry --------------------------------------------------------------------------

const form = $("#order-form");
const FIELDS = { side: "side-field", price: "price", quantity: "quantity", clientOrderId: "client-order-id" };

function currentSide() {
  return Number(form.elements.side.value);
}

function renderTicketButton() {
  const button = $("#place");
  const side = currentSide();
  const qty = $("#quantity").value.trim();
  const price = $("#price").value.trim();
  button.className = `primary ${sideClass(side)}`;
  button.textContent = qty && price ? `${sideName(side)} ${qty} @ ${price}` : sideName(side);
}

function clearFieldError(field) {
  const message = $(`#${field}-error`);
  if (message) {
    message.hidden = true;
    message.textContent = "";
  }
  $(`#${FIELDS[field]}`)?.removeAttribute("aria-invalid");
}

function showFieldErrors(errors) {
  const other = [];
  let first = null;
  for (const { field, message } of errors) {
    const box = field && FIELDS[field] ? $(`#${field}-error`) : null;
    if (!box) {
      other.push(field ? `${field} ${message}` : message);
      continue;
    }
    box.hidden = false;
    box.replaceChildren(el("strong", { text: field }), ` ${message}`);
    const input = $(`#${FIELDS[field]}`);
    input.setAttribute("aria-invalid", "true");
    first ??= input;
  }
  if (first && first.focus) first.focus();
  return other;
}

function setResult(node, kind, text) {
  node.className = `result ${kind}`;
  node.textContent = text;
}

function usePrice(price) {
  if (!price) return;
  const input = $("#price");
  input.value = fmtPrice(price);
  clearFieldError("price");
  renderTicketButton();
  input.classList.remove("flash");
  void input.offsetWidth; // restart the animation
  input.classList.add("flash");
}

for (const field of Object.keys(FIELDS)) {
  const target = field === "side" ? form : $(`#${FIELDS[field]}`);
  target.addEventListener(field === "side" ? "change" : "input", () => {
    clearFieldError(field);
    renderTicketButton();
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("#place");
  const result = $("#place-result");
  if (button.disabled) return;
  Object.keys(FIELDS).forEach(clearFieldError);
  const side = currentSide();
  const qtyText = $("#quantity").value.trim();
  const clientOrderId = $("#client-order-id").value;
  const input = {
    side,
    price: $("#price").value.trim(),
    // An integer goes as a number; anything else goes as typed so the API names the problem.
    quantity: /^[+-]?\d+$/.test(qtyText) ? Number(qtyText) : qtyText === "" ? null : qtyText,
    clientOrderId: clientOrderId === "" ? null : clientOrderId,
  };
  button.disabled = true;
  setResult(result, "pending", "Sending…");
  try {
    const { data, errors } = await gql(PLACE, { input });
    const answer = data?.placeOrder;
    if (answer?.__typename === "OrderPlaced") {
      const duplicate = answer.duplicate ? " (client order id seen before: this is the original order)" : "";
      setResult(result, "ok", `${sideName(side)} order #${answer.orderId} placed${duplicate}`);
      result.dataset.orderId = answer.orderId;
      $("#client-order-id").value = "";
      rememberOrder(answer.orderId);
    } else if (answer?.__typename === "OrderRejected") {
      const other = showFieldErrors(answer.errors);
      setResult(result, "err", `Rejected (${answer.reason})${other.length ? `: ${other.join("; ")}` : ""}`);
    } else {
      const other = showFieldErrors(variableErrors(errors || []));
      setResult(result, "err", `Rejected${other.length ? `: ${other.join("; ")}` : ""}`);
    }
  } catch (err) {
    setResult(result, "err", `Could not reach the API: ${err.message}`);
  } finally {
    button.disabled = false;
    renderTicketButton();
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
  // Its trades may have arrived on the tape before the answer to placeOrder did.
  for (const row of document.querySelectorAll(
    `#tape tr[data-bid-order-id="${id}"], #tape tr[data-ask-order-id="${id}"]`,
  )) {
    row.classList.add("mine");
  }
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
  const priceInput = el("input", {
    class: "modify-price",
    type: "text",
    inputMode: "decimal",
    placeholder: "new price",
    "aria-label": `New price for order ${id}`,
  });
  priceInput.addEventListener("input", () => (priceInput.dataset.dirty = "1"));
  const modify = el("button", { type: "submit", class: "modify", text: "Modify" });
  const cancel = el("button", { type: "button", class: "cancel danger", text: "Cancel" });
  const actions = el("form", { class: "order-actions", noValidate: true }, priceInput, modify, cancel);
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
      el("span", { class: "o-status badge", text: "loading…" }),
    ),
    el("div", { class: "progress", "aria-hidden": "true" }, el("span")),
    el("div", { class: "o-detail muted small" }),
    actions,
    result,
  );
  actions.addEventListener("submit", async (event) => {
    event.preventDefault();
    await change(row, "Modify", MODIFY, { id, price: priceInput.value.trim() }, "modifyOrder");
    priceInput.dataset.dirty = "";
  });
  cancel.addEventListener("click", () => change(row, "Cancel", CANCEL, { id }, "cancelOrder"));
  return row;
}

async function change(row, verb, mutation, variables, field) {
  const result = $(".result", row);
  const buttons = row.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  setResult(result, "pending", `${verb}…`);
  try {
    const { data, errors } = await gql(mutation, variables);
    const answer = data?.[field];
    if (answer?.success) {
      setResult(result, "ok", `${verb}: success`);
    } else if (answer) {
      const details = answer.errors.map((e) => `${e.field} ${e.message}`).join("; ");
      setResult(result, "err", `${verb} failed: ${answer.reason}${details ? ` (${details})` : ""}`);
    } else {
      const details = variableErrors(errors || []).map((e) => (e.field ? `${e.field} ${e.message}` : e.message));
      setResult(result, "err", `${verb} failed: ${details.join("; ")}`);
    }
  } catch (err) {
    setResult(result, "err", `${verb} failed: could not reach the API (${err.message})`);
  } finally {
    await refreshOrders();
    renderOrder(myOrders.get(row.dataset.orderId));
  }
}

function orderStatus(o) {
  if (o === null) return ["gone", "not found"];
  if (o.orderAlive) return o.tradedQuantity > 0 ? ["partial", "partially filled"] : ["open", "open"];
  if (o.cancelledQuantity > 0) return ["cancelled", "cancelled"];
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
  const priceInput = $(".modify-price", row);
  if (o === null) {
    row.dataset.alive = "false";
    $(".o-desc", row).textContent = "not in the store (was the data reset?)";
    buttons.forEach((b) => (b.disabled = true));
    priceInput.disabled = true;
    return;
  }
  row.dataset.alive = String(o.orderAlive);
  row.dataset.traded = String(o.tradedQuantity);
  row.dataset.price = o.orderPrice;
  const side = $(".side", row);
  side.textContent = sideName(o.side);
  side.className = `tag side ${sideClass(o.side)}`;
  $(".o-desc", row).replaceChildren(
    el("span", { class: "o-qty", text: fmtQty(o.orderQuantity) }),
    " @ ",
    el("span", { class: "o-price", text: fmtPrice(o.orderPrice) }),
  );
  $(".progress span", row).style.width = `${(o.tradedQuantity / o.orderQuantity) * 100}%`;
  const detail = [
    `traded ${fmtQty(o.tradedQuantity)}`,
    `remaining ${fmtQty(o.remainingQuantity)}`,
  ];
  if (o.cancelledQuantity) detail.push(`cancelled ${fmtQty(o.cancelledQuantity)}`);
  if (o.clientOrderId) detail.push(`client id ${o.clientOrderId}`);
  detail.push(`updated ${fmtTime(o.updatedAt)}`);
  $(".o-detail", row).textContent = detail.join(" · ");
  const busy = $(".result", row).classList.contains("pending");
  buttons.forEach((b) => (b.disabled = busy || !o.orderAlive));
  priceInput.disabled = !o.orderAlive;
  if (!priceInput.dataset.dirty && document.activeElement !== priceInput) {
    priceInput.value = o.orderAlive ? fmtPrice(o.orderPrice) : "";
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

// -- start --------------------------------------------------------------------------------

buildLadder();
renderTicketButton();
renderChart();
renderConn();
for (const { id, createdAt } of loadStored()) {
  const entry = { id, createdAt, data: undefined, row: buildOrderRow(id) };
  myOrders.set(id, entry);
  insertRow(entry.row, id);
}
renderOrdersEmpty();

live(TRADES_SUB, {}, (data) => onTrade(data.trades));
live(BOOK_SUB, { depth: LEVELS }, (data) => renderBook(data.orderBook, "subscription"));
loadBook();
refreshOrders();

setInterval(() => {
  refreshOrders();
  renderBookAge();
  if (conn.state === "reconnecting") renderConn();
}, 1000);
new ResizeObserver(() => renderChart()).observe($("#chart"));

// For poking at it from the browser console (and for the browser test).
window.playground = { client, gql };
