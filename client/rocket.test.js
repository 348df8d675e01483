// Tests for rocket.js against a fake WebSocket. Run: node --test client/
import { test } from "node:test";
import assert from "node:assert/strict";
import { Rocket, RocketError } from "./rocket.js";
import DefaultRocket from "./rocket.js";

/** A scripted stand-in for the browser WebSocket. */
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = null;
    FakeSocket.all.push(this);
  }
  send(data) {
    if (this.closed) throw new Error("send on closed socket");
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    this.closed = { code, reason };
  }
  // test helpers: play the server
  push(obj) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  welcome(client = "c1", { session = "s-" + client, resumed = false, server = "n1", acks } = {}) {
    this.push({ welcome: { client, server, session, resumed, ...(acks === undefined ? {} : { acks }) } });
  }
  /** Plays a numbered (acknowledged delivery) message. */
  numbered(seq, message) {
    this.push({ seq, message });
  }
  /** The ack frames sent, as their numbers. */
  acks() {
    return this.sent.filter((f) => f && typeof f === "object" && "ack" in f).map((f) => f.ack);
  }
  drop(code = 1006, reason = "") {
    this.closed = { code, reason };
    this.onclose?.({ code, reason });
  }
  static last() {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }
}

const URL_ = "ws://example.test/ws";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fast = { WebSocket: FakeSocket, minDelay: 1, maxDelay: 5 };
const params = (ws) => new URL(ws.url).searchParams;

function open(opts = {}) {
  FakeSocket.all = [];
  const r = new Rocket(URL_, { ...fast, ...opts });
  return { r, ws: FakeSocket.last() };
}

test("exports", () => {
  assert.equal(DefaultRocket, Rocket);
  assert.ok(new RocketError("x") instanceof Error);
});

test("url defaults and resolution", () => {
  const r = new Rocket("http://h:8080/ws", { autoConnect: false, WebSocket: FakeSocket });
  assert.equal(r.url, "ws://h:8080/ws");
  assert.equal(r.state, "closed");
  assert.throws(() => new Rocket({ autoConnect: false })); // no location under node
  globalThis.location = { href: "https://chat.example:8443/room?x=1" };
  try {
    assert.equal(new Rocket({ autoConnect: false }).url, "wss://chat.example:8443/ws");
  } finally {
    delete globalThis.location;
  }
});

test("welcome, state and open events", () => {
  FakeSocket.all = [];
  const states = [];
  const r = new Rocket(URL_, { ...fast, autoConnect: false });
  r.on("state", (s) => states.push(s));
  let opened;
  r.on("open", (w) => (opened = w));
  r.connect();
  assert.equal(r.state, "connecting");
  FakeSocket.last().welcome("c1", { session: "tok" });
  assert.equal(r.state, "open");
  assert.deepEqual(opened, { client: "c1", server: "n1", session: "tok", resumed: false });
  assert.equal(r.clientId, "c1");
  assert.equal(r.serverId, "n1");
  assert.equal(r.session, "tok");
  assert.deepEqual(states, ["connecting", "open"]);
});

test("send, batch and queue order", () => {
  const { r, ws } = open();
  r.send("Chat.say", { room: "a", text: "1" });
  r.sendBatch([["Chat.join", { room: "a" }], ["Chat.leave"]]);
  assert.deepEqual(ws.sent, []);
  ws.welcome();
  r.send("Echo.echo", 3);
  assert.deepEqual(ws.sent, [
    { "Chat.say": { room: "a", text: "1" } },
    [{ "Chat.join": { room: "a" } }, { "Chat.leave": null }],
    { "Echo.echo": 3 },
  ]);
  assert.throws(() => r.send("ref", 1), TypeError);
});

test("open listeners send ahead of the queue", () => {
  const { r, ws } = open();
  r.send("Chat.say", "queued");
  r.on("open", () => r.send("Chat.join", "first"));
  ws.welcome();
  assert.deepEqual(ws.sent, [{ "Chat.join": "first" }, { "Chat.say": "queued" }]);
});

