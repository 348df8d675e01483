// Helpers for the browser tests: run by `go test ./e2e/`, which starts the
// servers and passes their addresses in ROCKET_E2E_* variables.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

/** How long one step (a page load, a message to arrive) may take, in ms. */
export const STEP = 10_000;

/** @param {string} name @returns {string} */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: these scripts are run by go test ./e2e/, which starts the servers`);
  return v;
}

/** Launches headless Chromium (Debian's, by default). */
export function launch() {
  return chromium.launch({
    executablePath: process.env.ROCKET_E2E_CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    ],
    timeout: 30_000,
  });
}

/**
 * Asks the Go test to act on the processes: hold, release, cut (the
 * proxy), left (wait until a node logged that a client left), stop-node2.
 * @param {string} action @param {Record<string, string>} [query]
 */
export async function control(action, query = {}) {
  const url = new URL(action, env("ROCKET_E2E_CONTROL"));
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const res = await fetch(url, { method: "POST", signal: AbortSignal.timeout(30_000) });
  const body = await res.text();
  if (!res.ok) throw new Error(`control ${action}: ${res.status} ${body.trim()}`);
}

/**
 * A chat page in a fresh browser context (its own profile: storage,
 * cookies), loaded from url and connected.
 * @param {import("playwright-core").Browser} browser @param {string} url
 */
export async function openChat(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1040, height: 780 } });
  context.setDefaultTimeout(STEP);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(err));
  await page.goto(url);
  await waitState(page, "connected");
  const id = await clientId(page);
  return {
    context, page, id,
    /** Fails when the page threw an uncaught error. */
    assertNoErrors() {
      assert.deepEqual(errors.map(String), [], "uncaught errors in the page");
    },
  };
}

/** The client id the page shows in #client-id. @param {import("playwright-core").Page} page */
export async function clientId(page) {
  const id = (await page.locator("#client-id").textContent())?.trim() ?? "";
  assert.match(id, /^[^\s…]+$/, "#client-id shows an id");
  return id;
}

/**
 * Waits until the #state badge reads state.
 * @param {import("playwright-core").Page} page @param {string} state
 */
export async function waitState(page, state) {
  try {
    await page.waitForFunction((s) => document.getElementById("state")?.textContent === s, state, { timeout: STEP });
  } catch (err) {
    const now = await page.locator("#state").textContent().catch(() => "?");
    throw new Error(`#state is ${JSON.stringify(now)}, not ${JSON.stringify(state)} after ${STEP} ms\nlog:\n${await logText(page)}`, { cause: err });
  }
}

/** The visible log, one entry a line, for failure messages. @param {import("playwright-core").Page} page */
export async function logText(page) {
  return page.locator("#log").evaluate((ol) =>
    [...ol.children].filter((li) => !li.hidden).map((li) => `  ${li.className}: ${li.textContent}`).join("\n"),
  ).catch(() => "(unavailable)");
}

/**
 * The log entry of the kind ("message", "whisper", "system", "error",
 * "divider") holding text.
 * @param {import("playwright-core").Page} page @param {string} kind @param {string} text
 */
export function entry(page, kind, text) {
  const sel = kind === "divider" ? "#log li.divider" : `#log li.entry.${kind}`;
  return page.locator(sel).filter({ hasText: text });
}

/**
 * Waits for exactly one such entry to be visible, and returns it.
 * @param {import("playwright-core").Page} page @param {string} kind @param {string} text
 */
export async function seen(page, kind, text) {
  const loc = entry(page, kind, text);
  try {
    await loc.waitFor({ state: "visible", timeout: STEP });
  } catch (err) {
    throw new Error(`no ${kind} entry ${JSON.stringify(text)} in ${page.url()} within ${STEP} ms\nlog:\n${await logText(page)}`, { cause: err });
  }
  assert.equal(await loc.count(), 1, `one ${kind} entry ${JSON.stringify(text)}`);
  return loc;
}

/** Joins room as name with the join form. @param {import("playwright-core").Page} page */
export async function join(page, name, room) {
  await page.locator("#name").fill(name);
  await page.locator("#room").fill(room);
  await page.locator("#join").click();
  await seen(page, "system", `You joined #${room} as ${name}`);
  assert.equal(await page.locator("#room-title").textContent(), `#${room}`);
  assert.ok(await page.locator("#text").isEnabled(), "#text is enabled once in a room");
}

/** Says text in the current room with the composer. @param {import("playwright-core").Page} page */
export async function say(page, text) {
  await page.locator("#text").fill(text);
  await page.locator("#say").click();
}

/**
 * Whispers text to client id with the whisper form, and waits for the
 * sender's "whisper to" entry (shown once the server accepted it).
 * @param {import("playwright-core").Page} page
 */
export async function whisper(page, to, text) {
  await page.locator("#whisper-to").fill(to);
  await page.locator("#whisper-text").fill(text);
  await page.locator("#whisper").click();
  const sent = await seen(page, "whisper", text);
  assert.match(await sent.textContent(), /whisper to/i);
  return sent;
}

/**
 * Waits for a chat message in the log and checks its sender.
 * @param {import("playwright-core").Page} page
 */
export async function seesMessage(page, from, text) {
  const li = await seen(page, "message", text);
  assert.equal((await li.locator(".who").textContent())?.trim(), from, `sender of ${JSON.stringify(text)}`);
  return li;
}

/**
 * Waits for a whisper received in the log and checks its sender; with away,
 * checks whether it is marked as arrived while away.
 * @param {import("playwright-core").Page} page
 * @param {{away?: boolean}} [opts]
 */
export async function seesWhisper(page, from, text, { away } = {}) {
  const li = await seen(page, "whisper", text);
  assert.match(await li.textContent(), /whisper from/i);
  assert.equal((await li.locator(".who").textContent())?.trim(), from, `sender of whisper ${JSON.stringify(text)}`);
  if (away !== undefined) {
    assert.equal(await li.evaluate((el) => el.classList.contains("away")), away, `whisper ${JSON.stringify(text)} marked as arrived while away`);
    assert.equal(await li.locator(".away-tag").count(), away ? 1 : 0);
    if (away) assert.equal((await li.locator(".away-tag").textContent())?.trim(), "while away");
  }
  return li;
}

/**
 * Starts recording the close codes rocket.js reports in the page; the
 * returned function waits for the first one after this call.
 * @param {import("playwright-core").Page} page
 * @returns {Promise<() => Promise<number>>}
 */
export async function watchClose(page) {
  await page.evaluate(() => {
    window.__closes = [];
    window.rocket.on("close", (e) => window.__closes.push(e.code));
  });
  return async () => {
    const h = await page.waitForFunction(() => window.__closes[0], null, { timeout: STEP });
    return h.jsonValue();
  };
}
