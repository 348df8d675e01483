/**
 * rocket.js: the browser client for Rocket, speaking wire protocol v1.
 *
 * Plain ES2020 module, no dependencies. It keeps one WebSocket open,
 * reconnects with exponential backoff (full jitter) and resumes the session
 * so the server keeps the same client id, queues commands while offline,
 * matches replies to requests by ref, and emits pushed messages by name.
 *
 * Acknowledged delivery (option `acks`, on by default): the messages sent to
 * this client (by id or by user) come numbered, the client acknowledges them
 * with {"ack":N} frames, and a resume presents the last number received
 * (`ack=N` in the URL) so the server sends again only what was missed;
 * duplicates are dropped. An app that keeps the session across page loads
 * keeps `rocket.seq` with it and passes both back: new Rocket({session, seq}).
 *
 * @example
 *   import { Rocket } from "/rocket.js";
 *   const rocket = new Rocket();
 *   rocket.on("Chat.message", (msg) => console.log(msg.from, msg.text));
 *   await rocket.request("Chat.join", { room: "lobby", name: "ada" });
 *   rocket.send("Chat.say", { room: "lobby", text: "hello" });
 *
 * @module rocket
 */

/** @type {Required<Omit<RocketOptions, "WebSocket" | "session" | "seq" | "network">>} */
const DEFAULTS = {
  reconnect: true,
  minDelay: 250,
  maxDelay: 10000,
  requestTimeout: 10000,
  queueLimit: 100,
  autoConnect: true,
  acks: true,
};

/** Acknowledge at the latest after this many numbered messages... */
const ACK_EVERY = 64;
/** ...or this many ms after the first one not acknowledged yet. */
const ACK_DELAY = 100;

/**
 * @typedef {object} RocketOptions
 * @property {boolean} [reconnect=true] reconnect (and resume) after any close but close(), a normal closure (1000) by the server and a user disconnect (4001)
 * @property {number} [minDelay=250] first backoff cap in ms
 * @property {number} [maxDelay=10000] largest backoff cap in ms
 * @property {number} [requestTimeout=10000] default request timeout in ms (0: none)
 * @property {number} [queueLimit=100] commands kept while not connected
 * @property {boolean} [autoConnect=true] call connect() from the constructor
 * @property {string} [session] resume token to present on the first connection
 * @property {boolean} [acks=true] ask for acknowledged delivery (acks=1 in the URL): directed messages come numbered, are acknowledged, and a resume gets again only those not received; false: none of it
 * @property {number} [seq] number of the last directed message received in the session given (rocket.seq saved with it), presented as ack=N on resuming it, so that nothing already received is sent again
 * @property {typeof WebSocket} [WebSocket] constructor to use (defaults to globalThis.WebSocket)
 * @property {EventTarget} [network] where "online" events come from (defaults to globalThis, the window in a browser): when the network comes back, a waiting reconnect happens at once
 */

/**
 * Error for failed requests and for "error" events. `code` is a server code
 * (bad_frame, unknown_action, bad_args, action_failed, rate_limited,
 * too_large, unauthorized, internal_error) or a local one: "timeout",
 * "closed" (the connection dropped or close() was called before the reply),
 * "queue_full" (dropped from the offline queue).
 */
export class RocketError extends Error {
  /**
   * @param {string} code
   * @param {string} [message]
   * @param {string} [action] the action concerned, when known
   */
  constructor(code, message, action) {
    super(message || code);
    this.name = "RocketError";
    this.code = code;
    if (action) this.action = action;
  }
}

/**
 * A Rocket connection. Lifecycle events: "open" ({client, server, session,
 * resumed}), "state" (state string), "close" ({code, reason}), "error"
 * (RocketError). Any other event name is a pushed message, e.g. "Chat.message";
 * its listeners get (data, name); "*" listens to every pushed message (a
 * pushed value that is not an object comes to "*" only, with name "").
 * A numbered message ({"seq": N, "message": m}, acknowledged delivery) is
 * unwrapped: m is emitted like any pushed message, unless it is a duplicate.
 */
