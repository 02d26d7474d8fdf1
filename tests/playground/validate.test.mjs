// The playground's order checks (web_playground/validate.js) on their own, under node's test
// runner: the tick grid in exact decimals, the limits, and the API's messages in words.
// Run by tests/playground/test_validate_js.py.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  checkChange,
  checkOrder,
  checkPrice,
  checkQuantity,
  fieldMessage,
  reasonMessage,
} from "../../web_playground/validate.js";

const cent = { tickSize: "0.01", maxPrice: "1000000", maxQuantity: 1000000000 };
const nickel = { tickSize: "0.05", maxPrice: "500", maxQuantity: 100 };

test("prices on the tick grid, compared exactly", () => {
  assert.equal(checkPrice("100.25", cent), null);
  assert.equal(checkPrice("100.250000", cent), null);
  assert.equal(checkPrice("0.01", cent), null);
  assert.equal(checkPrice("100.005", cent), "Price must be in steps of 0.01 (tick size)");
  assert.equal(checkPrice("0.3", nickel), null); // 0.1 + 0.2 is no float trouble here
  assert.equal(checkPrice("0.33", nickel), "Price must be in steps of 0.05 (tick size)");
  assert.equal(checkPrice("1000000.00", cent), null);
  assert.equal(checkPrice("1000000.01", cent), "Price can be at most 1000000");
  assert.equal(checkPrice("0", cent), "Price must be above 0");
  assert.equal(checkPrice("0.00", cent), "Price must be above 0");
  assert.equal(checkPrice("-5", cent), "Price must be above 0");
  assert.equal(checkPrice("abc", cent), "Price must be a number, such as 100.25");
  assert.equal(checkPrice("", cent), "Enter a price: a limit order needs one");
  assert.equal(checkPrice("100.005", null), null); // no limits known: the API checks
});

test("quantities are whole numbers within the limit", () => {
  assert.equal(checkQuantity("10", cent), null);
  assert.equal(checkQuantity("1.5", cent), "Quantity must be a whole number of units");
  assert.equal(checkQuantity("0", cent), "Quantity must be at least 1");
  assert.equal(checkQuantity("-3", cent), "Quantity must be at least 1");
  assert.equal(checkQuantity("ten", cent), "Quantity must be a whole number, such as 10");
  assert.equal(checkQuantity("101", nickel), "Quantity can be at most 100");
  assert.equal(checkQuantity("99999999999999999999", cent), "Quantity can be at most 1,000,000,000");
  assert.equal(checkQuantity("", cent), "Enter a quantity");
});

test("every invalid field of an order at once", () => {
  const order = { type: "LIMIT", price: "100.005", quantity: "1.5", timeInForce: "GTC", clientOrderId: "" };
  assert.deepEqual(checkOrder(order, cent), [
    { field: "price", message: "Price must be in steps of 0.01 (tick size)" },
    { field: "quantity", message: "Quantity must be a whole number of units" },
  ]);
  const market = { type: "MARKET", price: "junk", quantity: "2", timeInForce: "GTC", clientOrderId: "x".repeat(65) };
  assert.deepEqual(
    checkOrder(market, cent).map((e) => e.field),
    ["timeInForce", "clientOrderId"], // a market order's price is not used
  );
  assert.deepEqual(checkChange({ price: "", quantity: "0" }, cent), [
    { field: "quantity", message: "Quantity must be at least 1" },
  ]);
});

test("the API's field errors and reasons in a trader's words", () => {
  assert.equal(fieldMessage("price", "must be a multiple of the tick size 0.01"), "Price must be in steps of 0.01 (tick size)");
  assert.equal(fieldMessage("quantity", "Int cannot represent non-integer value: 1.5"), "Quantity must be a whole number of units");
  assert.equal(fieldMessage("quantity", "must not exceed 1000000000"), "Quantity can be at most 1000000000");
  assert.equal(fieldMessage("timeInForce", "a market order cannot rest: use 'IOC' or 'FOK'"), "A market order cannot rest in the book: choose IOC or FOK");
  assert.match(reasonMessage("no_liquidity"), /other side of the book is empty/);
  assert.equal(
    reasonMessage("quantity_not_above_traded", { tradedQuantity: 3 }),
    "The new quantity must be above the 3 already traded.",
  );
});