test("queue limit drops the oldest and emits error", async () => {
  const { r, ws } = open({ queueLimit: 2 });
  const errors = [];
  r.on("error", (e) => errors.push(e));
  const p = r.request("A.a", 0);
  r.send("B.b", 1);
  r.send("C.c", 2);
  await assert.rejects(p, { code: "queue_full" });
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "queue_full");
  ws.welcome();
  assert.deepEqual(ws.sent, [{ "B.b": 1 }, { "C.c": 2 }]);
});

test("request results and errors", async () => {
  const { r, ws } = open();
  ws.welcome();
  const a = r.request("Echo.echo", "hi");
  const b = r.request("Chat.say", {});
  assert.deepEqual(ws.sent, [{ ref: 1, "Echo.echo": "hi" }, { ref: 2, "Chat.say": {} }]);
  ws.push({ ref: 2, action: "Chat.say", error: { code: "bad_args", message: "room missing" } });
  ws.push({ ref: 1, action: "Echo.echo", result: "hi" });
  assert.equal(await a, "hi");
  await assert.rejects(b, (err) => err instanceof RocketError && err.code === "bad_args" &&
    err.message === "room missing" && err.action === "Chat.say");
});

test("request timeout removes it from the queue", async () => {
  const { r, ws } = open();
  await assert.rejects(r.request("Slow.op", 1, { timeout: 5 }), { code: "timeout" });
  ws.welcome();
  assert.deepEqual(ws.sent, []);
});

test("pushed messages and error frames", () => {
  const { r, ws } = open();
  ws.welcome();
  const got = [];
  const fn = (d, name) => got.push([name, d]);
  r.on("Chat.message", fn);
  r.on("*", (d, name) => got.push(["*", name]));
  r.on("error", (e) => got.push(["error", e.code, e.action]));
  ws.push({ "Chat.message": { from: "ada", text: "hi" } });
  ws.push({ error: { code: "unknown_action", message: "no", action: "Nope.x" } });
  r.off("Chat.message", fn);
  ws.push({ "Chat.message": 2 });
  ws.onmessage({ data: "not json" });
  assert.deepEqual(got, [
    ["Chat.message", { from: "ada", text: "hi" }],
    ["*", "Chat.message"],
    ["error", "unknown_action", "Nope.x"],
    ["*", "Chat.message"],
    ["error", "bad_frame", undefined],
  ]);
});

test("reconnect resumes the session and rejects requests in flight", async () => {
  const { r, ws } = open();
  const states = [];
  const closes = [];
  r.on("state", (s) => states.push(s));
  r.on("close", (c) => closes.push(c));
  ws.welcome("c1", { session: "tok 1" });
  const inflight = r.request("Echo.echo", 1);
  ws.drop(1001, "going away");
  await assert.rejects(inflight, { code: "closed" });
  assert.equal(r.state, "reconnecting");
  r.send("Chat.say", "while away");
  const queued = r.request("Echo.echo", 2);
  await sleep(20);
  const ws2 = FakeSocket.last();
  assert.notEqual(ws2, ws);
  assert.equal(new URL(ws2.url).searchParams.get("session"), "tok 1");
  ws2.welcome("c1", { session: "tok 2", resumed: true });
  assert.equal(r.resumed, true);
  assert.deepEqual(ws2.sent, [{ "Chat.say": "while away" }, { ref: 2, "Echo.echo": 2 }]);
  ws2.push({ ref: 2, action: "Echo.echo", result: 2 });
  assert.equal(await queued, 2);
  assert.deepEqual(closes, [{ code: 1001, reason: "going away" }]);
  assert.deepEqual(states, ["open", "reconnecting", "open"]);
  assert.equal(r.session, "tok 2");
});

test("backoff keeps retrying until a welcome", async () => {
  const { r, ws } = open();
  ws.drop();
  await sleep(15);
  FakeSocket.last().drop();
  await sleep(15);
  assert.ok(FakeSocket.all.length >= 3);
  assert.equal(r.state, "reconnecting");
  r.close();
  const n = FakeSocket.all.length;
  await sleep(15);
  assert.equal(FakeSocket.all.length, n);
});