export class Rocket {
  /**
   * @param {string | URL | RocketOptions} [url] ws(s):// or http(s):// URL, or a
   *   path; defaults to ws(s)://<page host>/ws. May be omitted: new Rocket(options).
   * @param {RocketOptions} [options]
   */
  constructor(url, options) {
    if (options === undefined && url && typeof url === "object" && !(url instanceof URL)) {
      options = /** @type {RocketOptions} */ (url);
      url = undefined;
    }
    this.options = { ...DEFAULTS, ...options };
    /** The endpoint, without the session parameter. */
    this.url = resolveUrl(/** @type {string | URL | undefined} */ (url));
    /** @type {string | null} */ this.clientId = null;
    /** @type {string | null} */ this.serverId = null;
    /** @type {string | null} resume token of the current session */
    this.session = this.options.session ?? null;
    /** Whether the last welcome resumed the previous session. */
    this.resumed = false;
    /**
     * Number of the last numbered (acknowledged) message received, 0 for
     * none; reset by a welcome that does not resume. Keep it with the session.
     */
    this.seq = validSeq(this.options.seq);
    /** Whether the last welcome turned acknowledged delivery on ("acks": true). */
    this.acked = false;

    this._state = "closed";
    /** @type {WebSocket | null} */ this._ws = null;
    this._welcomed = false; // the current socket got its welcome
    this._wanted = false; // connect() called and close() not since
    this._attempt = 0; // failed attempts since the last welcome
    this._timer = undefined; // reconnect timer
    this._unacked = 0; // numbered messages received since the last ack sent
    this._ackTimer = undefined; // sends the ack ACK_DELAY ms after the first of them
    this._ref = 0;
    /** @type {Map<number, {name: string, resolve: Function, reject: Function, sent: boolean, timer: any}>} */
    this._pending = new Map();
    /** @type {{name: string, data: string, ref?: number}[]} frames waiting for a connection */
    this._queue = [];
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    // Reconnect at once when the network comes back, instead of waiting
    // out the backoff.
    this._onOnline = () => {
      if (this._wanted && !this._ws && this._state === "reconnecting") {
        this._attempt = 0;
        this._open();
      }
    };
    this._network = this.options.network ?? globalThis;
    if (this.options.autoConnect) this.connect();
  }

  /** @returns {"connecting" | "open" | "reconnecting" | "closed"} */
  get state() {
    return /** @type {any} */ (this._state);
  }

  /** Opens the connection (no-op when already connecting or open). */
  connect() {
    this._wanted = true;
    this._network?.addEventListener?.("online", this._onOnline); // once: same listener
    if (this._ws) return this;
    if (this._state === "closed") this._setState("connecting");
    this._open();
    return this;
  }

