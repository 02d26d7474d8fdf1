// A tiny client for the graphql-transport-ws protocol (the one Strawberry, Apollo and
// graphql-ws speak): connection_init/connection_ack, subscribe/next/error/complete and
// ping/pong. One WebSocket carries every subscription; when it drops, the client reconnects
// with exponential backoff and re-sends the subscriptions that are still wanted.
//
//   const client = new GraphQLWsClient("ws://host/graphql", { onStatus: (s) => ... });
//   const stop = client.subscribe({ query: "subscription { trades { tradeId } }" },
//                                 { next: (payload) => ..., error: (errors) => ..., complete: () => ... });
//   stop();  // unsubscribe
//
// `payload` may be a function returning the payload: it is called at every (re)send, so a
// resumable subscription resubscribes from where it stopped (e.g. `after` the last id seen).

const PROTOCOL = "graphql-transport-ws";

const resolve = (payload) => (typeof payload === "function" ? payload() : payload);

export class GraphQLWsClient {
  constructor(url, options = {}) {
    this.url = url;
    this.onStatus = options.onStatus || (() => {});
    this.connectionParams = options.connectionParams || (() => ({}));
    this.ackTimeoutMs = options.ackTimeoutMs ?? 5000;
    this.pingIntervalMs = options.pingIntervalMs ?? 10000;
    this.pongTimeoutMs = options.pongTimeoutMs ?? 5000;
    this.retryBaseMs = options.retryBaseMs ?? 500;
    this.retryMaxMs = options.retryMaxMs ?? 8000;
    this.subs = new Map(); // id -> { payload, sink }
    this.nextId = 0;
    this.ws = null;
    this.acked = false;
    this.attempt = 0;
    this.disposed = false;
    this.timers = {};
    this._connect();
  }

  /** Start a subscription; returns a function that stops it. */
  subscribe(payload, sink) {
    const id = String(++this.nextId);
    this.subs.set(id, { payload, sink });
    if (this.acked) this._send({ id, type: "subscribe", payload: resolve(payload) });
    return () => {
      if (this.subs.delete(id) && this.acked) this._send({ id, type: "complete" });
    };
  }

  /** Reconnect now instead of waiting for the backoff (e.g. when the browser goes online). */
  retryNow() {
    if (!this.ws && !this.disposed) {
      this._clear("retry");
      this._connect();
    }
  }

  /** Drop the socket and connect again at once (e.g. with new connection params). */
  reconnect() {
    if (this.ws) this._abort(4000, "reconnect");
    this.retryNow();
  }

  dispose() {
    this.disposed = true;
    for (const name of Object.keys(this.timers)) this._clear(name);
    if (this.ws) this.ws.close(1000, "bye");
    this.subs.clear();
    this._status("closed");
  }

  // -- internals ----------------------------------------------------------------------------

  _status(state, detail = {}) {
    this.state = state;
    this.onStatus({ state, attempt: this.attempt, ...detail });
  }

  _send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  _clear(name) {
    clearTimeout(this.timers[name]);
    clearInterval(this.timers[name]);
    delete this.timers[name];
  }

  _connect() {
    this._status("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url, PROTOCOL);
    } catch (err) {
      this._closed({ code: 0, reason: String(err) });
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "connection_init", payload: this.connectionParams() }));
      this.timers.ack = setTimeout(() => this._abort(4408, "connection_ack timeout"), this.ackTimeoutMs);
    };
    ws.onmessage = (event) => this._message(event.data);
    ws.onclose = (event) => this._closed(event);
    ws.onerror = () => {}; // a close event always follows
  }

  /** Give up on the socket now (without waiting for a closing handshake that may never come). */
  _abort(code, reason) {
    const ws = this.ws;
    if (!ws) return;
    ws.onclose = ws.onmessage = ws.onopen = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
    this._closed({ code, reason });
  }

  _closed(event) {
    this.ws = null;
    this.acked = false;
    this._clear("ack");
    this._clear("ping");
    this._clear("pong");
    if (this.disposed) return;
    const ceiling = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** this.attempt);
    const delay = Math.round(ceiling * (0.5 + Math.random() / 2));
    this.attempt += 1;
    this._status("reconnecting", { inMs: delay, code: event.code, reason: event.reason || "" });
    this.timers.retry = setTimeout(() => {
      delete this.timers.retry;
      this._connect();
    }, delay);
  }

  _message(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      this._abort(4400, "invalid JSON from server");
      return;
    }
    const sub = message.id !== undefined ? this.subs.get(message.id) : undefined;
    switch (message.type) {
      case "connection_ack":
        this._clear("ack");
        this.acked = true;
        this.attempt = 0;
        for (const [id, { payload }] of this.subs) {
          this._send({ id, type: "subscribe", payload: resolve(payload) });
        }
        this.timers.ping = setInterval(() => this._ping(), this.pingIntervalMs);
        this._status("open");
        break;
      case "next":
        if (sub) sub.sink.next?.(message.payload);
        break;
      case "error":
        if (sub) {
          this.subs.delete(message.id);
          sub.sink.error?.(message.payload);
        }
        break;
      case "complete":
        if (sub) {
          this.subs.delete(message.id);
          sub.sink.complete?.();
        }
        break;
      case "ping":
        this._send({ type: "pong" });
        break;
      case "pong":
        this._clear("pong");
        break;
      default:
        break; // unknown message types are ignored
    }
  }

  _ping() {
    if (this.timers.pong) return; // still waiting for the previous pong
    this._send({ type: "ping" });
    this.timers.pong = setTimeout(() => this._abort(4499, "pong timeout"), this.pongTimeoutMs);
  }
}
