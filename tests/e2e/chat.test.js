// End-to-end: the lobby chat of the dashboard in headless Chromium against the local stack —
// the recent history on joining, who is online, and messages missed while the network was
// down recovered once each, in order.
//
// "The network drops" for a page: its browser context goes offline (`setOffline`: HTTP fails)
// and, since Chromium's offline emulation leaves an open WebSocket alone, the page's sockets
// are closed too and new ones refused until it is back online (a WebSocket wrapper installed
// before the page's scripts; the app and its client are unchanged).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, signIn as signInAt, startStack } from './support.js';

const GRACE_S = 2;

let stack;
let baseUrl;
let browser;

before(async () => {
  const started = await startStack({
    HEARTBEAT_INTERVAL_SECONDS: '1',
    DISCONNECT_GRACE_SECONDS: String(GRACE_S),
    EXPIRY_SCHEDULE_SECONDS: '1',
    ROLLUP_SCHEDULE_SECONDS: '30',
  });
  stack = started.child;
  baseUrl = started.url;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  stack?.kill('SIGINT');
});

/** Lets the test cut a page's WebSockets: `window.__net.blocked` refuses new ones. */
function socketSwitch() {
  const Native = window.WebSocket;
  const net = { blocked: false, sockets: [] };
  window.__net = net;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      // A closed port: the connection is refused, as with no network.
      super(net.blocked ? 'ws://127.0.0.1:9/offline' : url, protocols);
      net.sockets.push(this);
    }
  };
}

async function newContext() {
  const context = await browser.newContext();
  await context.addInitScript(socketSwitch);
  return context;
}

async function goOffline(context, page) {
  await context.setOffline(true);
  await page.evaluate(() => {
    window.__net.blocked = true;
    for (const ws of window.__net.sockets) if (ws.readyState <= 1) ws.close(4000, 'network down');
  });
  await page.waitForSelector('#connection:not([data-state="open"])', { timeout: 5_000 });
}

async function goOnline(context, page) {
  await context.setOffline(false);
  await page.evaluate(() => {
    window.__net.blocked = false;
    window.dispatchEvent(new Event('online')); // the client skips the rest of its backoff
  });
  await page.waitForSelector('#connection[data-state="open"]', { timeout: 10_000 });
}

const signIn = (context, user) => signInAt(baseUrl, context, user);

async function join(page) {
  await page.click('#chat-join');
  await page.waitForFunction(() => document.querySelector('#chat-state')?.textContent.trim() === 'joined', null, { timeout: 5_000 });
}

/** Sends `text` from the chat form; resolves once the server took it (the input clears). */
async function say(page, text) {
  await page.fill('#chat-input', text);
  await page.click('#chat-send');
  await page.waitForFunction(() => document.querySelector('#chat-input').value === '', null, { timeout: 5_000 });
}

/** The messages a page shows, in list order: `{seq, from, text, recovered}`. */
function shown(page) {
  return page.$$eval('#chat-messages li[data-kind="message"]', (items) =>
    items.map((li) => ({
      seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
      from: li.dataset.from ?? null,
      text: li.querySelector('.chat-text')?.textContent ?? '',
      recovered: li.dataset.recovered === 'true',
    })),
  );
}

/** Waits until the page shows every one of `texts`. */
async function waitForTexts(page, texts, timeout = 10_000) {
  await page.waitForFunction(
    (wanted) => {
      const have = new Set([...document.querySelectorAll('#chat-messages .chat-text')].map((n) => n.textContent));
      return wanted.every((t) => have.has(t));
    },
    texts,
    { timeout },
  );
}

const onlineUsers = (page) => page.$$eval('#chat-members li[data-user]', (items) => items.map((li) => li.dataset.user).sort());

async function waitForOnline(page, user, present, timeout) {
  await page.waitForFunction(
    ([u, p]) => Boolean(document.querySelector(`#chat-members li[data-user="${u}"]`)) === p,
    [user, present],
    { timeout },
  );
}

function assertInSeqOrderOnce(list, where) {
  const seqs = list.map((m) => m.seq);
  assert.ok(seqs.every((s) => Number.isInteger(s)), `${where}: every message has a seq`);
  for (let i = 1; i < seqs.length; i += 1) {
    assert.ok(seqs[i] > seqs[i - 1], `${where}: seq ${seqs[i]} after ${seqs[i - 1]} (shown once, in order)`);
  }
}

