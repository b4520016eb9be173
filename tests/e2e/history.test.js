// End-to-end: facility history on the dashboard, in headless Chromium against the local stack.
//
// A user at st-olav-er comes online for a few seconds and signs out; the rollup (every second
// here) persists the two flips and the session's segment to the facility history. Then:
// - a watcher's tile shows it on its 24 h bar (an online segment that ended) with the
//   availability from /availability, and fetches that tile's history at most once per 10 s;
// - a page opened afterwards draws the online segment from the history alone; its facility view
//   (a click on the tile, or Enter on its link) lists the flips page by page through the cursor,
//   exactly those of the API, says who was online at an instant, and downloads them as CSV;
// - axe-core finds no WCAG 2.0/2.1 A/AA violation (nor best-practice ones) on the board and on
//   the facility view (light and dark), and at 375 px wide nothing scrolls sideways and the
//   tiles stack.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { here, launchBrowser, signIn as signInAt, startStack, tileStatus } from './support.js';

const AXE = path.join(here, 'node_modules', 'axe-core', 'axe.min.js');
const WCAG = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const shots = path.join(here, 'artifacts');
const FACILITY = 'st-olav-er';

let stack;
let baseUrl;
let browser;
/** When doctor-bo's facility was seen online and offline (ms, node clock). */
const seen = { online: 0, offline: 0 };

before(async () => {
  if (!existsSync(AXE)) throw new Error(`${AXE} is missing: run \`npm ci\` in tests/e2e`);
  const started = await startStack({
    SESSION_TTL_SECONDS: '3',
    HEARTBEAT_INTERVAL_SECONDS: '1',
    EXPIRY_SCHEDULE_SECONDS: '2',
    ROLLUP_SCHEDULE_SECONDS: '1',
  });
  stack = started.child;
  baseUrl = started.url;
  browser = await launchBrowser();
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  stack?.kill('SIGINT');
});

const signIn = (context, user) => signInAt(baseUrl, context, user);

