// The chat page and rocket.js against one cmd/rocket node
// (ROCKET_E2E_URL, its HTTP port). Run by go test ./e2e/ (TestChat).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  clientId, control, env, join, launch, openChat, say, seen, seesMessage, seesWhisper, STEP, waitState, whisper,
} from "./helpers.mjs";

const URL = env("ROCKET_E2E_URL");
/** @type {import("playwright-core").Browser} */
let browser;

before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("two pages chat in a room and see each other's messages", { timeout: 60_000 }, async () => {
  const ann = await openChat(browser, URL);
  const bob = await openChat(browser, URL);
  try {
    assert.notEqual(ann.id, bob.id, "two pages, two client ids");
    await join(ann.page, "ann", "lobby");
    await join(bob.page, "bob", "lobby");

    await say(ann.page, "hello from ann");
    for (const p of [ann, bob]) await seesMessage(p.page, "ann", "hello from ann");
    await say(bob.page, "hi ann, bob here");
    for (const p of [ann, bob]) await seesMessage(p.page, "bob", "hi ann, bob here");

    // One's own messages are marked as such, the others' are not.
    const own = await seen(ann.page, "message", "hello from ann");
    const other = await seen(ann.page, "message", "hi ann, bob here");
    assert.ok(await own.evaluate((li) => li.classList.contains("self")));
    assert.ok(!(await other.evaluate((li) => li.classList.contains("self"))));
    assert.equal(await ann.page.locator("#text").inputValue(), "", "the composer is emptied");

    // A room the other did not join stays private.
    await join(ann.page, "ann", "kitchen");
    await say(ann.page, "only in the kitchen");
    await seesMessage(ann.page, "ann", "only in the kitchen");
    await say(bob.page, "still in the lobby");
    await seesMessage(bob.page, "bob", "still in the lobby");
    assert.equal(await bob.page.locator("#log li.entry").filter({ hasText: "only in the kitchen" }).count(), 0);
    // Ann got bob's lobby message while looking at the kitchen: an unread badge.
    await ann.page.locator("#rooms .room-btn", { hasText: "lobby" }).locator(".unread").waitFor();
    ann.assertNoErrors();
    bob.assertNoErrors();
  } finally {
    await ann.context.close();
    await bob.context.close();
  }
});

test("a whisper reaches the page whose id it names", { timeout: 60_000 }, async () => {
  const ann = await openChat(browser, URL);
  const bob = await openChat(browser, URL);
  try {
    await join(ann.page, "ann", "lobby");
    await join(bob.page, "bob", "lobby");

    await whisper(bob.page, ann.id, "psst, ann");
    const got = await seesWhisper(ann.page, "bob", "psst, ann", { away: false });
    assert.equal(await bob.page.locator("#log li.entry.whisper", { hasText: "whisper from" }).count(), 0,
      "the sender sees only its 'whisper to'");

    // Clicking the sender's name fills the whisper form with its id.
    await got.locator("button.who").click();
    assert.equal(await ann.page.locator("#whisper-to").inputValue(), bob.id);
    await whisper(ann.page, bob.id, "psst back, bob");
    await seesWhisper(bob.page, "ann", "psst back, bob", { away: false });

    // A whisper to no one is refused, and the text is given back.
    await ann.page.locator("#whisper-to").fill("no-such-client");
    await ann.page.locator("#whisper-text").fill("hello?");
    await ann.page.locator("#whisper").click();
    const err = await seen(ann.page, "error", "Whisper to no-such-client failed");
    assert.match(await err.textContent(), /\[bad_args\]/);
    assert.equal(await ann.page.locator("#whisper-text").inputValue(), "hello?");
    ann.assertNoErrors();
    bob.assertNoErrors();
  } finally {
    await ann.context.close();
    await bob.context.close();
  }
});