test("close() is final and rejects everything", async () => {
  const { r, ws } = open();
  ws.welcome();
  const p = r.request("Echo.echo", 1);
  let closed;
  r.on("close", (c) => (closed = c));
  r.close();
  await assert.rejects(p, { code: "closed" });
  assert.equal(r.state, "closed");
  assert.deepEqual(ws.closed, { code: 1000, reason: "" });
  assert.deepEqual(closed, { code: 1000, reason: "" });
  await sleep(15);
  assert.equal(FakeSocket.all.length, 1);
  // connect() again works, with the old session
  r.connect();
  assert.equal(r.state, "connecting");
  assert.equal(new URL(FakeSocket.last().url).searchParams.get("session"), "s-c1");
});

test("reconnect: false stays closed", async () => {
  const { r, ws } = open({ reconnect: false });
  ws.welcome();
  ws.drop(1000);
  await sleep(15);
  assert.equal(r.state, "closed");
  assert.equal(FakeSocket.all.length, 1);
});

test("an online event reconnects at once instead of waiting out the backoff", async () => {
  const network = new EventTarget();
  const { r, ws } = open({ minDelay: 60_000, maxDelay: 60_000, network });
  ws.welcome();
  ws.drop(1006);
  assert.equal(r.state, "reconnecting");
  const before = FakeSocket.all.length;
  network.dispatchEvent(new Event("online"));
  assert.equal(FakeSocket.all.length, before + 1);
  FakeSocket.last().welcome("c1", { resumed: true });
  assert.equal(r.state, "open");
  r.close();
  network.dispatchEvent(new Event("online"));
  assert.equal(FakeSocket.all.length, before + 1, "no reconnect after close()");
});

test("a normal closure by the server is not reconnected", async () => {
  const { r, ws } = open();
  ws.welcome();
  ws.drop(1000, "bye");
  await sleep(15);
  assert.equal(r.state, "closed");
  assert.equal(FakeSocket.all.length, 1);
});

test("a going-away close is reconnected", async () => {
  const { r, ws } = open({ minDelay: 1, maxDelay: 2 });
  ws.welcome();
  ws.drop(1001, "server shutting down");
  await sleep(15);
  assert.equal(FakeSocket.all.length, 2);
  assert.notEqual(r.state, "closed");
});

test("listener errors do not break the client", async () => {
  const { r, ws } = open();
  const seen = [];
  const onUncaught = (err) => seen.push(err.message);
  process.prependListener("uncaughtException", onUncaught);
  const saved = process.listeners("uncaughtException").filter((l) => l !== onUncaught);
  for (const l of saved) process.removeListener("uncaughtException", l);
  try {
    r.on("open", () => { throw new Error("boom"); });
    r.send("A.a", 1);
    ws.welcome();
    assert.deepEqual(ws.sent, [{ "A.a": 1 }]);
    await sleep(5);
    assert.deepEqual(seen, ["boom"]);
  } finally {
    process.removeListener("uncaughtException", onUncaught);
    for (const l of saved) process.on("uncaughtException", l);
  }
});

test("1008 drops the session: the next connection starts afresh", async () => {
  const { r, ws } = open();
  ws.welcome("c1", { session: "tok" });
  ws.drop(1008, "replaced by a newer connection");
  await sleep(20);
  assert.equal(r.session, null);
  assert.equal(new URL(FakeSocket.last().url).search, "?acks=1"); // no session, no ack
  FakeSocket.last().welcome("c2");
  assert.equal(r.clientId, "c2");
  assert.equal(r.resumed, false);
});

test("4001 (user disconnected) drops the session and does not reconnect", async () => {
  const { r, ws } = open({ minDelay: 1, maxDelay: 2 });
  ws.welcome("c1", { session: "tok" });
  ws.drop(4001, "signed out everywhere");
  await sleep(15);
  assert.equal(r.session, null);
  assert.equal(r.state, "closed");
  assert.equal(FakeSocket.all.length, 1);
});

