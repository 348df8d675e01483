// Two cmd/rocket nodes on one Redis. Ann's page is on node 1
// (ROCKET_E2E_URL); bob's comes through a TCP proxy (ROCKET_E2E_PROXY_URL)
// that forwards to node 2 while it lives, then to node 1. Run by
// go test ./e2e/ (TestCluster).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  control, env, join, launch, openChat, say, seen, seesMessage, seesWhisper, waitState, watchClose, whisper,
} from "./helpers.mjs";

const URL = env("ROCKET_E2E_URL");
const PROXY_URL = env("ROCKET_E2E_PROXY_URL");
const SERVER1 = env("ROCKET_E2E_SERVER1");
const SERVER2 = env("ROCKET_E2E_SERVER2");
/** @type {import("playwright-core").Browser} */
let browser;

before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("pages on two nodes chat and whisper; when bob's node stops, bob resumes on the other with nothing lost", { timeout: 60_000 }, async () => {
  const ann = await openChat(browser, URL);
  const bob = await openChat(browser, PROXY_URL);
  try {
    const serverOf = (p) => p.page.evaluate(() => window.rocket.serverId);
    assert.equal(await serverOf(ann), SERVER1, "ann is on node 1");
    assert.equal(await serverOf(bob), SERVER2, "bob is on node 2");

    await join(ann.page, "ann", "lobby");
    await join(bob.page, "bob", "lobby");
    await say(ann.page, "hello from node 1");
    await seesMessage(bob.page, "ann", "hello from node 1");
    await seesMessage(ann.page, "ann", "hello from node 1");
    await say(bob.page, "hello from node 2");
    await seesMessage(ann.page, "bob", "hello from node 2");
    await seesMessage(bob.page, "bob", "hello from node 2");
    await whisper(ann.page, bob.id, "psst, across nodes");
    await seesWhisper(bob.page, "ann", "psst, across nodes", { away: false });
    await whisper(bob.page, ann.id, "psst back, across nodes");
    await seesWhisper(ann.page, "bob", "psst back, across nodes", { away: false });

    // Node 2 stops gracefully: bob gets close 1001. The proxy holds bob's
    // reconnect until ann has whispered; then it goes to node 1 (node 2
    // refuses connections).
    const closed = await watchClose(bob.page);
    await control("hold");
    await control("stop-node2"); // returns once the process has exited
    assert.equal(await closed(), 1001);
    await waitState(bob.page, "reconnecting");
    await seen(bob.page, "system", "Connection lost (the server is going away)");
    const text = "sent while node 2 was gone";
    await whisper(ann.page, bob.id, text);
    await control("release");

    await waitState(bob.page, "resumed");
    assert.equal(await serverOf(bob), SERVER1, "bob resumed on node 1");
    assert.equal(await bob.page.locator("#client-id").textContent(), bob.id, "same client id");
    await seesWhisper(bob.page, "ann", text, { away: true });

    // Bob rejoined the room on node 1.
    await say(bob.page, "back, on node 1");
    await seesMessage(ann.page, "bob", "back, on node 1");
    await say(ann.page, "welcome to node 1");
    await seesMessage(bob.page, "ann", "welcome to node 1");
    ann.assertNoErrors();
    bob.assertNoErrors();
  } finally {
    await ann.context.close();
    await bob.context.close();
  }
});
