// Rocket demo chat: rooms, whispers, who is online, and session resume.
import { Rocket } from "/rocket.js";

const $ = (id) => document.getElementById(id);
const ui = {
  name: $("name"), room: $("room"), joinForm: $("join-form"), join: $("join"),
  rooms: $("rooms"), noRooms: $("no-rooms"),
  text: $("text"), say: $("say"), sayForm: $("say-form"),
  whisperTo: $("whisper-to"), whisperText: $("whisper-text"), whisperForm: $("whisper-form"),
  log: $("log"), state: $("state"), clientId: $("client-id"), copyId: $("copy-id"),
  roomTitle: $("room-title"), roomInfo: $("room-info"),
  members: $("members"), noMembers: $("no-members"), membersTitle: $("members-title"),
};

const MAX_ENTRIES = 500;
const CLOSE_REASONS = {
  1001: "the server is going away",
  1008: "policy violation",
  1009: "a message was too big",
  4008: "the connection was too slow",
};

/** Joined rooms: room -> unread count. */
const rooms = new Map();
/** Our chat name: the server keeps one per client, set by the last join. */
let myName = "";
/** Sender names whose client id we learned from whispers. */
const idsByName = new Map();
let current = null; // the room shown in the log
let connected = false;
let lastClientId = null;
let away = false; // true while the messages kept for us during a drop arrive
/** "room\ntext" of our own Chat.say not seen back yet: tells our messages from another tab's of the same name. */
const mySays = [];
/**
 * Who is present in each joined room, from Chat.who and then the
 * Chat.joined / Chat.left pushes: room -> client id -> {name, joinedAt}.
 * @type {Map<string, Map<string, {name: string, joinedAt: string | null}>>}
 */
const present = new Map();
/**
 * Rooms whose Chat.who is under way -> the pushes received meanwhile,
 * applied on top of its answer (a push may overtake the answer).
 * @type {Map<string, Array<["joined" | "left", {room: string, client: string, name: string}]>>}
 */
const whoPending = new Map();

// The tab remembers its session, name and rooms (sessionStorage: kept
// across a reload, not shared with other tabs), so that a reload resumes
// the session: same id, and what was sent meanwhile. With the session goes
// rocket.seq, the number of the last message sent to us (whispers: numbered,
// acknowledged delivery), so that the resume gets only those after it.
const STORE = "rocket-chat";
const saved = loadSaved();
let savedSeq = saved.seq ?? 0; // rocket.seq as last saved

const rocket = new Rocket({ session: saved.session, seq: saved.seq });
window.rocket = rocket; // handy from the console and in browser tests

// A numbered message moved rocket.seq: save it at once (the session is
// saved on open), so that a reload at any time resumes after it.
rocket.on("*", () => { if (rocket.seq !== savedSeq) save(); });
addEventListener("pagehide", save);

// ---- connection ----

let lastCloseCode = 0;
rocket.on("close", ({ code }) => { lastCloseCode = code; });

rocket.on("state", (state) => {
  renderState();
  if (!connected || state === "open") return; // failed attempts: the badge says enough
  connected = false;
  const why = CLOSE_REASONS[lastCloseCode];
  system(state === "reconnecting" ? `Connection lost${why ? ` (${why})` : ""}. Reconnecting…` : "Disconnected.");
});

rocket.on("open", ({ client, resumed }) => {
  ui.clientId.textContent = client;
  if (resumed) {
    divider(lastClientId === null ? `Welcome back: session resumed, your id is still ${client}` : "Reconnected: session resumed");
    away = true;
  } else if (lastClientId === null) {
    system(`Connected. Your id is ${client}.`);
  } else if (client !== lastClientId) {
    system(`Reconnected as a new client, id ${client}: the old session could not be resumed.`);
  } else {
    system("Reconnected.");
  }
  connected = true;
  lastClientId = client;
  save();
  renderState();
  // The server does not keep room membership (or presence) across a
  // reconnect.
  for (const room of rooms.keys()) {
    rocket.request("Chat.join", { room, name: myName, presence: true })
      .then(() => refreshWho(room))
      .catch((err) => showError(err, `Could not rejoin #${room}`));
  }
  if (away) {
    // The kept messages follow the welcome at once, so they are in before
    // the reply to this echo, which is sent after the re-joins.
    rocket.request("Echo.echo", "sync", { timeout: 5000 }).catch(() => {}).finally(() => { away = false; });
  }
});

rocket.on("error", (err) => showError(err));