test("bare pushed values go to * with an empty name", () => {
  const { r, ws } = open();
  ws.welcome();
  const got = [];
  r.on("*", (d, name) => got.push([name, d]));
  ws.push(42);
  ws.push([{ "A.b": 1 }, { "C.d": 2 }]);
  assert.deepEqual(got, [["", 42], ["A.b", 1], ["C.d", 2]]);
});

// ---- acknowledged delivery ----

test("acks: the URL asks for them, unless acks: false", () => {
  const { r, ws } = open();
  assert.equal(params(ws).get("acks"), "1");
  assert.equal(params(ws).get("ack"), null, "nothing to acknowledge on a first connection");
  r.close();
  const off = open({ acks: false, session: "tok", seq: 7 });
  assert.equal(new URL(off.ws.url).search, "?session=tok");
  off.ws.welcome("c1", { session: "tok", resumed: true, acks: true });
  assert.equal(off.r.acked, false, "acks: false ignores the welcome's acks");
  off.r.close();
});

test("acks: numbered messages are unwrapped for the push handlers and *", () => {
  const { r, ws } = open();
  ws.welcome("c1", { acks: true });
  assert.equal(r.acked, true);
  const got = [];
  r.on("Chat.whisper", (d, name) => got.push([name, d]));
  r.on("*", (d, name) => got.push(["*", name, d]));
  ws.numbered(1, { "Chat.whisper": { from: "3", text: "hi" } });
  ws.numbered(2, 42);
  ws.numbered(3, [{ "A.b": 1 }, { "C.d": 2 }]);
  ws.push({ "Chat.message": { room: "a" } }); // room messages are not numbered
  assert.deepEqual(got, [
    ["Chat.whisper", { from: "3", text: "hi" }],
    ["*", "Chat.whisper", { from: "3", text: "hi" }],
    ["*", "", 42],
    ["*", "A.b", 1],
    ["*", "C.d", 2],
    ["*", "Chat.message", { room: "a" }],
  ]);
  assert.equal(r.seq, 3);
  r.close();
});

test("acks: duplicates are dropped, but acknowledged", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { r, ws } = open();
  ws.welcome("c1", { acks: true });
  const got = [];
  r.on("*", (d) => got.push(d));
  ws.numbered(1, { "A.a": 1 });
  ws.numbered(2, { "A.a": 2 });
  ws.numbered(2, { "A.a": "again" });
  ws.numbered(1, { "A.a": "again" });
  ws.numbered(3, { "A.a": 3 });
  assert.deepEqual(got, [1, 2, 3]);
  assert.equal(r.seq, 3);
  t.mock.timers.tick(100);
  assert.deepEqual(ws.acks(), [3]);
  ws.numbered(3, { "A.a": "again" }); // counts: the server may not know we have it
  t.mock.timers.tick(100);
  assert.deepEqual(ws.acks(), [3, 3]);
  assert.deepEqual(got, [1, 2, 3]);
  r.close();
});

test("acks: {ack: N} after 64 numbered messages, at once", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { r, ws } = open();
  ws.welcome("c1", { acks: true });
  for (let i = 1; i <= 63; i++) ws.numbered(i, { "A.a": i });
  assert.deepEqual(ws.acks(), []);
  ws.numbered(64, { "A.a": 64 });
  assert.deepEqual(ws.sent, [{ ack: 64 }], "a bare ack frame, no ref");
  for (let i = 65; i <= 128; i++) ws.numbered(i, { "A.a": i });
  assert.deepEqual(ws.acks(), [64, 128]);
  t.mock.timers.tick(1000);
  assert.deepEqual(ws.acks(), [64, 128], "nothing new since the last ack");
  r.close();
});

test("acks: {ack: N} 100 ms after the first unacknowledged message", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { r, ws } = open();
  ws.welcome("c1", { acks: true });
  ws.numbered(1, { "A.a": 1 });
  t.mock.timers.tick(60);
  ws.numbered(2, { "A.a": 2 });
  t.mock.timers.tick(39);
  assert.deepEqual(ws.acks(), []);
  t.mock.timers.tick(1);
  assert.deepEqual(ws.acks(), [2]);
  t.mock.timers.tick(500);
  assert.deepEqual(ws.acks(), [2], "no ack when nothing new came");
  ws.numbered(3, { "A.a": 3 });
  t.mock.timers.tick(100);
  assert.deepEqual(ws.acks(), [2, 3]);
  r.close();
});

