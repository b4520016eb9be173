// Unit tests for web/timeline.js and the DOM-free parts of web/facility.js: node --test web/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DAY_MS,
  HOUR_MS,
  MINUTE_MS,
  axisTicks,
  buildSegments,
  describe,
  fromLocalInput,
  percent,
  spanText,
  summarize,
  toLocalInput,
} from '../timeline.js';
import { CSV_HEADER, HistoryApi, HistoryError, RefreshThrottle, flipsToCsv } from '../facility.js';

const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);
const flip = (status, since_ms, version = 1, online_sessions = status === 'online' ? 1 : 0) => ({
  status,
  since_ms,
  version,
  online_sessions,
});

// ------------------------------------------------------------------ buildSegments

test('flips become segments; before the first flip the status is its opposite', () => {
  const from = T0;
  const to = T0 + HOUR_MS;
  const segments = buildSegments({
    from,
    to,
    now: to,
    flips: [flip('offline', T0 + 30 * MINUTE_MS, 2), flip('online', T0 + 10 * MINUTE_MS, 1)],
  });
  assert.deepEqual(segments, [
    { status: 'offline', start: from, end: T0 + 10 * MINUTE_MS },
    { status: 'online', start: T0 + 10 * MINUTE_MS, end: T0 + 30 * MINUTE_MS },
    { status: 'offline', start: T0 + 30 * MINUTE_MS, end: to },
  ]);
  assert.deepEqual(summarize(segments), { online: 20 * MINUTE_MS, offline: 40 * MINUTE_MS, unknown: 0 });
});

test('the range stops at now; flips after it are ignored', () => {
  const segments = buildSegments({
    from: T0,
    to: T0 + HOUR_MS,
    now: T0 + 20 * MINUTE_MS,
    flips: [flip('online', T0 + 10 * MINUTE_MS), flip('offline', T0 + 30 * MINUTE_MS, 2)],
  });
  assert.deepEqual(segments, [
    { status: 'offline', start: T0, end: T0 + 10 * MINUTE_MS },
    { status: 'online', start: T0 + 10 * MINUTE_MS, end: T0 + 20 * MINUTE_MS },
  ]);
  assert.deepEqual(buildSegments({ from: T0, to: T0 + HOUR_MS, now: T0 - 1 }), []);
});

test('the live status extends the history with what the rollup has not persisted yet', () => {
  const to = T0 + HOUR_MS;
  const flips = [flip('online', T0 + 10 * MINUTE_MS, 1)];
  const current = { status: 'offline', since_ms: T0 + 50 * MINUTE_MS, version: 2 };
  assert.deepEqual(buildSegments({ from: T0, to, now: to, flips, current }), [
    { status: 'offline', start: T0, end: T0 + 10 * MINUTE_MS },
    { status: 'online', start: T0 + 10 * MINUTE_MS, end: T0 + 50 * MINUTE_MS },
    { status: 'offline', start: T0 + 50 * MINUTE_MS, end: to },
  ]);
  // an older live status changes nothing, nor does a repeat of the last flip
  const stale = { status: 'offline', since_ms: T0 + 5 * MINUTE_MS, version: 0 };
  const same = { status: 'online', since_ms: T0 + 10 * MINUTE_MS, version: 1 };
  for (const c of [stale, same]) {
    assert.deepEqual(buildSegments({ from: T0, to, now: to, flips, current: c }), [
      { status: 'offline', start: T0, end: T0 + 10 * MINUTE_MS },
      { status: 'online', start: T0 + 10 * MINUTE_MS, end: to },
    ]);
  }
});

test('with no flips, a live status older than the range fills it; a newer one leaves the rest unknown', () => {
  const to = T0 + HOUR_MS;
  assert.deepEqual(buildSegments({ from: T0, to, now: to, current: { status: 'online', since_ms: T0 - DAY_MS, version: 3 } }), [
    { status: 'online', start: T0, end: to },
  ]);
  assert.deepEqual(buildSegments({ from: T0, to, now: to, current: { status: 'online', since_ms: T0 + 40 * MINUTE_MS, version: 3 } }), [
    { status: 'unknown', start: T0, end: T0 + 40 * MINUTE_MS },
    { status: 'online', start: T0 + 40 * MINUTE_MS, end: to },
  ]);
  assert.deepEqual(buildSegments({ from: T0, to, now: to }), [{ status: 'unknown', start: T0, end: to }]);
});