test('joining shows the recent history and who is online; messages missed offline are recovered once, in order', async () => {
  const run = Date.now().toString(36);
  const ctxA = await newContext();
  const ctxB = await newContext();
  try {
    // Bo joins first and talks.
    const bo = await signIn(ctxB, 'doctor-bo');
    await join(bo);
    await waitForOnline(bo, 'doctor-bo', true, 5_000);
    const early = [1, 2, 3].map((i) => `${run} before ${i}`);
    for (const text of early) await say(bo, text);

    // Ann joins: the last messages (history on join), and Bo online.
    const ann = await signIn(ctxA, 'nurse-ann');
    await join(ann);
    await ann.waitForSelector('#chat-messages[data-history="loaded"]', { timeout: 5_000 });
    await waitForTexts(ann, early);
    const loaded = await shown(ann);
    assertInSeqOrderOnce(loaded, 'history on join');
    assert.deepEqual(loaded.filter((m) => m.text.startsWith(run)).map((m) => m.text), early);
    assert.ok(loaded.every((m) => m.from === 'doctor-bo'));
    await waitForOnline(ann, 'doctor-bo', true, 5_000);
    assert.deepEqual(await onlineUsers(ann), ['doctor-bo', 'nurse-ann']);
    await waitForOnline(bo, 'nurse-ann', true, 5_000); // member.joined
    const annEntries = await ann.$$eval('#chat-members li', (items) => items.length);
    assert.equal(annEntries, 2, 'each online member once');

    // Live: one message seen by both, once.
    await say(ann, `${run} live`);
    await waitForTexts(bo, [`${run} live`]);
    await waitForTexts(ann, [`${run} live`]);

    // Ann's network drops; Bo sends 20 messages meanwhile.
    await goOffline(ctxA, ann);
    const missed = Array.from({ length: 20 }, (_, i) => `${run} missed ${i + 1}`);
    for (const text of missed) await say(bo, text);
    await waitForTexts(bo, missed);
    // Ann's last device is gone past the grace: Bo sees her offline.
    await waitForOnline(bo, 'nurse-ann', false, (GRACE_S + 15) * 1_000);
    assert.equal((await shown(ann)).filter((m) => m.text.includes(' missed ')).length, 0, 'nothing reached the offline page');

    // Back online: all 20 recovered, once each, in order, after what was shown before.
    await goOnline(ctxA, ann);
    await waitForTexts(ann, missed);
    await ann.waitForSelector('#chat-messages li[data-kind="recovered"]', { timeout: 5_000 });
    await new Promise((r) => setTimeout(r, 500)); // late duplicates, if any, would land now
    const after = await shown(ann);
    assertInSeqOrderOnce(after, 'after recovery');
    const mine = after.filter((m) => m.text.startsWith(run)).map((m) => m.text);
    assert.deepEqual(mine, [...early, `${run} live`, ...missed]);
    const recovered = after.filter((m) => m.text.includes(' missed '));
    assert.ok(recovered.every((m) => m.recovered && m.from === 'doctor-bo'), 'delivered by the recovery');
    const counts = await ann.$$eval('#chat-messages li[data-kind="recovered"]', (items) => items.map((li) => Number(li.dataset.count)));
    assert.deepEqual(counts, [20]);

    // Bo's view: every message once, in order; Ann online again, and Ann's list current.
    const boShown = await shown(bo);
    assertInSeqOrderOnce(boShown, 'sender');
    assert.deepEqual(boShown.filter((m) => m.text.startsWith(run)).map((m) => m.text), [...early, `${run} live`, ...missed]);
    await waitForOnline(bo, 'nurse-ann', true, 5_000); // member.online
    await waitForOnline(ann, 'doctor-bo', true, 5_000); // presence again after the re-join

    // Live again after the recovery.
    await say(bo, `${run} after`);
    await waitForTexts(ann, [`${run} after`]);
    const final = await shown(ann);
    assertInSeqOrderOnce(final, 'live after recovery');
    assert.equal(final.filter((m) => m.text === `${run} after`).length, 1);

    // Bo leaves: Ann's list drops him (member.left).
    await bo.click('#chat-leave');
    await waitForOnline(ann, 'doctor-bo', false, 5_000);
  } finally {
    await ctxA.close();
    await ctxB.close();
  }
});

test('a page that joins late loads the last 50 messages, without duplicates with live ones', async () => {
  const run = Date.now().toString(36);
  const ctxB = await newContext();
  const ctxC = await newContext();
  try {
    const bo = await signIn(ctxB, 'doctor-bo');
    await join(bo);
    const texts = Array.from({ length: 55 }, (_, i) => `${run} n${i + 1}`);
    for (const text of texts) await say(bo, text);

    const cy = await signIn(ctxC, 'porter-cy');
    await join(cy);
    await cy.waitForSelector('#chat-messages[data-history="loaded"]', { timeout: 5_000 });
    await say(bo, `${run} live`);
    await waitForTexts(cy, [`${run} live`]);
    const list = await shown(cy);
    assertInSeqOrderOnce(list, 'late joiner');
    assert.deepEqual(list.map((m) => m.text), [...texts.slice(-50), `${run} live`], 'the last 50, then the live one');
    await waitForOnline(cy, 'porter-cy', true, 5_000);
    await waitForOnline(cy, 'doctor-bo', true, 5_000);
  } finally {
    await ctxB.close();
    await ctxC.close();
  }
});
