// End-to-end: the dashboard in headless Chromium against the local stack.
//
// The stack runs with a short session TTL, so "offline" is observable in seconds. Each user
// gets their own browser context (their own browser, as far as the page can tell); one user
// with two pages shares a context (two tabs of one browser).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { here, launchBrowser, signIn as signInAt, startStack, tileStatus } from './support.js';

const TTL_S = 3;

let stack;
let baseUrl;
let browser;

before(async () => {
  const started = await startStack({
    SESSION_TTL_SECONDS: String(TTL_S),
    HEARTBEAT_INTERVAL_SECONDS: '1',
    EXPIRY_SCHEDULE_SECONDS: '30',
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

const signIn = (context, user) => signInAt(baseUrl, context, user);

test('a watcher sees another facility go online within a second and offline after the TTL', async () => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  try {
    const pageA = await signIn(a, 'nurse-ann');
    await tileStatus(pageA, 'st-olav-icu', 'online', 5_000); // A's own facility, by A's heartbeats
    assert.equal(await pageA.getAttribute('[data-facility="st-olav-er"]', 'data-status'), 'offline');

    // B signs in at st-olav-er; time from B's first heartbeat leaving the browser: its leader
    // tab's socket opening with the session (presence rides the socket)
    const pageB = await b.newPage();
    let firstBeat = null;
    pageB.on('websocket', (ws) => {
      if (firstBeat === null && ws.url().includes('session_id=')) firstBeat = Date.now();
    });
    await pageB.goto(`${baseUrl}/?user=doctor-bo`);
    const online = await tileStatus(pageA, 'st-olav-er', 'online', 5_000);
    assert.ok(firstBeat !== null, 'B sent a heartbeat');
    const onlineMs = online - firstBeat;
    console.log(`online seen by A ${onlineMs} ms after B's first heartbeat`);
    assert.ok(onlineMs <= 1_000, `online after ${onlineMs} ms`);

    const shot = path.join(here, 'artifacts');
    mkdirSync(shot, { recursive: true });
    await pageA.screenshot({ path: path.join(shot, 'dashboard.png'), fullPage: true });

    // B closes the page: offline within TTL + 2 s
    const closed = Date.now();
    await pageB.close({ runBeforeUnload: true });
    const offline = await tileStatus(pageA, 'st-olav-er', 'offline', (TTL_S + 2) * 1_000 + 500);
    const offlineMs = offline - closed;
    console.log(`offline seen by A ${offlineMs} ms after B closed the page`);
    assert.ok(offlineMs <= (TTL_S + 2) * 1_000, `offline after ${offlineMs} ms`);
  } finally {
    await a.close();
    await b.close();
  }
});

test('leaving a chat in one page leaves it in every page of that user', async () => {
  const ctx = await browser.newContext();
  try {
    const one = await signIn(ctx, 'lab-dee');
    const two = await signIn(ctx, 'lab-dee');
    await one.click('#chat-join');
    for (const p of [one, two]) {
      await p.waitForFunction(() => document.querySelector('#chat-state')?.textContent.trim() === 'joined', null, { timeout: 5_000 });
    }
    await two.click('#chat-leave');
    for (const p of [one, two]) {
      await p.waitForFunction(() => document.querySelector('#chat-state')?.textContent.trim() === 'left', null, { timeout: 5_000 });
    }
  } finally {
    await ctx.close();
  }
});
