// A page whose connection drops comes back with the same client id and
// gets what was sent to it meanwhile. One cmd/rocket node at
// ROCKET_E2E_URL, and a TCP proxy in front of it at ROCKET_E2E_PROXY_URL
// that the Go test can hold and cut (control). Run by go test ./e2e/
// (TestResume).
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  control, env, join, launch, openChat, say, seen, seesMessage, seesWhisper, waitState, watchClose, whisper,
} from "./helpers.mjs";

const URL = env("ROCKET_E2E_URL");
const PROXY_URL = env("ROCKET_E2E_PROXY_URL");
/** @type {import("playwright-core").Browser} */
let browser;

before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/**
 * Ann (direct) and bob (at bobURL) chat in a room; drop(bob) takes bob's
 * connection away and keeps it away; ann whispers to bob once the server
 * has bob as away; restore(bob) lets bob reconnect. Bob must resume: same
 * id, state "resumed", the whisper shown as arrived while away, and the
 * room rejoined.
 */
async function dropAndResume({ bobURL, drop, restore, screenshot }) {
  const ann = await openChat(browser, URL);
  const bob = await openChat(browser, bobURL);
  try {
    await join(ann.page, "ann", "lobby");
    await join(bob.page, "bob", "lobby");
    await say(ann.page, "hi bob!");
    await seesMessage(bob.page, "ann", "hi bob!");
    await say(bob.page, "hey ann, how is it going?");
    await seesMessage(ann.page, "bob", "hey ann, how is it going?");
    await whisper(ann.page, bob.id, "got a minute?");
    await seesWhisper(bob.page, "ann", "got a minute?", { away: false });

    await drop(bob);
    await waitState(bob.page, "reconnecting");
    await seen(bob.page, "system", "Connection lost");
    await control("left", { client: bob.id }); // the server has bob as away
    const text = "ping me when you are back";
    await whisper(ann.page, bob.id, text);
    assert.equal(await bob.page.locator("#state").textContent(), "reconnecting", "bob is still away");

    await restore(bob);
    await waitState(bob.page, "resumed");
    assert.equal(await bob.page.locator("#client-id").textContent(), bob.id, "same client id after the resume");
    assert.equal(await bob.page.evaluate(() => window.rocket.resumed), true);
    await seen(bob.page, "divider", "Reconnected: session resumed");
    await seesWhisper(bob.page, "ann", text, { away: true });
    // Nothing twice, and the whisper comes after the divider.
    const order = await bob.page.locator("#log > li").evaluateAll((lis, t) => {
      const i = lis.findIndex((li) => li.classList.contains("divider"));
      const j = lis.findIndex((li) => li.textContent.includes(t));
      return { divider: i, whisper: j };
    }, text);
    assert.ok(order.divider >= 0 && order.whisper > order.divider, `whisper after the divider: ${JSON.stringify(order)}`);

    // The room was rejoined: bob's new messages reach ann, and ann's bob.
    await say(bob.page, "sorry, my connection dropped");
    await seesMessage(ann.page, "bob", "sorry, my connection dropped");
    await seesMessage(bob.page, "bob", "sorry, my connection dropped");
    await say(ann.page, "no worries, welcome back");
    await seesMessage(bob.page, "ann", "no worries, welcome back");
    // Messages from now on are not marked as arrived while away.
    assert.equal(await seen(bob.page, "message", "no worries, welcome back")
      .then((li) => li.evaluate((el) => el.classList.contains("away"))), false);

    if (screenshot) {
      const dir = env("ROCKET_E2E_ARTIFACTS");
      await mkdir(dir, { recursive: true });
      await bob.page.screenshot({ path: path.join(dir, screenshot) });
    }
    ann.assertNoErrors();
    bob.assertNoErrors();
  } finally {
    await ann.context.close();
    await bob.context.close();
  }
}

test("offline: the page goes offline and its socket closes, then it resumes", { timeout: 60_000 }, async () => {
  await dropAndResume({
    bobURL: URL,
    // Offline emulation does not close an open WebSocket in Chromium:
    // close it as the network would, with a code that asks for a reconnect.
    // Reconnect attempts fail while offline.
    drop: async (bob) => {
      await bob.context.setOffline(true);
      await bob.page.evaluate(() => window.rocket._ws.close(4000, "e2e: offline"));
    },
    restore: (bob) => bob.context.setOffline(false),
    screenshot: "chat-resumed.png",
  });
});

test("the page closes its socket with code 4000, then it resumes", { timeout: 60_000 }, async () => {
  await dropAndResume({
    bobURL: PROXY_URL,
    // The proxy holds bob's reconnect attempts until restore.
    drop: async (bob) => {
      await control("hold");
      await bob.page.evaluate(() => window.rocket._ws.close(4000, "e2e"));
    },
    restore: () => control("release"),
  });
});

test("the network cuts the TCP connection (1006), then it resumes", { timeout: 60_000 }, async () => {
  await dropAndResume({
    bobURL: PROXY_URL,
    drop: async (bob) => {
      const closed = await watchClose(bob.page);
      await control("hold");
      await control("cut");
      assert.equal(await closed(), 1006);
    },
    restore: () => control("release"),
  });
});
