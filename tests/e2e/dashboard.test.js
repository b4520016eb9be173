// End-to-end: the dashboard in headless Chromium against the local stack.
//
// The stack runs with a short session TTL, so "offline" is observable in seconds. Each user
// gets their own browser context (their own browser, as far as the page can tell); one user
// with two pages shares a context (two tabs of one browser).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const TTL_S = 3;
const bin = process.env.PRESENCE_LOCAL_BIN ?? path.join(repo, 'target', 'debug', 'presence-local');

let stack;
let baseUrl;
let browser;

function startStack() {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['--http-port', '0', '--ws-port', '0', '--web-dir', path.join(repo, 'web')], {
      env: {
        ...process.env,
        SESSION_TTL_SECONDS: String(TTL_S),
        HEARTBEAT_INTERVAL_SECONDS: '1',
        EXPIRY_SCHEDULE_SECONDS: '30',
        ROLLUP_SCHEDULE_SECONDS: '30',
        RUST_LOG: process.env.RUST_LOG ?? 'warn',
        REDIS_URL: '',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`local stack did not start: ${out}`)), 60_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/dashboard:\s+(http:\/\/\S+?)\/\s/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
    child.on('exit', (code) => reject(new Error(`local stack exited with ${code}: ${out}`)));
  });
}

before(async () => {
  const started = await startStack();
  stack = started.child;
  baseUrl = started.url;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-quic', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
  stack?.kill('SIGINT');
});

async function signIn(context, user) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${user}] page error:`, e.message));
  await page.goto(`${baseUrl}/?user=${user}`);
  await page.waitForSelector('#connection[data-state="open"]', { timeout: 10_000 });
  return page;
}

/** Resolves when the facility's tile shows `status`; returns the ms it took from `since`. */
async function tileStatus(page, facility, status, timeoutMs) {
  await page.waitForFunction(
    ([f, s]) => document.querySelector(`[data-facility="${f}"]`)?.dataset.status === s,
    [facility, status],
    { timeout: timeoutMs, polling: 'raf' },
  );
  return Date.now();
}

test('a watcher sees another facility go online within a second and offline after the TTL', async () => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  try {
    const pageA = await signIn(a, 'nurse-ann');
    await tileStatus(pageA, 'st-olav-icu', 'online', 5_000); // A's own facility, by A's heartbeats
    assert.equal(await pageA.getAttribute('[data-facility="st-olav-er"]', 'data-status'), 'offline');

    // B signs in at st-olav-er; time from B's first heartbeat leaving the browser
    const pageB = await b.newPage();
    let firstBeat = null;
    pageB.on('request', (r) => {
      if (firstBeat === null && r.url().includes('/v1/heartbeats')) firstBeat = Date.now();
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