rocket.on("Chat.message", (m) => {
  if (!m || typeof m !== "object") return;
  const room = String(m.room ?? "");
  const i = m.from === myName ? mySays.indexOf(`${room}\n${m.text}`) : -1;
  if (i >= 0) mySays.splice(i, 1);
  const self = i >= 0;
  addEntry({ kind: "message", room, who: m.from, id: self ? null : idsByName.get(m.from), text: m.text, self });
  if (rooms.has(room) && room !== current) {
    rooms.set(room, rooms.get(room) + 1);
    renderRooms();
  }
});

rocket.on("Chat.joined", (ev) => presencePush("joined", ev));
rocket.on("Chat.left", (ev) => presencePush("left", ev));

rocket.on("Chat.whisper", (w) => {
  if (!w || typeof w !== "object") return;
  if (w.name && w.from) idsByName.set(w.name, w.from);
  addEntry({ kind: "whisper", tag: "whisper from", who: w.name || w.from, id: w.from, text: w.text });
});

function renderState() {
  const s = rocket.state;
  const label = s === "open" ? (rocket.resumed ? "resumed" : "connected") : s === "closed" ? "offline" : s;
  ui.state.textContent = label;
  ui.state.dataset.state = label;
}

// ---- forms ----

ui.joinForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = ui.name.value.trim();
  const room = ui.room.value.trim();
  if (!name) return ui.name.focus();
  if (!room) return ui.room.focus();
  if (rooms.has(room) && name === myName) {
    switchTo(room);
    return ui.text.focus();
  }
  ui.join.disabled = true;
  try {
    const res = await rocket.request("Chat.join", { room, name, presence: true });
    myName = typeof res?.name === "string" && res.name ? res.name : name;
    if (myName !== name) ui.name.value = myName;
    rooms.set(room, 0);
    switchTo(room);
    const n = res && typeof res.members === "number" ? res.members : null;
    const members = n === null ? "" : ` (${n} ${n === 1 ? "member" : "members"} here)`;
    addEntry({ kind: "system", room, text: `You joined #${room} as ${myName}${members}.` });
    ui.text.focus();
    refreshWho(room);
  } catch (err) {
    showError(err, `Could not join #${room}`);
  } finally {
    ui.join.disabled = false;
  }
});

ui.sayForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.text.value.trim();
  const room = current;
  if (!text || !room) return;
  ui.text.value = "";
  const key = `${room}\n${text}`;
  mySays.push(key);
  if (mySays.length > 100) mySays.shift();
  rocket.request("Chat.say", { room, text }).catch((err) => {
    const i = mySays.indexOf(key);
    if (i >= 0) mySays.splice(i, 1);
    showError(err, `Not sent to #${room}`);
    if (!ui.text.value && current === room) ui.text.value = text; // give it back
  });
});

ui.whisperForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const to = ui.whisperTo.value.trim();
  const text = ui.whisperText.value.trim();
  if (!to) return ui.whisperTo.focus();
  if (!text) return ui.whisperText.focus();
  ui.whisperText.value = "";
  rocket.request("Chat.whisper", { to, text })
    .then(() => addEntry({ kind: "whisper", tag: "whisper to", who: nameFor(to), id: to, text, self: true }))
    .catch((err) => {
      showError(err, `Whisper to ${to} failed`);
      if (!ui.whisperText.value) ui.whisperText.value = text;
    });
});

ui.copyId.addEventListener("click", async () => {
  const id = rocket.clientId;
  if (!id) return;
  try {
    await navigator.clipboard.writeText(id);
    ui.copyId.textContent = "Copied";
  } catch {
    getSelection()?.selectAllChildren(ui.clientId); // let the user copy it
    ui.copyId.textContent = "Selected";
  }
  setTimeout(() => { ui.copyId.textContent = "Copy"; }, 1500);
});

// ---- rooms ----

/** @param {string | null} room */
function switchTo(room) {
  current = room;
  if (room !== null) rooms.set(room, 0);
  for (const li of ui.log.children) {
    if (li.dataset.room !== undefined) li.hidden = li.dataset.room !== room;
  }
  ui.roomTitle.textContent = room === null ? "No room" : `#${room}`;
  ui.roomInfo.textContent = room === null ? "" : `as ${myName}`;
  ui.text.disabled = ui.say.disabled = room === null;
  ui.text.placeholder = room === null ? "Join a room to chat" : `Message #${room}`;
  renderRooms();
  renderMembers();
  ui.log.scrollTop = ui.log.scrollHeight;
  save();
}

