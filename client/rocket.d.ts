// Type declarations for rocket.js, the browser client of Rocket (wire protocol v1).

/** Connection state. "open" means the welcome frame has arrived. */
export type RocketState = "connecting" | "open" | "reconnecting" | "closed";

/** Error codes: the server's, then the client's own ("timeout", "closed", "queue_full"). */
export type RocketErrorCode =
  | "bad_frame"
  | "unknown_action"
  | "bad_args"
  | "action_failed"
  | "rate_limited"
  | "too_large"
  | "unauthorized"
  | "internal_error"
  | "timeout"
  | "closed"
  | "queue_full"
  | (string & {});

/** The part of the WebSocket API that Rocket uses. */
export interface WebSocketLike {
  binaryType?: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export interface RocketOptions {
  /**
   * Reconnect and resume after any close except close(), a normal closure
   * (1000) by the server and a user disconnect (4001, which also drops the
   * session). Default true.
   */
  reconnect?: boolean;
  /** First backoff cap in ms (full jitter: the delay is random in [0, cap)). Default 250. */
  minDelay?: number;
  /** Largest backoff cap in ms. Default 10000. */
  maxDelay?: number;
  /** Default request timeout in ms; 0 for none. Default 10000. */
  requestTimeout?: number;
  /** Commands kept while not connected; beyond it the oldest is dropped. Default 100. */
  queueLimit?: number;
  /** Call connect() from the constructor. Default true. */
  autoConnect?: boolean;
  /** Resume token to present on the first connection. */
  session?: string;
  /**
   * Acknowledged delivery (acks=1 in the URL): messages sent to this client
   * (by id or by user) come numbered and are acknowledged, and a resume gets
   * again only those not received (duplicates are dropped). false turns it
   * all off. Default true.
   */
  acks?: boolean;
  /**
   * Number of the last numbered message received in the session given
   * (rocket.seq, saved with the session), presented as ack=N when resuming
   * it, so that nothing already received comes again. Default 0 (none).
   */
  seq?: number;
  /** WebSocket constructor to use. Default globalThis.WebSocket. */
  WebSocket?: new (url: string) => WebSocketLike;
  /** Where "online" events come from (default globalThis, the window in a browser): when the network comes back, a waiting reconnect happens at once. */
  network?: EventTarget;
}

/** The welcome frame's content, given to "open" listeners. */
export interface Welcome {
  client: string;
  server: string;
  session: string;
  resumed: boolean;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

/** Error of a failed request, an error frame, or a local failure. */
export declare class RocketError extends Error {
  constructor(code: string, message?: string, action?: string);
  readonly name: "RocketError";
  readonly code: RocketErrorCode;
  /** The action concerned, when known. */
  readonly action?: string;
}

export interface RocketLifecycleEvents {
  open: (welcome: Welcome) => void;
  state: (state: RocketState) => void;
  close: (info: CloseInfo) => void;
  error: (error: RocketError) => void;
}

/**
 * Listener of a pushed message, e.g. "Chat.message". "*" gets every one; a
 * pushed value that is not an object comes to "*" only, with name "".
 */
export type RocketMessageListener<T = any> = (data: T, name: string) => void;

export declare class Rocket {
  /**
   * @param url ws(s):// or http(s):// URL, or a path; defaults to ws(s)://<page host>/ws.
   */
  constructor(url?: string | URL, options?: RocketOptions);
  constructor(options: RocketOptions);

  /** The endpoint, without the session parameter. */
  readonly url: string;
  readonly options: Readonly<Required<Omit<RocketOptions, "WebSocket" | "session" | "seq" | "network">>> & RocketOptions;
  readonly state: RocketState;
  /** Client id from the last welcome. */
  clientId: string | null;
  /** Server (node) id from the last welcome. */
  serverId: string | null;
  /** Resume token of the current session. */
  session: string | null;
  /** Whether the last welcome resumed the previous session. */
  resumed: boolean;
  /**
   * Number of the last numbered (acknowledged) message received, 0 for none;
   * reset by a welcome that does not resume. Keep it with the session and
   * pass it back as the seq option.
   */
  readonly seq: number;
  /** Whether the last welcome turned acknowledged delivery on ("acks": true). */
  readonly acked: boolean;

  /** Opens the connection; no-op when already connecting or open. */
  connect(): this;
  /** Closes cleanly without reconnecting; pending requests are rejected with code "closed". */
  close(code?: number, reason?: string): this;
  /** Fire and forget; queued while not open. */
  send(name: string, args?: unknown): this;
  /** Several commands in one frame (array form), run in order. */
  sendBatch(commands: ReadonlyArray<readonly [name: string, args?: unknown]>): this;
  /** Sends a command and resolves with its result, or rejects with a RocketError. */
  request<T = any>(name: string, args?: unknown, options?: { timeout?: number }): Promise<T>;

  on<K extends keyof RocketLifecycleEvents>(event: K, fn: RocketLifecycleEvents[K]): this;
  on<T = any>(event: string, fn: RocketMessageListener<T>): this;
  off<K extends keyof RocketLifecycleEvents>(event: K, fn?: RocketLifecycleEvents[K]): this;
  off(event: string, fn?: RocketMessageListener): this;
}

export default Rocket;