  /**
   * Closes cleanly without reconnecting. Queued commands are dropped and
   * pending requests rejected with code "closed".
   * @param {number} [code=1000]
   * @param {string} [reason]
   */
  close(code = 1000, reason = "") {
    this._wanted = false;
    clearTimeout(this._timer);
    this._stopAcks();
    this._network?.removeEventListener?.("online", this._onOnline);
    const ws = this._ws;
    this._ws = null;
    this._welcomed = false;
    this._queue = [];
    for (const [ref, p] of this._pending) this._settle(ref, new RocketError("closed", "connection closed", p.name));
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(code, reason); } catch { /* already closing */ }
    }
    if (ws) this._emit("close", { code, reason });
    this._setState("closed");
    return this;
  }

  /**
   * Sends a command, fire and forget. Queued while not open.
   * @param {string} name "Controller.action"
   * @param {unknown} [args]
   */
  send(name, args) {
    checkName(name);
    this._submit({ name, data: JSON.stringify({ [name]: wire(args) }) });
    return this;
  }

  /**
   * Sends several commands in one frame (array form); they run in order.
   * @param {Array<[string, unknown]>} commands
   */
  sendBatch(commands) {
    if (!commands.length) return this;
    for (const [name] of commands) checkName(name);
    const frame = commands.map(([name, args]) => ({ [name]: wire(args) }));
    this._submit({ name: commands.map((c) => c[0]).join(","), data: JSON.stringify(frame) });
    return this;
  }

  /**
   * Sends a command and waits for its reply. Rejects with a RocketError.
   * Requests are never resent: one in flight when the connection drops is
   * rejected with code "closed"; one still queued when it times out is dropped.
   * @param {string} name
   * @param {unknown} [args]
   * @param {{timeout?: number}} [opts] timeout in ms, 0 for none
   * @returns {Promise<any>}
   */
  request(name, args, { timeout = this.options.requestTimeout } = {}) {
    return new Promise((resolve, reject) => {
      checkName(name);
      const ref = ++this._ref;
      const item = { name, ref, data: JSON.stringify({ ref, [name]: wire(args) }) };
      const p = { name, resolve, reject, sent: false, timer: /** @type {any} */ (undefined) };
      if (timeout > 0 && timeout < Infinity) {
        p.timer = setTimeout(() => {
          this._queue = this._queue.filter((i) => i !== item);
          this._settle(ref, new RocketError("timeout", `${name}: no reply within ${timeout} ms`, name));
        }, timeout);
      }
      this._pending.set(ref, p);
      this._submit(item);
    });
  }

  /**
   * Adds a listener for a lifecycle event or a pushed message name.
   * @param {string} event
   * @param {Function} fn
   */
  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  /**
   * Removes a listener, or all listeners of the event when fn is omitted.
   * @param {string} event
   * @param {Function} [fn]
   */
  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) fn ? set.delete(fn) : set.clear();
    return this;
  }

  // ---- internals ----

  _open() {
    clearTimeout(this._timer);
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") throw new Error("Rocket: no WebSocket implementation");
    const url = new URL(this.url);
    const { acks } = this.options;
    if (acks) url.searchParams.set("acks", "1");
    if (this.session) url.searchParams.set("session", this.session);
    if (acks && this.session && this.seq > 0) url.searchParams.set("ack", String(this.seq));
    const ws = new WS(url.href);
    this._ws = ws;
    this._welcomed = false;
    this._stopAcks();
    if ("binaryType" in ws) ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => { if (this._ws === ws) this._onMessage(ws, ev.data); };
    ws.onclose = (ev) => { if (this._ws === ws) this._onClose(ev); };
    ws.onerror = () => {}; // a close event always follows
  }

  /** @param {{code?: number, reason?: string}} ev */
  _onClose(ev) {
    const code = ev?.code ?? 1006;
    const reason = ev?.reason ?? "";
    this._ws = null;
    this._welcomed = false;
    this._stopAcks(); // the resume URL's ack=N tells the position
    for (const [ref, p] of this._pending) {
      if (p.sent) this._settle(ref, new RocketError("closed", `connection closed (${code}) before the reply`, p.name));
    }
    // 1008: the session was taken over by a newer connection (or refused):
    // never present it again, the next connection starts a fresh session.
    // 4001: the application disconnected the user everywhere (signed out):
    // the server forgot the session.
    if (code === 1008 || code === 4001) {
      this.session = null;
      this.seq = 0; // the numbers were the session's
    }
    this._emit("close", { code, reason });
    if (this._ws || !this._wanted) return; // a listener called connect() or close()
    // 1000 from the server: the application ended this session on purpose;
    // 4001: it ended every session of the user (sign in again, then connect()).
    if (!this.options.reconnect || code === 1000 || code === 4001) {
      this._wanted = false;
      this._setState("closed");
      return;
    }
    this._setState("reconnecting");
    const { minDelay, maxDelay } = this.options;
    const cap = Math.min(maxDelay, minDelay * 2 ** this._attempt++);
    this._timer = setTimeout(() => this._open(), Math.random() * cap);
  }

  /** @param {WebSocket} ws @param {unknown} data */
  _onMessage(ws, data) {
    if (data instanceof ArrayBuffer) data = new TextDecoder().decode(data);
    let msg;
    try {
      msg = JSON.parse(/** @type {string} */ (data));
    } catch {
      this._emit("error", new RocketError("bad_frame", "server sent a frame that is not JSON"));
      return;
    }
    this._dispatchAll(ws, msg);
  }

  /**
   * Dispatches msg, or each message of an array, in order, while ws is
   * still the connection.
   * @param {WebSocket} ws @param {unknown} msg
   */
  _dispatchAll(ws, msg) {
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (this._ws !== ws) return; // a listener closed or reconnected
      this._dispatch(ws, m);
    }
  }

  /** @param {WebSocket} ws @param {any} msg */
  _dispatch(ws, msg) {
    if (!msg || typeof msg !== "object") return this._emit("*", msg, ""); // a bare value
    if (!this._welcomed && msg.welcome) return this._onWelcome(ws, msg.welcome);
    if (this.acked && isNumbered(msg)) return this._onNumbered(ws, msg);
    if ("ref" in msg) {
      const e = msg.error;
      const err = e && new RocketError(e.code ?? "error", e.message, msg.action ?? e.action);
      return this._settle(Number(msg.ref), err, msg.result);
    }
    if (msg.error && typeof msg.error === "object") {
      const e = msg.error;
      return this._emit("error", new RocketError(e.code ?? "error", e.message, e.action));
    }
    for (const [name, data] of Object.entries(msg)) {
      this._emit(name, data, name);
      this._emit("*", data, name);
    }
  }

  /** @param {WebSocket} ws @param {any} w */
  _onWelcome(ws, w) {
    this._welcomed = true;
    this._attempt = 0;
    this.clientId = w.client ?? null;
    this.serverId = w.server ?? null;
    this.session = w.session ?? null;
    this.resumed = !!w.resumed;
    if (!this.resumed) this.seq = 0; // a new client: numbers start again at 1
    this.acked = !!this.options.acks && w.acks === true;
    this._setState("open");
    // Listeners of "open" run before the queue is flushed, so what they send
    // (say, re-joining rooms) reaches the server ahead of the queued commands.
    this._emit("open", { client: this.clientId, server: this.serverId, session: this.session, resumed: this.resumed });
    if (this._ws !== ws) return;
    const queued = this._queue;
    this._queue = [];
    for (const item of queued) this._write(item);
  }

  /**
   * A numbered message: records its number and counts it for the next ack,
   * then dispatches the message it wraps, unless it is a duplicate (a number
   * not above the last one received, sent again after a reconnect).
   * @param {WebSocket} ws @param {{seq: number, message: unknown}} msg
   */
  _onNumbered(ws, { seq, message }) {
    const fresh = seq > this.seq;
    if (fresh) this.seq = seq;
    this._unacked++; // a duplicate too: the server may not know we have it
    if (this._unacked >= ACK_EVERY) this._sendAck();
    else if (this._ackTimer === undefined) this._ackTimer = setTimeout(() => this._sendAck(), ACK_DELAY);
    if (fresh) this._dispatchAll(ws, message);
  }

  /** Sends {"ack": seq} if numbered messages came since the last one, while open. */
  _sendAck() {
    const n = this._unacked;
    this._stopAcks();
    if (!n || !this.acked || !this._welcomed || !this._ws) return;
    this._ws.send(JSON.stringify({ ack: this.seq }));
  }

  /** Forgets the messages not acknowledged yet and stops the ack timer. */
  _stopAcks() {
    clearTimeout(this._ackTimer);
    this._ackTimer = undefined;
    this._unacked = 0;
  }

  /** @param {{name: string, data: string, ref?: number}} item */
  _submit(item) {
    if (this._state === "open" && this._ws) return this._write(item);
    this._queue.push(item);
    if (this._queue.length > this.options.queueLimit) {
      const dropped = /** @type {typeof item} */ (this._queue.shift());
      const err = new RocketError("queue_full", `offline queue full: dropped ${dropped.name}`, dropped.name);
      if (dropped.ref) this._settle(dropped.ref, err);
      this._emit("error", err);
    }
  }

  /** @param {{data: string, ref?: number}} item */
  _write(item) {
    /** @type {WebSocket} */ (this._ws).send(item.data);
    const p = item.ref && this._pending.get(item.ref);
    if (p) p.sent = true;
  }

  /** @param {number} ref @param {RocketError | null | undefined} err @param {unknown} [result] */
  _settle(ref, err, result) {
    const p = this._pending.get(ref);
    if (!p) return; // timed out or rejected already
    this._pending.delete(ref);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(result);
  }

  /** @param {string} state */
  _setState(state) {
    if (state === this._state) return;
    this._state = state;
    this._emit("state", state);
  }

  /** @param {string} event @param {...unknown} args */
  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn.apply(this, args);
      } catch (err) {
        setTimeout(() => { throw err; }); // report it without breaking the client
      }
    }
  }
}

/** @param {string | URL | undefined} url @returns {string} */
function resolveUrl(url) {
  const base = globalThis.location?.href;
  if (url === undefined && !base) throw new Error("Rocket: no url given and no page location to derive it from");
  const u = new URL(url ?? "/ws", base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  return u.href;
}

/** Whether msg is a numbered message, {"seq": N, "message": m}. @param {object} msg */
function isNumbered(msg) {
  return !Array.isArray(msg) && typeof (/** @type {any} */ (msg)).seq === "number" && "message" in msg;
}

/** A seq option: a whole number above 0, else 0. @param {unknown} seq @returns {number} */
function validSeq(seq) {
  return Number.isSafeInteger(seq) && /** @type {number} */ (seq) > 0 ? /** @type {number} */ (seq) : 0;
}

/** @param {unknown} name */
function checkName(name) {
  if (typeof name !== "string" || !name || name === "ref") {
    throw new TypeError(`Rocket: bad command name ${JSON.stringify(name)}`);
  }
}

/** JSON has no undefined: a command without args is sent as null. @param {unknown} args */
function wire(args) {
  return args === undefined ? null : args;
}

export default Rocket;