test("acks: none without acks: true in the welcome", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { r, ws } = open();
  ws.welcome("c1"); // an older server
  assert.equal(r.acked, false);
  const got = [];
  r.on("*", (d, name) => got.push([name, d]));
  ws.numbered(1, { "A.a": 1 });
  for (let i = 0; i < 70; i++) ws.push({ "A.a": i });
  t.mock.timers.tick(1000);
  assert.deepEqual(ws.sent, []);
  assert.deepEqual(got[0], ["seq", 1], "not unwrapped: as before");
  assert.equal(r.seq, 0);
  r.close();
});

test("acks: pending acks are dropped on close and the timer cleared", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { r, ws } = open();
  ws.welcome("c1", { acks: true });
  ws.numbered(1, { "A.a": 1 });
  r.close();
  t.mock.timers.tick(1000);
  assert.deepEqual(ws.acks(), []);
  r.connect();
  const ws2 = FakeSocket.last();
  assert.equal(params(ws2).get("ack"), "1");
  ws2.welcome("c1", { resumed: true, acks: true });
  t.mock.timers.tick(1000);
  assert.deepEqual(ws2.sent, [], "nothing new on this connection");
  r.close();
});

test("acks: the resume URL carries ack=N", async () => {
  const { r, ws } = open();
  ws.welcome("c1", { session: "tok", acks: true });
  ws.numbered(1, { "A.a": 1 });
  ws.numbered(2, { "A.a": 2 });
  ws.drop(1006);
  await sleep(20);
  const ws2 = FakeSocket.last();
  assert.notEqual(ws2, ws);
  assert.equal(params(ws2).get("acks"), "1");
  assert.equal(params(ws2).get("session"), "tok");
  assert.equal(params(ws2).get("ack"), "2");
  assert.deepEqual(ws.acks(), [], "the drop came before the ack was due");
  ws2.welcome("c1", { session: "tok", resumed: true, acks: true });
  assert.equal(r.seq, 2, "a resume keeps the position");
  const got = [];
  r.on("*", (d) => got.push(d));
  ws2.numbered(2, { "A.a": 2 }); // sent again by the server
  ws2.numbered(3, { "A.a": 3 });
  assert.deepEqual(got, [3]);
  r.close();
});

test("acks: a welcome that does not resume resets seq", async () => {
  const { r, ws } = open({ session: "old", seq: 9 });
  assert.equal(r.seq, 9);
  ws.welcome("c2", { session: "new", resumed: false, acks: true });
  assert.equal(r.seq, 0, "a new client id numbers from 1 again");
  const got = [];
  r.on("*", (d) => got.push(d));
  ws.numbered(1, { "A.a": 1 });
  assert.deepEqual(got, [1]);
  assert.equal(r.seq, 1);
  ws.drop(1008); // the session is dropped: so is its position
  assert.equal(r.seq, 0);
  await sleep(20);
  assert.equal(params(FakeSocket.last()).get("ack"), null);
  r.close();
});

test("acks: the seq option restores the position with the session", () => {
  const { r, ws } = open({ session: "tok", seq: 41 });
  assert.equal(r.seq, 41);
  assert.equal(params(ws).get("session"), "tok");
  assert.equal(params(ws).get("ack"), "41");
  ws.welcome("c1", { session: "tok", resumed: true, acks: true });
  const got = [];
  r.on("*", (d) => got.push(d));
  ws.numbered(41, { "A.a": 41 });
  ws.numbered(42, { "A.a": 42 });
  assert.deepEqual(got, [42]);
  r.close();
  for (const seq of [-1, 1.5, "3", null]) {
    assert.equal(new Rocket(URL_, { ...fast, autoConnect: false, session: "tok", seq }).seq, 0, `seq ${seq}`);
  }
  const noSession = open({ seq: 5 });
  assert.equal(params(noSession.ws).get("ack"), null, "ack only with a session to resume");
  noSession.r.close();
});
