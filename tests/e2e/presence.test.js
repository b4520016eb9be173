// End-to-end: presence riding the socket, in headless Chromium against the local stack.
//
// - a change of leader between two tabs of one browser never shows the facility offline;
// - a hidden page stops getting region status events and catches up when shown again;
// - where no WebSocket can be opened, the HTTP heartbeat keeps the browser online.
//
// Short timings (TTL 6 s, interval 2 s, disconnect grace 3 s) make each visible in seconds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, signIn as signInAt, startStack, tileStatus } from './support.js';

const TTL_S = 6;
const GRACE_S = 3;

let stack;
let baseUrl;
let browser;

before(async () => {
  const started = await startStack({
    SESSION_TTL_SECONDS: String(TTL_S),
    HEARTBEAT_INTERVAL_SECONDS: '2',
    DISCONNECT_GRACE_SECONDS: String(GRACE_S),
    LOSS_HOLD_SECONDS: '0',
  });
  stack = started.child;
  baseUrl = started.url;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  stack?.kill('SIGINT');
});

const signIn = (context, user, query = '') => signInAt(baseUrl, context, `${user}${query}`);

/** Every status `page` shows for `facility` during `ms`, sampled every animation frame. */
async function statusesDuring(page, facility, ms) {
  return page.evaluate(
    ([f, ms]) =>
      new Promise((resolve) => {
        const seen = new Set();
        const end = performance.now() + ms;
        const look = () => {
          seen.add(document.querySelector(`[data-facility="${f}"]`)?.dataset.status);
          if (performance.now() < end) requestAnimationFrame(look);
          else resolve([...seen]);
        };
        look();
      }),
    [facility, ms],
  );
}

/** Makes the page report itself hidden (or visible), as a tab switch would. */
async function setHidden(page, hidden) {
  await page.evaluate((hidden) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

test('a change of leader between two tabs never shows the facility offline', async () => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  try {
    const watcher = await signIn(a, 'nurse-ann');
    const first = await signIn(b, 'doctor-bo');
    await tileStatus(watcher, 'st-olav-er', 'online', 5_000);
    const second = await signIn(b, 'doctor-bo');
    // the first tab leads (its socket carries the session); the second follows
    assert.equal(await first.isHidden('#leader'), false, 'the first tab leads');
    assert.equal(await second.isHidden('#leader'), true, 'the second tab follows');

    // the leader goes: the other tab takes the session over on its own socket
    await first.close({ runBeforeUnload: true });
    await second.waitForSelector('#leader:not([hidden])', { timeout: 5_000 });
    const seen = await statusesDuring(watcher, 'st-olav-er', (TTL_S + 3) * 1_000);
    assert.deepEqual(seen, ['online'], `the facility showed ${seen} during the leader change`);

    // the last tab goes: offline at once (its "ended" beacon) or within the grace
    const closed = Date.now();
    await second.close({ runBeforeUnload: true });
    const offline = await tileStatus(watcher, 'st-olav-er', 'offline', (GRACE_S + 2) * 1_000);
    console.log(`offline ${offline - closed} ms after the last tab closed`);
  } finally {
    await a.close();
    await b.close();
  }
});

test('a hidden page gets no region status events, and catches up when shown again', async () => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  try {
    const watcher = await signIn(a, 'nurse-ann', '&hidden_grace_ms=300');
    await tileStatus(watcher, 'st-olav-er', 'offline', 5_000);
    await setHidden(watcher, true);
    // past the grace the page says so; give the one-way frame a moment to land
    await watcher.waitForTimeout(1_000);

    const other = await signIn(b, 'doctor-bo');
    await tileStatus(other, 'st-olav-er', 'online', 5_000);
    const seen = await statusesDuring(watcher, 'st-olav-er', 1_500);
    assert.deepEqual(seen, ['offline'], 'a hidden page still received the region event');

    const shown = Date.now();
    await setHidden(watcher, false);
    await tileStatus(watcher, 'st-olav-er', 'online', 2_000);
    console.log(`shown again: caught up after ${Date.now() - shown} ms`);
  } finally {
    await a.close();
    await b.close();
  }
});

test('without a WebSocket the leader keeps the browser online over HTTP', async () => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  try {
    const watcher = await signIn(a, 'nurse-ann');
    await tileStatus(watcher, 'st-olav-er', 'offline', 5_000);

    // a browser where no WebSocket can be opened (a proxy that refuses upgrades, say)
    await b.addInitScript(() => {
      Object.defineProperty(window, 'WebSocket', { configurable: true, value: undefined });
    });
    const page = await b.newPage();
    let posts = 0;
    page.on('request', (r) => {
      if (r.url().includes('/v1/heartbeats') && r.method() === 'POST') posts += 1;
    });
    await page.goto(`${baseUrl}/?user=doctor-bo`);
    await tileStatus(watcher, 'st-olav-er', 'online', 5_000);
    // it stays online across several TTLs, on HTTP heartbeats alone
    const seen = await statusesDuring(watcher, 'st-olav-er', (TTL_S + 2) * 1_000);
    assert.deepEqual(seen, ['online']);
    assert.ok(posts >= 3, `${posts} HTTP heartbeats`);
  } finally {
    await a.close();
    await b.close();
  }
});
