// GraphQL over HTTP (POST with fetch) and the operations the playground sends.

export const ORDER_FIELDS = `orderId side orderPrice orderQuantity tradedQuantity remainingQuantity
  cancelledQuantity orderAlive clientOrderId createdAt updatedAt`;
export const PLACE = `mutation Place($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on OrderPlaced { orderId duplicate }
    ... on OrderRejected { reason errors { field message } }
  }
}`;
export const MODIFY = `mutation Modify($id: ID!, $price: Price!) {
  modifyOrder(id: $id, price: $price) { success reason errors { field message } }
}`;
export const CANCEL = `mutation Cancel($id: ID!) {
  cancelOrder(id: $id) { success reason errors { field message } }
}`;
export const BOOK_FIELDS = "seq timestamp bids { price quantity } asks { price quantity }";
export const BOOK_QUERY = `query Book($depth: Int!) { orderBook(depth: $depth) { ${BOOK_FIELDS} } }`;
export const BOOK_SUB = `subscription Book($depth: Int!) { orderBook(depth: $depth) { ${BOOK_FIELDS} } }`;
export const TRADES_SUB = `subscription Trades {
  trades { tradeId tradePrice quantity bidOrderId askOrderId aggressorSide timestamp }
}`;

/** POST a GraphQL operation; resolves to the response body ({data, errors}). */
export async function gql(query, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
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

/** Field-level errors out of GraphQL errors, e.g. a quantity that is not an Int. */
export function variableErrors(errors) {
  return errors.map((error) => {
    const match = /invalid value at \.(\w+): (.*)$/s.exec(error.message || "");
    if (!match) return { field: null, message: error.message || "request failed" };
    let message = match[2];
    if (/not to be None|not to be null/.test(message)) message = "is required";
    else if (/Int cannot represent/.test(message)) message = `must be a whole number (${message})`;
    return { field: match[1], message };
  });
}
