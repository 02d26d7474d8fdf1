// Order checks in the page, before anything is sent, and the API's answers in a trader's words.
// Every check runs on every field, so a ticket with three mistakes shows three messages at
// once (GraphQL would stop at the first value its types refuse, e.g. a quantity of 1.5).

const DECIMAL = /^\d+(\.\d+)?$/;
const WHOLE = /^\d+$/;
const MAX_CLIENT_ORDER_ID = 64;

export const LABELS = {
  side: "Side",
  type: "Order type",
  price: "Price",
  quantity: "Quantity",
  timeInForce: "Time in force",
  clientOrderId: "Client order id",
  symbol: "Instrument",
  id: "Order",
};

function label(field) {
  return LABELS[field] || field;
}

/** "100.25" -> [10025n, 2]: exact, for comparing with the tick grid. */
function scaled(text) {
  const [whole, frac = ""] = text.split(".");
  return [BigInt(whole + frac), frac.length];
}

function multipleOf(price, tick) {
  const [p, pScale] = scaled(price);
  const [t, tScale] = scaled(tick);
  const scale = Math.max(pScale, tScale);
  return (p * 10n ** BigInt(scale - pScale)) % (t * 10n ** BigInt(scale - tScale)) === 0n;
}

function greater(a, b) {
  const [x, xScale] = scaled(a);
  const [y, yScale] = scaled(b);
  const scale = Math.max(xScale, yScale);
  return x * 10n ** BigInt(scale - xScale) > y * 10n ** BigInt(scale - yScale);
}

const grouped = (n) => Number(n).toLocaleString("en-US");

/** Price problems, or null. `instrument` ({tickSize, maxPrice}) may be unknown yet. */
export function checkPrice(text, instrument) {
  if (text === "") return "Enter a price: a limit order needs one";
  if (!DECIMAL.test(text)) {
    return /^-/.test(text) ? "Price must be above 0" : "Price must be a number, such as 100.25";
  }
  if (!/[1-9]/.test(text)) return "Price must be above 0";
  if (instrument) {
    if (greater(text, instrument.maxPrice)) return `Price can be at most ${instrument.maxPrice}`;
    if (!multipleOf(text, instrument.tickSize)) {
      return `Price must be in steps of ${instrument.tickSize} (tick size)`;
    }
  }
  return null;
}

/** Quantity problems, or null. */
export function checkQuantity(text, instrument) {
  if (text === "") return "Enter a quantity";
  if (/^-/.test(text)) return "Quantity must be at least 1";
  if (DECIMAL.test(text) && !WHOLE.test(text)) return "Quantity must be a whole number of units";
  if (!WHOLE.test(text)) return "Quantity must be a whole number, such as 10";
  if (BigInt(text) < 1n) return "Quantity must be at least 1";
  if (instrument && BigInt(text) > BigInt(instrument.maxQuantity)) {
    return `Quantity can be at most ${grouped(instrument.maxQuantity)}`;
  }
  return null;
}

/**
 * Every problem with a new order, one per field: [{field, message}], empty when it can go.
 * order: {type: "LIMIT"|"MARKET", price, quantity, timeInForce, clientOrderId} (strings).
 */
export function checkOrder(order, instrument) {
  const errors = [];
  const add = (field, message) => message && errors.push({ field, message });
  if (order.type === "LIMIT") add("price", checkPrice(order.price, instrument));
  add("quantity", checkQuantity(order.quantity, instrument));
  if (order.type === "MARKET" && order.timeInForce === "GTC") {
    add("timeInForce", "A market order cannot rest in the book: choose IOC or FOK");
  }
  const id = order.clientOrderId;
  if (id && (id.length > MAX_CLIENT_ORDER_ID || !/^[\x20-\x7e\u00a0-\uffff]+$/.test(id))) {
    add("clientOrderId", `Client order id must be 1 to ${MAX_CLIENT_ORDER_ID} printable characters`);
  }
  return errors;
}

/** A modify: a new price and/or a new total quantity (empty strings when unchanged). */
export function checkChange(change, instrument) {
  const errors = [];
  if (change.price !== "") {
    const problem = checkPrice(change.price, instrument);
    if (problem) errors.push({ field: "price", message: problem });
  }
  if (change.quantity !== "") {
    const problem = checkQuantity(change.quantity, instrument);
    if (problem) errors.push({ field: "quantity", message: problem });
  }
  return errors;
}

/** One of the API's field errors ({field, message}: "must be a multiple of the tick size
 * 0.01") as a sentence for a trader ("Price must be in steps of 0.01 (tick size)"). */
export function fieldMessage(field, message) {
  const name = label(field);
  let m;
  if ((m = /^must be a multiple of the tick size (\S+)/.exec(message))) {
    return `${name} must be in steps of ${m[1]} (tick size)`;
  }
  if (/^must be greater than 0/.test(message)) return `${name} must be above 0`;
  if ((m = /^must not exceed (\S+)/.exec(message))) return `${name} can be at most ${m[1]}`;
  if (/^must be at least 1/.test(message)) return `${name} must be at least 1`;
  if (/^must be an integer|Int cannot represent/.test(message)) {
    return `${name} must be a whole number of units`;
  }
  if (/^a market order cannot rest/.test(message)) {
    return "A market order cannot rest in the book: choose IOC or FOK";
  }
  if (/^is required|not to be (None|null)/.test(message)) return `Enter a ${name.toLowerCase()}`;
  if (/^must be a decimal|cannot represent|invalid/i.test(message)) {
    return `${name} must be a number, such as 100.25`;
  }
  return `${name} ${message}`;
}

/** A rejection reason (`no_liquidity`) as a sentence. */
export function reasonMessage(reason, order) {
  switch (reason) {
    case "no_liquidity":
      return "Nothing to trade against: the other side of the book is empty, so the market order was not placed.";
    case "rate_limited":
      return "Too many orders at once: wait a moment and send it again.";
    case "order_not_alive":
      return "This order is no longer in the book (filled, cancelled, or it never rested).";
    case "quantity_not_above_traded":
      return order
        ? `The new quantity must be above the ${grouped(order.tradedQuantity)} already traded.`
        : "The new quantity must be above the quantity already traded.";
    case "unknown_order":
      return "The exchange does not know this order (was its data reset?).";
    case "not_owner":
      return "This order belongs to another API key.";
    case "invalid_input":
      return "Some fields need fixing.";
    default:
      return `Refused: ${String(reason).replace(/_/g, " ")}.`;
  }
}