test("tabs: a new tab is a new client; a reloaded tab resumes its session", { timeout: 60_000 }, async () => {
  const bob = await openChat(browser, URL);
  const context = await browser.newContext({ viewport: { width: 1040, height: 780 } });
  context.setDefaultTimeout(10_000);
  try {
    const errors = [];
    context.on("weberror", (e) => errors.push(String(e.error())));
    const tab1 = await context.newPage();
    await tab1.goto(URL);
    await waitState(tab1, "connected");
    const id1 = await clientId(tab1);
    await join(tab1, "ann", "lobby");
    await join(bob.page, "bob", "lobby");

    // A second tab of the same browser starts a client of its own, and
    // does not take the first tab's name.
    const tab2 = await context.newPage();
    await tab2.goto(URL);
    await waitState(tab2, "connected");
    const id2 = await clientId(tab2);
    assert.notEqual(id2, id1);
    assert.equal(await tab2.locator("#name").inputValue(), "");
    // Even under the same name, only a tab's own messages are its own.
    await join(tab2, "ann", "lobby");
    await say(tab2, "from the second ann");
    const mine = await seesMessage(tab2, "ann", "from the second ann");
    const theirs = await seesMessage(tab1, "ann", "from the second ann");
    assert.ok(await mine.evaluate((li) => li.classList.contains("self")), "own message marked self");
    assert.ok(!(await theirs.evaluate((li) => li.classList.contains("self"))), "the other tab's message not marked self");
    await tab2.close();

    // Reload, with a whisper sent while the tab is gone.
    await tab1.goto("about:blank");
    await control("left", { client: id1 });
    await whisper(bob.page, id1, "while you were reloading");
    await tab1.goto(URL);
    await waitState(tab1, "resumed");
    assert.equal(await clientId(tab1), id1, "same client id after the reload");
    await seen(tab1, "divider", "Welcome back: session resumed");
    await seesWhisper(tab1, "bob", "while you were reloading", { away: true });
    assert.equal(await tab1.locator("#name").inputValue(), "ann");
    assert.equal(await tab1.locator("#room-title").textContent(), "#lobby");
    // The room was rejoined.
    await say(tab1, "ann is back");
    await seesMessage(bob.page, "ann", "ann is back");
    await seesMessage(tab1, "ann", "ann is back");
    assert.deepEqual(errors, []);
    bob.assertNoErrors();
  } finally {
    await context.close();
    await bob.context.close();
  }
});

/**
 * Waits until the page's online list shows #room with names, in order.
 * @param {import("playwright-core").Page} page @param {string} room @param {string[]} names
 */
async function online(page, room, names) {
  try {
    await page.waitForFunction(({ room, names }) => {
      const title = document.getElementById("members-title")?.textContent;
      const shown = [...document.querySelectorAll("#members li .who")].map((el) => el.textContent);
      return title === `Online in #${room} (${names.length})` && JSON.stringify(shown) === JSON.stringify(names);
    }, { room, names }, { timeout: STEP });
  } catch (err) {
    const now = await page.locator(".members-card").textContent().catch(() => "?");
    throw new Error(`online list is ${JSON.stringify(now)}, want #${room} with ${JSON.stringify(names)}`, { cause: err });
  }
}

test("the online list shows who is in the room, updated live", { timeout: 60_000 }, async () => {
  const ann = await openChat(browser, URL);
  const bob = await openChat(browser, URL);
  try {
    await join(ann.page, "ann", "garden");
    await online(ann.page, "garden", ["ann"]);
    await join(bob.page, "bob", "garden");
    await online(bob.page, "garden", ["ann", "bob"]);
    await online(ann.page, "garden", ["ann", "bob"]);
    await seen(ann.page, "presence", "bob joined #garden");
    // A member's name fills the whisper form with its id.
    await ann.page.locator("#members button.who", { hasText: "bob" }).click();
    assert.equal(await ann.page.locator("#whisper-to").inputValue(), bob.id);

    // bob leaves the room, then comes back, then closes his tab.
    await bob.page.getByRole("button", { name: "Leave room garden" }).click();
    await online(ann.page, "garden", ["ann"]);
    await seen(ann.page, "presence", "bob left #garden");
    await join(bob.page, "bob", "garden");
    await online(ann.page, "garden", ["ann", "bob"]);
    await bob.context.close();
    await online(ann.page, "garden", ["ann"]);
    ann.assertNoErrors();
  } finally {
    await ann.context.close();
    await bob.context.close();
  }
});