function leave(room) {
  rooms.delete(room);
  present.delete(room);
  whoPending.delete(room);
  save();
  rocket.request("Chat.leave", { room }).catch((err) => {
    if (err.code !== "closed") showError(err, `Could not leave #${room}`);
  });
  for (const li of [...ui.log.children]) if (li.dataset.room === room) li.remove();
  if (current === room) switchTo(rooms.keys().next().value ?? null);
  else renderRooms();
  system(`You left #${room}.`);
  (ui.rooms.querySelector(".room-btn") ?? ui.room).focus();
}

function renderRooms() {
  ui.rooms.replaceChildren(...[...rooms].map(([room, unread]) => {
    const li = el("li");
    const btn = el("button", "room-btn");
    btn.type = "button";
    btn.append(el("span", "room-name", room));
    if (room === current) btn.setAttribute("aria-current", "true");
    if (unread > 0) {
      const badge = el("span", "unread", String(unread));
      badge.setAttribute("aria-label", `${unread} unread`);
      btn.append(badge);
    }
    btn.addEventListener("click", () => { switchTo(room); ui.text.focus(); });
    const x = el("button", "leave-btn", "×");
    x.type = "button";
    x.title = `Leave #${room}`;
    x.setAttribute("aria-label", `Leave room ${room}`);
    x.addEventListener("click", () => leave(room));
    li.append(btn, x);
    return li;
  }));
  ui.noRooms.hidden = rooms.size > 0;
}

// ---- who is online ----

/**
 * Asks the server who is present in room, then applies on top the pushes
 * that arrived meanwhile.
 * @param {string} room
 */
async function refreshWho(room) {
  /** @type {Array<["joined" | "left", {room: string, client: string, name: string}]>} */
  const buffered = [];
  whoPending.set(room, buffered);
  renderMembers();
  try {
    const res = await rocket.request("Chat.who", { room });
    if (whoPending.get(room) !== buffered) return; // left, or a newer Chat.who runs
    whoPending.delete(room);
    const members = new Map();
    for (const m of Array.isArray(res?.members) ? res.members : []) {
      if (m && m.client !== undefined) {
        members.set(String(m.client), { name: String(m.name ?? m.client), joinedAt: typeof m.joined_at === "string" ? m.joined_at : null });
      }
    }
    present.set(room, members);
    for (const [kind, ev] of buffered) applyPresence(kind, ev);
  } catch (err) {
    if (whoPending.get(room) === buffered) whoPending.delete(room);
    if (err?.code !== "closed") showError(err, `Could not list who is in #${room}`);
  }
  renderMembers();
}

/**
 * Handles a Chat.joined or Chat.left push: notes it in the room's log and
 * updates the room's list (or keeps it for after the Chat.who under way).
 * @param {"joined" | "left"} kind
 */
function presencePush(kind, ev) {
  if (!ev || typeof ev !== "object") return;
  const room = String(ev.room ?? "");
  const client = String(ev.client ?? "");
  const name = String(ev.name || client);
  if (!rooms.has(room) || !client) return;
  const event = { room, client, name };
  const known = present.get(room)?.get(client);
  if (client !== rocket.clientId) {
    const listed = present.has(room) && !whoPending.has(room);
    if (kind === "left" && (known || !listed)) {
      addEntry({ kind: "presence", room, text: `${known?.name ?? name} left #${room}.` });
    } else if (kind === "joined" && !known) {
      addEntry({ kind: "presence", room, text: `${name} joined #${room}.` });
    } else if (kind === "joined" && known.name !== name) {
      addEntry({ kind: "presence", room, text: `${known.name} is now ${name}.` });
    }
  }
  const pending = whoPending.get(room);
  if (pending) pending.push([kind, event]);
  else applyPresence(kind, event);
  if (room === current) renderMembers();
}

/**
 * @param {"joined" | "left"} kind
 * @param {{room: string, client: string, name: string}} ev
 */
function applyPresence(kind, { room, client, name }) {
  let members = present.get(room);
  if (!members) {
    members = new Map();
    present.set(room, members);
  }
  if (kind === "left") {
    members.delete(client);
    return;
  }
  const known = members.get(client);
  members.set(client, { name, joinedAt: known?.joinedAt ?? new Date().toISOString() });
}