/** axe-core's violations of `tags` on the page, as `[{id, impact, nodes: [selector]}]`. */
async function axeViolations(page, tags = WCAG) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ path: AXE });
  return page.evaluate(async (values) => {
    const result = await window.axe.run(document, { runOnly: { type: 'tag', values }, resultTypes: ['violations'] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  }, tags);
}

async function assertAccessible(page, where) {
  const wcag = await axeViolations(page, WCAG);
  assert.deepEqual(wcag, [], `WCAG A/AA violations on ${where}: ${JSON.stringify(wcag, null, 1)}`);
  const practice = await axeViolations(page, ['best-practice']);
  assert.deepEqual(practice, [], `best-practice violations on ${where}: ${JSON.stringify(practice, null, 1)}`);
}

/** The segments drawn in `selector`'s timeline: `[{status, start, end}]`. */
function segments(page, selector) {
  return page.$$eval(`${selector} .timeline-seg`, (nodes) =>
    nodes.map((n) => ({ status: n.dataset.status, start: Number(n.dataset.start), end: Number(n.dataset.end) })),
  );
}

async function apiGet(token, pathAndQuery) {
  const r = await fetch(`${baseUrl}${pathAndQuery}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, `${pathAndQuery}: ${r.status}`);
  return r.json();
}

/** A datetime-local value for `ms` in the page's time zone, as Chromium normalizes it. */
function localInput(page, ms) {
  return page.evaluate((at) => {
    const d = new Date(at);
    const p = (n) => String(n).padStart(2, '0');
    const v = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    return v.replace(/:00$/, '');
  }, ms);
}

test('a watcher sees a facility that was online on its tile: a 24 h bar and the availability', { timeout: 120_000 }, async () => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  try {
    const fetches = [];
    a.on('request', (r) => {
      if (r.url().includes(`/v1/facilities/${FACILITY}/history`)) fetches.push(Date.now());
    });
    const watcher = await signIn(a, 'nurse-ann');
    await watcher.waitForSelector(`[data-facility="${FACILITY}"][data-history="loaded"], [data-facility="${FACILITY}"][data-history="error"]`);
    assert.equal(await watcher.textContent(`[data-facility="${FACILITY}"] .tile-availability`), 'No history yet');

    // doctor-bo comes online at st-olav-er for a few seconds, then signs out ("ended")
    const doctor = await signIn(b, 'doctor-bo');
    seen.online = await tileStatus(watcher, FACILITY, 'online', 5_000);
    // live: the bar shows the online status before any history has it
    const live = await segments(watcher, `[data-facility="${FACILITY}"]`);
    assert.equal(live.at(-1)?.status, 'online', `live bar ${JSON.stringify(live)}`);
    await doctor.waitForTimeout(3_000);
    await doctor.click('#sign-out');
    await doctor.waitForSelector('body[data-view="sign-in"]');
    seen.offline = await tileStatus(watcher, FACILITY, 'offline', 5_000);

    // the rollup persists the flips; the tile refetches (debounced, throttled) and the
    // availability from /availability turns positive
    await watcher.waitForFunction(
      (f) => Number(document.querySelector(`[data-facility="${f}"] .tile-availability`)?.dataset.share) > 0,
      FACILITY,
      { timeout: 40_000 },
    );
    const text = await watcher.textContent(`[data-facility="${FACILITY}"] .tile-availability`);
    assert.match(text, /^(<0\.1|\d+(\.\d)?)% online in 24 h$/);
    const bar = await segments(watcher, `[data-facility="${FACILITY}"]`);
    const online = bar.filter((s) => s.status === 'online');
    assert.equal(online.length, 1, `one online segment: ${JSON.stringify(bar)}`);
    assert.ok(online[0].end - online[0].start >= 2_000, `online for ${online[0].end - online[0].start} ms`);
    assert.equal(bar.at(-1).status, 'offline');
    const label = await watcher.getAttribute(`[data-facility="${FACILITY}"] .timeline`, 'aria-label');
    assert.match(label, /^Last 24 hours: online \d+ s, offline/);
    // a facility never online has no online segment
    const never = await segments(watcher, '[data-facility="roros-clinic"]');
    assert.deepEqual(never.map((s) => s.status), ['unknown']);

    // at most one history fetch per tile per 10 s, although several status events came
    for (let i = 1; i < fetches.length; i += 1) {
      assert.ok(fetches[i] - fetches[i - 1] >= 9_000, `history fetches ${fetches.map((t) => t - fetches[0])} ms`);
    }
    assert.ok(fetches.length >= 2, `${fetches.length} history fetches`);

    await tileStatus(watcher, 'st-olav-icu', 'online', 5_000);
    await watcher.screenshot({ path: path.join(shots, 'history-board.png'), fullPage: true });
    await assertAccessible(watcher, 'the board');
  } finally {
    await a.close();
    await b.close();
  }
});

test('the facility view: its timeline, the flips page by page, who was online, and a CSV of the flips', { timeout: 120_000 }, async () => {
  assert.ok(seen.offline, 'the first test made the facility flip');
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    // pages of one flip, so that the list must follow the cursor
    const page = await signIn(ctx, 'nurse-ann&history_page_size=1');
    const tile = `[data-facility="${FACILITY}"]`;
    await page.waitForSelector(`${tile}[data-history="loaded"]`);
    // a fresh page knows the facility only as offline now: the online segment is the history's
    const bar = await segments(page, tile);
    assert.deepEqual(bar.map((s) => s.status), ['offline', 'online', 'offline'], JSON.stringify(bar));

    // a click on the tile (its middle: the status, not the name) opens the view
    await page.click(tile);
    await page.waitForFunction(() => window.location.hash === '#facility/st-olav-er');
    await page.waitForSelector('#facility-view:not([hidden]) h1');
    assert.equal(await page.textContent('#facility-title'), 'St. Olav Emergency');
    assert.equal(await page.isHidden('#board'), true, 'the board makes way for the view');
    // back, and in again with the keyboard: the focus went back to the tile's link
    await page.click('#facility-back');
    await page.waitForSelector('#facility-view', { state: 'hidden' });
    assert.equal(await page.evaluate(() => document.activeElement?.closest('[data-facility]')?.dataset.facility), FACILITY);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#facility-view:not([hidden]) #flips');

    // the last hour
    await page.click('.range-presets button:text-is("1 h")');
    assert.equal(await page.getAttribute('.range-presets button:text-is("1 h")', 'aria-pressed'), 'true');
    await page.waitForFunction(() => !document.querySelector('#facility-view').dataset.loading && document.querySelectorAll('#flips tbody tr').length >= 1);
    assert.equal(await page.$$eval('#flips tbody tr', (rows) => rows.length), 1, 'one flip per page');
    for (let i = 0; i < 10 && (await page.isVisible('#flips-more')); i += 1) {
      const before = await page.$$eval('#flips tbody tr', (rows) => rows.length);
      await page.click('#flips-more');
      await page.waitForFunction(
        (n) => document.querySelectorAll('#flips tbody tr').length > n || document.querySelector('#flips-more').hidden,
        before,
      );
    }
    const rows = await page.$$eval('#flips tbody tr', (trs) =>
      trs.map((tr) => ({ status: tr.dataset.status, since_ms: Number(tr.dataset.since), version: Number(tr.dataset.version) })),
    );
    // exactly the API's flips of the range shown, oldest first
    const from = Number(await page.getAttribute('#facility-timeline .timeline', 'data-from'));
    const to = Number(await page.getAttribute('#facility-timeline .timeline', 'data-to'));
    assert.ok(to - from >= 3_599_000 && to - from <= 3_601_000, `a range of ${to - from} ms`);
    const { token } = await (await fetch(`${baseUrl}/dev/token?user=nurse-ann`)).json();
    const api = await apiGet(token, `/v1/facilities/${FACILITY}/history?from=${from}&to=${to}&limit=1000`);
    assert.deepEqual(rows, api.flips.map(({ status, since_ms: s, version }) => ({ status, since_ms: s, version })));
    assert.deepEqual(rows.map((r) => r.status), ['online', 'offline']);
    assert.ok(rows[0].since_ms >= seen.online - 5_000 && rows[1].since_ms <= seen.offline + 1_000, JSON.stringify(rows));

    // the range's timeline and availability
    const big = await segments(page, '#facility-timeline');
    assert.ok(big.some((s) => s.status === 'online' && s.start === rows[0].since_ms && s.end === rows[1].since_ms), JSON.stringify(big));
    assert.ok(Number(await page.getAttribute('#facility-availability', 'data-share')) > 0);
    assert.match(await page.textContent('#facility-availability'), /^Online [\d.<]+% of the range · 2 status changes/);
    // zooming in halves the range, up to now
    await page.click('#zoom-in');
    await page.waitForFunction(() => {
      const t = document.querySelector('#facility-timeline .timeline');
      return t && Number(t.dataset.to) - Number(t.dataset.from) <= 1_800_000;
    });

    // who was online in the middle of the online stretch: doctor-bo; before it: nobody
    const middle = Math.floor((rows[0].since_ms + rows[1].since_ms) / 2);
    await page.fill('#who-at', await localInput(page, middle));
    await page.click('#who-show');
    await page.waitForSelector('#who:not([hidden]) tbody tr[data-user="doctor-bo"]');
    const who = await page.$$eval('#who tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
    assert.equal(who.length, 1, JSON.stringify(who));
    assert.match(who[0][0], /^[0-9a-f]{32}$/, 'the session id');
    assert.match(who[0][1], /doctor-bo/);
    assert.equal(who[0][4], 'ended');
    await page.fill('#who-at', await localInput(page, rows[0].since_ms - 60_000));
    await page.click('#who-show');
    await page.waitForFunction(() => document.querySelector('#who-summary').textContent.startsWith('Nobody'));
    assert.equal(await page.isHidden('#who'), true);
    // back to a state worth a screenshot
    await page.fill('#who-at', await localInput(page, middle));
    await page.click('#who-show');
    await page.waitForSelector('#who:not([hidden])');
    await page.click('.range-presets button:text-is("1 h")');
    await page.waitForFunction(() => !document.querySelector('#facility-view').dataset.loading);

    // the CSV of the range's flips
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#flips-csv')]);
    assert.match(download.suggestedFilename(), /^st-olav-er-flips-\d{8}T\d{6}Z-\d{8}T\d{6}Z\.csv$/);
    const csv = readFileSync(await download.path(), 'utf8').trimEnd().split('\r\n');
    assert.equal(csv[0], 'at_ms,iso_time,status,online_sessions,version');
    assert.deepEqual(
      csv.slice(1),
      api.flips.map((f) => [f.since_ms, new Date(f.since_ms).toISOString(), f.status, f.online_sessions, f.version].join(',')),
    );

    await page.screenshot({ path: path.join(shots, 'history-facility.png'), fullPage: true });
    await assertAccessible(page, 'the facility view');
    // the dark color scheme too, on the view and on the board
    await page.emulateMedia({ colorScheme: 'dark' });
    await assertAccessible(page, 'the facility view (dark)');
    await page.click('#facility-back');
    await page.waitForSelector('#board:not([hidden])');
    await assertAccessible(page, 'the board (dark)');
  } finally {
    await ctx.close();
  }
});

test('at 375 px wide nothing scrolls sideways, tiles stack, and the facility view fits', { timeout: 90_000 }, async () => {
  const ctx = await browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  try {
    const page = await signIn(ctx, 'nurse-ann');
    await page.waitForSelector(`[data-facility="${FACILITY}"][data-history="loaded"]`);
    const width = () => page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok((await width()) <= 375, `the board is ${await width()} px wide`);
    const boxes = await page.$$eval('#tiles > li', (tiles) => tiles.map((t) => t.getBoundingClientRect()).map((r) => ({ x: r.x, w: r.width })));
    assert.ok(boxes.length >= 8);
    assert.ok(boxes.every((b) => b.x === boxes[0].x && b.w === boxes[0].w), `tiles in one column: ${JSON.stringify(boxes)}`);
    await page.screenshot({ path: path.join(shots, 'history-phone-board.png'), fullPage: true });

    await page.tap(`[data-facility="${FACILITY}"]`);
    await page.waitForSelector('#facility-view:not([hidden]) #flips tbody tr');
    await page.waitForFunction(() => !document.querySelector('#facility-view').dataset.loading);
    assert.ok((await width()) <= 375, `the facility view is ${await width()} px wide`);
    for (const selector of ['#facility-timeline', '#zoom-out', '#range-to', '#who-at', '#who-show', '#flips-csv']) {
      const box = await page.locator(selector).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 375, `${selector} within the screen: ${JSON.stringify(box)}`);
    }
    await page.screenshot({ path: path.join(shots, 'history-phone-facility.png'), fullPage: true });
    await assertAccessible(page, 'the facility view at 375 px');
  } finally {
    await ctx.close();
  }
});
