// Formatting (prices stay decimal strings: no float rounding on display) and DOM helpers.

export const $ = (selector, root = document) => root.querySelector(selector);

/** "100" -> "100.00", "100.5" -> "100.50", "100.125" stays: at least two decimals. */
export function fmtPrice(price) {
  const text = String(price);
  if (!/^-?\d+(\.\d+)?$/.test(text)) return text;
  const [whole, frac = ""] = text.split(".");
  return `${whole}.${frac.padEnd(2, "0")}`;
}

function decimals(text) {
  return (text.split(".")[1] || "").length;
}

function scaled(text, scale) {
  const [whole, frac = ""] = text.split(".");
  return BigInt(whole + frac.padEnd(scale, "0"));
}

/** Exact a - b on decimal strings. */
export function decSub(a, b) {
  if (!/^\d+(\.\d+)?$/.test(a) || !/^\d+(\.\d+)?$/.test(b)) return String(Number(a) - Number(b));
  const scale = Math.max(decimals(a), decimals(b));
  let n = scaled(a, scale) - scaled(b, scale);
  const sign = n < 0n ? "-" : "";
  if (n < 0n) n = -n;
  const digits = n.toString().padStart(scale + 1, "0");
  return sign + (scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits);
}

export function fmtQty(n) {
  return Number(n).toLocaleString("en-US");
}

export function parseTime(iso) {
  // Python's isoformat gives microseconds; keep milliseconds for Date.
  return new Date(String(iso).replace(/(\.\d{3})\d+/, "$1"));
}

export function fmtTime(iso) {
  const date = iso instanceof Date ? iso : parseTime(iso);
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

export const sideName = (side) => (Number(side) === 1 ? "Buy" : "Sell");
export const sideClass = (side) => (Number(side) === 1 ? "buy" : "sell");

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}