test('flips older than the range give the status at its start (a window that slid on)', () => {
  const flips = [flip('online', T0 - 10 * MINUTE_MS, 1), flip('offline', T0 - 5 * MINUTE_MS, 2), flip('online', T0 + 5 * MINUTE_MS, 3)];
  assert.deepEqual(buildSegments({ from: T0, to: T0 + 10 * MINUTE_MS, now: T0 + 10 * MINUTE_MS, flips }), [
    { status: 'offline', start: T0, end: T0 + 5 * MINUTE_MS },
    { status: 'online', start: T0 + 5 * MINUTE_MS, end: T0 + 10 * MINUTE_MS },
  ]);
});

test('repeated statuses merge into one segment', () => {
  const flips = [flip('online', T0 + MINUTE_MS, 1), flip('online', T0 + 2 * MINUTE_MS, 2)];
  assert.deepEqual(buildSegments({ from: T0, to: T0 + 3 * MINUTE_MS, now: T0 + 3 * MINUTE_MS, flips }), [
    { status: 'offline', start: T0, end: T0 + MINUTE_MS },
    { status: 'online', start: T0 + MINUTE_MS, end: T0 + 3 * MINUTE_MS },
  ]);
});

// ------------------------------------------------------------------ formatting

test('percent, spans, descriptions and datetime-local values', () => {
  assert.equal(percent(0), '0%');
  assert.equal(percent(1), '100%');
  assert.equal(percent(0.00004), '<0.1%');
  assert.equal(percent(0.9999), '>99.9%');
  assert.equal(percent(0.5), '50%');
  assert.equal(percent(0.9234), '92.3%');
  assert.equal(spanText(HOUR_MS), '1 h');
  assert.equal(spanText(DAY_MS), '24 h');
  assert.equal(spanText(7 * DAY_MS), '7 d');
  assert.equal(spanText(30 * MINUTE_MS), '30 min');
  assert.equal(
    describe([{ status: 'online', start: 0, end: HOUR_MS }, { status: 'offline', start: HOUR_MS, end: 3 * HOUR_MS }], 'Last 3 h'),
    'Last 3 h: online 1 h, offline 2 h.',
  );
  const at = new Date(2026, 2, 4, 5, 6, 7).getTime();
  assert.equal(toLocalInput(at), '2026-03-04T05:06:07');
  assert.equal(fromLocalInput('2026-03-04T05:06:07'), at);
  assert.equal(fromLocalInput('2026-03-04T05:06'), at - 7000);
  assert.ok(Number.isNaN(fromLocalInput('')));
  assert.ok(Number.isNaN(fromLocalInput('yesterday')));
});

test('axis ticks are round times inside the range, at most as many as asked', () => {
  const from = new Date(2026, 11, 1, 10, 7).getTime();
  const ticks = axisTicks(from, from + DAY_MS, 6);
  assert.ok(ticks.length >= 3 && ticks.length <= 6, `${ticks.length} ticks`);
  for (const t of ticks) {
    assert.ok(t.at >= from && t.at <= from + DAY_MS);
    assert.equal(new Date(t.at).getMinutes(), 0);
  }
  const week = axisTicks(from, from + 7 * DAY_MS, 8);
  assert.ok(week.length >= 4 && week.length <= 8);
  for (const t of week) assert.equal(new Date(t.at).getHours(), 0, 'days start at midnight');
  assert.deepEqual(axisTicks(from, from), []);
});

// ------------------------------------------------------------------ CSV