test("rocket.js in the browser: requests, errors, batches, pushes, resume", { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(new globalThis.URL("/rocket.js", URL).href); // same origin, no chat page
    const r = await page.evaluate(async () => {
      const { Rocket, RocketError } = await import("/rocket.js");
      const out = {};
      const within = (p, what) => Promise.race([p, new Promise((_, reject) => {
        setTimeout(() => reject(new Error(`no ${what} within 5 s`)), 5000);
      })]);
      const rocket = new Rocket({ requestTimeout: 5000 });
      const states = [];
      rocket.on("state", (s) => states.push(s));
      // Sent before the connection is open: queued, then flushed.
      out.echo = await rocket.request("Echo.echo", { a: [1, 2], s: "é✓" });
      out.url = rocket.url;
      out.first = { client: rocket.clientId, resumed: rocket.resumed, state: rocket.state };
      try {
        await rocket.request("Nope.nothing", 1);
      } catch (e) {
        out.unknown = { isRocketError: e instanceof RocketError, code: e.code, action: e.action };
      }
      // A failed command without ref comes as an "error" event.
      const evError = new Promise((resolve) => rocket.on("error", (e) => resolve({ code: e.code, action: e.action })));
      rocket.send("Chat.say", { room: "nowhere", text: "x" });
      out.errorEvent = await within(evError, "error event");
      // A batch runs in order: join, then say; the push comes back.
      const pushed = new Promise((resolve) => rocket.on("Chat.message", resolve));
      rocket.sendBatch([["Chat.join", { room: "r", name: "js" }], ["Chat.say", { room: "r", text: "batched" }]]);
      out.pushed = await within(pushed, "Chat.message");
      // Resuming: a new Rocket with the session token gets the same id.
      const session = rocket.session;
      rocket.close();
      out.closedState = rocket.state;
      const again = new Rocket({ session });
      await within(new Promise((resolve) => again.on("open", resolve)), "open");
      out.second = { client: again.clientId, resumed: again.resumed };
      // Acknowledged delivery: whispers come numbered; one received
      // before the connection closes is not sent again on resume, one
      // sent while away is.
      const other = new Rocket({ requestTimeout: 5000 });
      const whispered = new Promise((resolve) => again.on("Chat.whisper", resolve));
      await other.request("Chat.whisper", { to: again.clientId, text: "n1" });
      out.whisper1 = (await within(whispered, "whisper n1")).text;
      out.acked = { acked: again.acked, seq: again.seq };
      again.close();
      await other.request("Chat.whisper", { to: again.clientId, text: "n2" });
      const third = new Rocket({ session, seq: again.seq });
      const got = [];
      third.on("Chat.whisper", (w) => got.push(w.text));
      await within(new Promise((resolve) => third.on("open", resolve)), "open");
      await third.request("Echo.echo", 1); // after the mail
      out.third = { resumed: third.resumed, got, seq: third.seq };
      third.close();
      other.close();
      out.states = states;
      return out;
    });
    assert.deepEqual(r.echo, { a: [1, 2], s: "é✓" });
    assert.match(r.url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/, "default endpoint: /ws of the page's host");
    assert.equal(r.first.resumed, false);
    assert.equal(r.first.state, "open");
    assert.deepEqual(r.unknown, { isRocketError: true, code: "unknown_action", action: "Nope.nothing" });
    assert.deepEqual(r.errorEvent, { code: "unauthorized", action: "Chat.say" });
    assert.deepEqual(r.pushed, { room: "r", from: "js", text: "batched" });
    assert.equal(r.closedState, "closed");
    assert.deepEqual(r.second, { client: r.first.client, resumed: true });
    assert.equal(r.whisper1, "n1");
    assert.deepEqual(r.acked, { acked: true, seq: 1 });
    assert.deepEqual(r.third, { resumed: true, got: ["n2"], seq: 2 });
    assert.deepEqual(r.states, ["open", "closed"]);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
