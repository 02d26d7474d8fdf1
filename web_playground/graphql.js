// GraphQL over HTTP (POST with fetch) and the operations the playground sends.

export const ORDER_FIELDS = `orderId side orderType timeInForce orderPrice orderQuantity tradedQuantity
  remainingQuantity cancelledQuantity orderAlive clientOrderId createdAt updatedAt`;
export const INSTRUMENTS = `query Instruments { instruments { symbol tickSize maxPrice maxQuantity } }`;
export const PLACE = `mutation Place($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on OrderPlaced { orderId duplicate }
    ... on OrderRejected { reason errors { field message } }
  }
}`;
export const MODIFY = `mutation Modify($id: ID!, $price: Price, $quantity: Int) {
  modifyOrder(id: $id, price: $price, quantity: $quantity) { success reason errors { field message } }
}`;
export const CANCEL = `mutation Cancel($id: ID!) {
  cancelOrder(id: $id) { success reason errors { field message } }
}`;
// `sequence` (an ID, exact for every instrument), not `seq`: an Int, which overflows past
// the first instrument.
export const BOOK_FIELDS = "sequence timestamp bids { price quantity } asks { price quantity }";
export const BOOK_QUERY = `query Book($depth: Int!, $symbol: String) {
  orderBook(depth: $depth, symbol: $symbol) { ${BOOK_FIELDS} }
}`;
export const BOOK_SUB = `subscription Book($depth: Int!, $symbol: String) {
  orderBook(depth: $depth, symbol: $symbol) { ${BOOK_FIELDS} }
}`;
const TRADE_FIELDS = "tradeId tradePrice quantity bidOrderId askOrderId aggressorSide timestamp";
/** The newest trades (a page from the end), so the tape is full as soon as the page opens. */
export const RECENT_TRADES = `query RecentTrades($last: Int!, $symbol: String) {
  trades(last: $last, symbol: $symbol) { nodes { ${TRADE_FIELDS} } }
}`;
/** Every trade after `after` (from the store, then live): no gap after a load or a reconnect. */
export const TRADES_SUB = `subscription Trades($after: ID, $symbol: String) {
  trades(after: $after, symbol: $symbol) { ${TRADE_FIELDS} }
}`;
export const CANDLE_FIELDS = "start open high low close volume tradeCount";
export const CANDLES = `query Candles($interval: CandleInterval!, $since: DateTime, $symbol: String) {
  candles(interval: $interval, since: $since, symbol: $symbol) { ${CANDLE_FIELDS} }
}`;
/** Each candle of the interval as trades change it (the whole candle: replace by `start`). */
export const CANDLES_SUB = `subscription Candles($interval: CandleInterval!, $symbol: String) {
  candles(interval: $interval, symbol: $symbol) { ${CANDLE_FIELDS} }
}`;
/** The private order feed: every change to the caller's orders, resumable by `seq`. */
export const ORDER_UPDATES = `subscription OrderUpdates($after: ID) {
  orderUpdates(after: $after) {
    __typename
    ... on OrderAcceptedEvent { seq orderId }
    ... on OrderTradeEvent {
      seq tradeId price quantity aggressorSide bidOrderId askOrderId bidRemaining askRemaining timestamp
    }
    ... on OrderModifiedEvent { seq orderId }
    ... on OrderQuantityChangedEvent { seq orderId }
    ... on OrderCancelledEvent { seq orderId }
    ... on OrderRejectedEvent { seq rejectedOrderId reason }
  }
}`;

/** The API key sent with every operation (X-API-Key; `apiKey` over the WebSocket), or "". */
export const auth = { apiKey: "" };

/** POST a GraphQL operation; resolves to the response body ({data, errors}). */
export async function gql(query, variables = {}) {
  const headers = { "content-type": "application/json", accept: "application/json" };
  if (auth.apiKey) headers["x-api-key"] = auth.apiKey;
  const response = await fetch("/graphql", {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new Error(`HTTP ${response.status} ${response.statusText}`);
  }
  if (!body.data && !body.errors) throw new Error(`HTTP ${response.status}: unexpected response`);
  return body;
}

/**
 * Field errors out of GraphQL errors: a variable GraphQL itself refused (e.g. "Variable
 * '$input' got invalid value 1.5 at 'input.quantity'; Int cannot represent ...") names its
 * field; a bad argument carries `extensions.errors`; anything else has no field.
 */
export function graphqlFieldErrors(errors) {
  return errors.flatMap((error) => {
    if (Array.isArray(error.extensions?.errors)) return error.extensions.errors;
    const message = error.message || "request failed";
    const match = /got invalid value .* at '(?:\w+\.)?(\w+)'; (.*)$/s.exec(message);
    const plain = /^Variable '\$(\w+)' got invalid value [^;]*; (.*)$/s.exec(message);
    if (match) return [{ field: match[1], message: match[2] }];
    if (plain) return [{ field: plain[1], message: plain[2] }];
    return [{ field: null, message }];
  });
}