test('the CSV has a header row and one row per flip', () => {
  const csv = flipsToCsv([flip('online', T0, 1, 2), flip('offline', T0 + 1234, 2, 0)]);
  assert.equal(
    csv,
    `${CSV_HEADER.join(',')}\r\n`
      + `${T0},2026-12-01T12:00:00.000Z,online,2,1\r\n`
      + `${T0 + 1234},2026-12-01T12:00:01.234Z,offline,0,2\r\n`,
  );
  assert.equal(flipsToCsv([]), 'at_ms,iso_time,status,online_sessions,version\r\n');
  assert.match(flipsToCsv([{ ...flip('online', T0), status: 'a,"b"' }]), /,"a,""b""",/);
});

// ------------------------------------------------------------------ the API client

test('the API sends the bearer token, retries a 401 once with a fresh token, and follows cursors', async () => {
  const calls = [];
  let tokens = 0;
  const pages = { '': { flips: [flip('online', T0)], cursor: 'c1' }, c1: { flips: [flip('offline', T0 + 5, 2)], cursor: null } };
  const api = new HistoryApi({
    token: 'old',
    getToken: async () => `fresh-${++tokens}`,
    fetch: async (url, init) => {
      calls.push({ url, auth: init.headers.Authorization });
      if (init.headers.Authorization === 'Bearer old') return new Response('{}', { status: 401 });
      const cursor = new URL(url, 'http://x').searchParams.get('cursor') ?? '';
      return Response.json({ facility_id: 'f', ...pages[cursor] });
    },
  });
  const all = await api.allFlips('st olav', T0 - 1000, T0 + 1000);
  assert.equal(all.complete, true);
  assert.deepEqual(all.flips.map((f) => f.status), ['online', 'offline']);
  assert.deepEqual(calls.map((c) => c.auth), ['Bearer old', 'Bearer fresh-1', 'Bearer fresh-1']);
  assert.match(calls[1].url, /^\/v1\/facilities\/st%20olav\/history\?from=\d{13}&to=\d{13}&limit=1000$/);
  assert.match(calls[2].url, /&cursor=c1$/);

  const failing = new HistoryApi({
    token: 't',
    getToken: async () => 't',
    fetch: async () => Response.json({ error: { code: 'not_found', message: 'facility x is not known' } }, { status: 404 }),
  });
  await assert.rejects(failing.availability('x', T0, T0 + 1), (e) => e instanceof HistoryError && e.status === 404 && e.code === 'not_found');
});

// ------------------------------------------------------------------ throttling

function fakeClock() {
  let now = 0;
  let timers = [];
  return {
    env: {
      now: () => now,
      setTimeout: (fn, ms) => {
        const t = { fn, at: now + ms };
        timers.push(t);
        return t;
      },
      clearTimeout: (t) => {
        timers = timers.filter((x) => x !== t);
      },
    },
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const next = timers[0];
        if (!next || next.at > end) break;
        timers.shift();
        now = next.at;
        next.fn();
        await new Promise((r) => setImmediate(r));
      }
      now = end;
    },
  };
}

test('a storm of requests for one key runs it at most once per interval, and the last one is not lost', async () => {
  const clock = fakeClock();
  const runs = [];
  const throttle = new RefreshThrottle({ run: async (key) => runs.push([key, clock.env.now()]), minIntervalMs: 10_000, env: clock.env });
  throttle.request('a', 0);
  await clock.advance(0);
  assert.deepEqual(runs, [['a', 0]]);
  // events every 100 ms for 25 s
  for (let t = 0; t < 25_000; t += 100) {
    throttle.request('a', 2_000);
    throttle.request('b', 2_000);
    await clock.advance(100);
  }
  await clock.advance(20_000);
  const a = runs.filter(([k]) => k === 'a').map(([, at]) => at);
  const b = runs.filter(([k]) => k === 'b').map(([, at]) => at);
  for (const times of [a, b]) {
    for (let i = 1; i < times.length; i += 1) assert.ok(times[i] - times[i - 1] >= 10_000, `runs at ${times}`);
  }
  assert.ok(a.length >= 3 && a.length <= 4, `a ran ${a.length} times: ${a}`);
  assert.equal(b[0], 2_000, 'the first request waits the debounce');
  assert.ok(a[a.length - 1] >= 25_000 - 10_000, 'a request late in the storm still runs');
  throttle.stop();
});