function renderMembers() {
  const room = current;
  const members = room === null ? undefined : present.get(room);
  ui.membersTitle.textContent = room === null ? "Online" : `Online in #${room}${members ? ` (${members.size})` : ""}`;
  const list = [...(members ?? new Map())].sort(([a, x], [b, y]) =>
    String(x.joinedAt ?? "").localeCompare(String(y.joinedAt ?? "")) || x.name.localeCompare(y.name) || a.localeCompare(b));
  ui.members.replaceChildren(...list.map(([id, m]) => {
    const li = el("li", id === rocket.clientId ? "member self" : "member");
    if (id === rocket.clientId) {
      li.append(el("span", "who", m.name), " ", el("span", "you", "(you)"));
    } else {
      const b = el("button", "who", m.name);
      b.type = "button";
      b.title = `Whisper to ${id}`;
      b.setAttribute("aria-label", `Whisper to ${m.name} (id ${id})`);
      b.addEventListener("click", () => {
        idsByName.set(m.name, id);
        ui.whisperTo.value = id;
        ui.whisperText.focus();
      });
      li.append(b);
    }
    const at = m.joinedAt ? new Date(m.joinedAt) : null;
    if (at && !Number.isNaN(at.getTime())) {
      const time = el("time", "since", `since ${at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`);
      time.dateTime = at.toISOString();
      time.title = `Joined ${at.toLocaleString()}`;
      li.append(" ", time);
    }
    return li;
  }));
  ui.noMembers.hidden = list.length > 0;
  ui.noMembers.textContent = room === null ? "Join a room to see who is in it." : !members ? "Loading…" : "Nobody here.";
}

// ---- log ----

/**
 * Appends a log entry. Entries with a room show only while it is current;
 * the others (whispers, notices) show always.
 * @param {{kind: string, text: unknown, room?: string, who?: string, id?: string | null, tag?: string, self?: boolean}} e
 */
function addEntry({ kind, text, room, who, id, tag, self }) {
  const li = el("li", `entry ${kind}${self ? " self" : ""}`);
  if (room !== undefined) {
    li.dataset.room = room;
    li.hidden = room !== current;
  }
  const now = new Date();
  const time = el("time", "", now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  time.dateTime = now.toISOString();
  li.append(time);
  if (away && (kind === "message" || kind === "whisper")) {
    li.classList.add("away");
    li.append(el("span", "tag away-tag", "while away"));
  }
  if (tag) li.append(el("span", "tag", tag));
  const body = el("span", "body");
  if (who) {
    if (id && id !== rocket.clientId) {
      const b = el("button", "who", String(who));
      b.type = "button";
      b.title = `Whisper to ${id}`;
      b.addEventListener("click", () => {
        ui.whisperTo.value = id;
        ui.whisperText.focus();
      });
      body.append(b);
    } else {
      body.append(el("span", "who", String(who)));
    }
    body.append(" ");
  }
  body.append(el("span", "text", String(text ?? "")));
  li.append(body);
  append(li);
}

function system(text) {
  addEntry({ kind: "system", text });
}

function showError(err, context) {
  const code = err?.code ? ` [${err.code}]` : "";
  const action = err?.action && !context ? `${err.action}: ` : "";
  addEntry({ kind: "error", text: `${context ? `${context}: ` : ""}${action}${err?.message ?? err}${code}` });
}

function divider(text) {
  append(el("li", "divider", text));
}

function append(li) {
  const log = ui.log;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  log.append(li);
  while (log.children.length > MAX_ENTRIES) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function nameFor(id) {
  for (const [name, known] of idsByName) if (known === id) return `${name} (${id})`;
  return id;
}

function el(tag, className = "", text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- memory of the tab ----

/** @returns {{session?: string, seq?: number, name?: string, rooms?: string[], current?: string}} */
function loadSaved() {
  try {
    const v = JSON.parse(sessionStorage.getItem(STORE) ?? "{}");
    const session = typeof v?.session === "string" ? v.session : undefined;
    return {
      session,
      seq: session && Number.isSafeInteger(v?.seq) && v.seq > 0 ? v.seq : undefined,
      name: typeof v?.name === "string" ? v.name : undefined,
      rooms: Array.isArray(v?.rooms) ? v.rooms.filter((r) => typeof r === "string" && r) : [],
      current: typeof v?.current === "string" ? v.current : undefined,
    };
  } catch {
    return {}; // storage disabled, or not ours
  }
}

function save() {
  savedSeq = rocket.seq;
  try {
    sessionStorage.setItem(STORE, JSON.stringify({ session: rocket.session, seq: rocket.seq, name: myName, rooms: [...rooms.keys()], current }));
  } catch { /* storage disabled or full */ }
}

// ---- start ----

// After a reload: the same name and rooms (rejoined once connected).
myName = saved.name ?? "";
ui.name.value = myName;
for (const room of saved.rooms ?? []) rooms.set(room, 0);
renderState();
if (rooms.size) switchTo(rooms.has(saved.current) ? saved.current : rooms.keys().next().value);
else renderRooms();
(ui.name.value ? ui.room : ui.name).focus();
