// Unit tests for web/presence-client.js: node --test web/test/
// Dependency-free: browser APIs (timers and the clock included) are replaced by the small
// fakes below through `env`.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_INTERVAL_S,
  FacilityBoard,
  PresenceClient,
  PresenceError,
  TICKER_WORKER_SOURCE,
  backoffDelay,
  decodeJwtPayload,
  isChatGroup,
  newSessionId,
  parseRetryAfter,
  tokenExpiry,
  tokenRefreshDelay,
  withQuery,
} from '../presence-client.js';

const TTL_MS = 150_000; // the server's SESSION_TTL_SECONDS default
const MINUTE_MS = 60_000;

// ------------------------------------------------------------------ fakes

class FakeSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.params = new URL(url).searchParams;
    this.readyState = 0;
    this.sent = [];
    this.closedByClient = false;
    FakeSocket.instances.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.closedByClient = true;
    this.readyState = 3;
    this.onclose?.({ code: 1000, reason: 'client' });
  }
  // server side
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  drop(code = 1006) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
  last(action) {
    return [...this.sent].reverse().find((m) => m.action === action);
  }
  frames(action) {
    return this.sent.filter((m) => m.action === action);
  }
}

/**
 * A WebSocket class of its own (its sockets listed in `created`): `autoOpen` opens each socket
 * in a microtask; `onOpen`/`onSend` let a test play the server.
 */
function socketClass({ autoOpen = false, onOpen, onSend } = {}) {
  const created = [];
  class Socket extends FakeSocket {
    constructor(url) {
      super(url);
      created.push(this);
      if (autoOpen) queueMicrotask(() => this.readyState === 0 && this.open());
    }
    open() {
      this.readyState = 1;
      onOpen?.(this);
      this.onopen?.({});
    }
    send(text) {
      super.send(text);
      onSend?.(this, JSON.parse(text));
    }
  }
  return { Socket, created };
}

class RefusedSocket {
  constructor() {
    throw new Error('WebSocket is not available here');
  }
}

class MemoryStorage {
  #map = new Map();
  getItem(key) {
    return this.#map.has(key) ? this.#map.get(key) : null;
  }
  setItem(key, value) {
    this.#map.set(key, String(value));
  }
  removeItem(key) {
    this.#map.delete(key);
  }
}

/**
 * A Web Locks stand-in: one exclusive lock per name, FIFO, abortable while waiting;
 * `ifAvailable` answers null at once when the lock is held or wanted.
 */
function fakeLocks() {
  const queues = new Map();
  const held = new Set();
  const grantNext = (name) => {
    if (held.has(name)) return;
    const next = queues.get(name)?.shift();
    if (!next) return;
    held.add(name);
    Promise.resolve()
      .then(() => next.callback({ name }))
      .then(
        (value) => {
          held.delete(name);
          next.resolve(value);
          grantNext(name);
        },
        (error) => {
          held.delete(name);
          next.reject(error);
          grantNext(name);
        },
      );
  };
  return {
    request(name, options, callback) {
      return new Promise((resolve, reject) => {
        if (!queues.has(name)) queues.set(name, []);
        const queue = queues.get(name);
        if (options?.ifAvailable && (held.has(name) || queue.length > 0)) {
          Promise.resolve()
            .then(() => callback(null))
            .then(resolve, reject);
          return;
        }
        const entry = { callback, resolve, reject };
        queue.push(entry);
        options?.signal?.addEventListener('abort', () => {
          const i = queue.indexOf(entry);
          if (i >= 0) {
            queue.splice(i, 1);
            reject(new DOMException('aborted', 'AbortError'));
          }
        });
        grantNext(name);
      });
    },
  };
}

/** Locks held by some other tab for good: this tab never leads. */
function heldElsewhere() {
  return {
    request(name, options, callback) {
      if (options?.ifAvailable) return Promise.resolve().then(() => callback(null));
      return new Promise((resolve, reject) => {
        options?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      });
    },
  };
}

/** fetch stand-in: records calls, answers with `respond(call)` (default 202 interval 30). */
function fakeFetch(respond = () => new Response(JSON.stringify({ interval_s: 30 }), { status: 202 })) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const call = { url, init, body: init.body ? JSON.parse(init.body) : null, auth: init.headers?.Authorization };
    calls.push(call);
    return respond(call);
  };
  return { fetch, calls };
}

function fakeBeacon() {
  const beacons = [];
  const sendBeacon = (url, data) => {
    beacons.push({ url, data });
    return true;
  };
  return { sendBeacon, beacons };
}

/** `document` for visibility: `hide()`, `show()`, `resume()` (Page Lifecycle). */
class FakeDocument extends EventTarget {
  constructor(visibilityState = 'visible') {
    super();
    this.visibilityState = visibilityState;
  }
  hide() {
    this.visibilityState = 'hidden';
    this.dispatchEvent(new Event('visibilitychange'));
  }
  show() {
    this.visibilityState = 'visible';
    this.dispatchEvent(new Event('visibilitychange'));
  }
  resume() {
    this.dispatchEvent(new Event('resume'));
  }
}

const flush = async () => {
  for (let i = 0; i < 4; i += 1) await new Promise((r) => setImmediate(r));
};

/**
 * Virtual time. `env()` gives the page's timers and clock; with `throttleMs` every page timer
 * fires no earlier than the next whole multiple of it (Chrome's intensive throttling of hidden
 * tabs: at most once a minute, aligned to the minute). `add(..., exempt = true)` is a timer
 * that is not throttled (a dedicated worker's, or the server's).
 */
class FakeClock {
  constructor({ start = Date.UTC(2030, 0, 1, 8, 0, 7), throttleMs = 0 } = {}) {
    this.t = start;
    this.throttleMs = throttleMs;
    this.timers = new Map();
    this.seq = 0;
  }
  now() {
    return this.t;
  }
  #align(at, exempt) {
    return this.throttleMs && !exempt ? Math.ceil(at / this.throttleMs) * this.throttleMs : at;
  }
  add(fn, ms, repeat = false, exempt = false) {
    const id = ++this.seq;
    const delay = Math.max(0, Number(ms) || 0);
    this.timers.set(id, { fn, at: this.#align(this.t + delay, exempt), period: repeat ? Math.max(1, delay) : 0, exempt });
    return id;
  }
  clear(id) {
    this.timers.delete(id);
  }
  env() {
    return {
      setTimeout: (fn, ms) => this.add(fn, ms),
      clearTimeout: (id) => this.clear(id),
      setInterval: (fn, ms) => this.add(fn, ms, true),
      clearInterval: (id) => this.clear(id),
      now: () => this.t,
    };
  }
  /** Runs every timer due within `ms`, in order, letting promises settle after each. */
  async advance(ms) {
    const end = this.t + ms;
    await flush();
    for (;;) {
      let id = null;
      let next = null;
      for (const [key, timer] of this.timers) {
        if (timer.at <= end && (!next || timer.at < next.at)) [id, next] = [key, timer];
      }
      if (!next) break;
      this.t = Math.max(this.t, next.at);
      if (next.period) next.at = this.#align(this.t + next.period, next.exempt);
      else this.timers.delete(id);
      next.fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
  /** A frozen page: time passes, no timer runs (they fire late once time advances again). */
  freeze(ms) {
    this.t += ms;
  }
}

/**
 * `Worker` + `URL` stand-ins: the worker runs the real Blob source with the clock's
 * unthrottled timers (dedicated workers are not subject to intensive throttling).
 * With `fail`, the worker reports an error instead (a CSP refusing blob: workers).
 */
function fakeWorkers(clock, { fail = false } = {}) {
  const blobs = new Map();
  let n = 0;
  const URLs = {
    createObjectURL(blob) {
      const url = `blob:test/${++n}`;
      blobs.set(url, blob);
      return url;
    },
    revokeObjectURL(url) {
      blobs.delete(url);
    },
  };
  const workers = [];
  class FakeWorker {
    constructor(url) {
      const blob = blobs.get(url);
      if (!blob) throw new TypeError(`no blob at ${url}`);
      this.terminated = false;
      this.received = [];
      this.timers = new Set();
      this.inbox = [];
      this.scope = null;
      workers.push(this);
      blob.text().then((source) => {
        this.source = source;
        if (this.terminated) return;
        if (fail) {
          this.onerror?.({ preventDefault() {} });
          return;
        }
        const scope = {
          onmessage: null,
          postMessage: (data) => {
            if (!this.terminated) queueMicrotask(() => !this.terminated && this.onmessage?.({ data }));
          },
        };
        const setIntervalW = (fn, ms) => {
          const id = clock.add(fn, ms, true, true);
          this.timers.add(id);
          return id;
        };
        const clearIntervalW = (id) => {
          clock.clear(id);
          this.timers.delete(id);
        };
        new Function('self', 'setInterval', 'clearInterval', source)(scope, setIntervalW, clearIntervalW);
        this.scope = scope;
        for (const data of this.inbox.splice(0)) scope.onmessage?.({ data });
      });
    }
    postMessage(data) {
      this.received.push(data);
      if (this.terminated) return;
      if (this.scope) this.scope.onmessage?.({ data });
      else this.inbox.push(data);
    }
    terminate() {
      this.terminated = true;
      for (const id of this.timers) clock.clear(id);
      this.timers.clear();
    }
  }
  return { Worker: FakeWorker, URL: URLs, Blob, workers, blobs };
}

/** Every client made here: stopped after the tests, so that a failed test cannot hang the run. */
const clients = new Set();
after(async () => {
  for (const client of clients) await client.stop();
});

let channelSeq = 0;
/**
 * A shared "browser": storage, locks, a tabs channel name, heartbeat server, beacon sink and
 * a WebSocket class whose sockets are listed in `sockets`. `env` is added to every tab's env.
 */
function fakeBrowser({ locks = fakeLocks(), respond, autoOpen = false, onSend, env = {} } = {}) {
  const storage = new MemoryStorage();
  const { fetch, calls } = fakeFetch(respond);
  const { sendBeacon, beacons } = fakeBeacon();
  const { Socket, created: sockets } = socketClass({ autoOpen, onSend });
  const tabsChannel = `presence-tabs-test-${process.pid}-${++channelSeq}`;
  const lockName = `presence-leader-test-${channelSeq}`;
  const tab = (token = 'tok', { env: tabEnv = {}, ...extra } = {}) => {
    const target = new EventTarget();
    const client = new PresenceClient({
      token,
      websocketUrl: 'ws://host/local',
      heartbeatUrl: '/v1/heartbeats',
      tabsChannel,
      lockName,
      backoff: { baseMs: 1, maxMs: 4 },
      ...extra,
      env: { WebSocket: Socket, fetch, locks, storage, BroadcastChannel, sendBeacon, target, ...env, ...tabEnv },
    });
    clients.add(client);
    return { client, target };
  };
  return { storage, calls, beacons, sockets, tab };
}

function record(client, ...types) {
  const seen = [];
  for (const type of types) client.addEventListener(type, (e) => seen.push({ type, detail: e.detail }));
  return seen;
}

async function waitFor(predicate, what = 'condition', timeoutMs = 2000) {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms));

function pageHide(target) {
  const event = new Event('pagehide');
  event.persisted = false;
  target.dispatchEvent(event);
}

const status = (facility_id, version, state = 'online', extra = {}) => ({
  facility_id,
  region: 'r',
  status: state,
  since_ms: 1_700_000_000_000 + version,
  version,
  online_sessions: state === 'online' ? 1 : 0,
  ...extra,
});

/** Answers the socket's latest snapshot request. */
function answerSnapshot(socket, facilities = [], extra = {}) {
  const ask = socket.last('snapshot');
  assert.ok(ask, 'a snapshot was asked for');
  socket.push({ type: 'snapshot', region: 'r', facilities, ref: ask.ref, ...extra });
  return ask;
}

/** The largest gap between heartbeats the server received, the end of the run included. */
function largestGap(times, start, end) {
  let gap = 0;
  let previous = start;
  for (const at of [...times, end]) {
    gap = Math.max(gap, at - previous);
    previous = at;
  }
  return gap;
}

// ------------------------------------------------------------------ FacilityBoard

test('FacilityBoard applies only newer versions', () => {
  const board = new FacilityBoard();
  assert.equal(board.apply(status('a', 1)), true);
  assert.equal(board.apply(status('a', 1, 'offline')), false, 'duplicate version');
  assert.equal(board.apply(status('a', 3, 'offline')), true, 'gaps are fine');
  assert.equal(board.apply(status('a', 2, 'online')), false, 'late, older event');
  assert.equal(board.get('a').status, 'offline');
  assert.equal(board.get('a').version, 3);
  assert.equal(board.apply(status('b', 0)), true, 'version 0 is newer than nothing');
  assert.equal(board.size, 2);
});

test('FacilityBoard rejects malformed statuses and hands out copies', () => {
  const board = new FacilityBoard();
  assert.equal(board.apply(null), false);
  assert.equal(board.apply({ facility_id: 'a' }), false);
  assert.equal(board.apply({ version: 1 }), false);
  assert.equal(board.apply({ facility_id: 'a', version: '2' }), false);
  board.apply({ ...status('a', 1), type: 'facility.status' });
  const copy = board.get('a');
  assert.equal('type' in copy, false);
  copy.status = 'offline';
  assert.equal(board.get('a').status, 'online');
  assert.equal(board.get('zzz'), undefined);
});

test('FacilityBoard.applySnapshot applies each entry and returns the applied ones', () => {
  const board = new FacilityBoard();
  board.apply(status('a', 5));
  const applied = board.applySnapshot([status('a', 4, 'offline'), status('b', 2), status('c', 1, 'offline')]);
  assert.deepEqual(applied.map((s) => s.facility_id), ['b', 'c']);
  assert.equal(board.get('a').version, 5);
  assert.deepEqual(board.all().map((s) => s.facility_id).sort(), ['a', 'b', 'c']);
  assert.deepEqual(board.applySnapshot(undefined), []);
});

test('FacilityBoard.replace takes a resync snapshot whatever its versions', () => {
  const board = new FacilityBoard();
  board.apply(status('a', 7));
  board.apply(status('b', 3));
  board.apply(status('c', 2, 'offline'));
  // After a data loss: a at version 1 (its versions started again), b unknown, d new.
  const changed = board.replace([status('a', 1), status('d', 1)]);
  assert.deepEqual(changed.map((s) => [s.facility_id, s.status, s.version]).sort(), [
    ['a', 'online', 1],
    ['b', 'offline', 0],
    ['d', 'online', 1],
  ]);
  assert.equal(board.get('c').status, 'offline');
  // Later events of the new epoch apply.
  assert.equal(board.apply(status('b', 1)), true);
  assert.equal(board.apply(status('a', 2, 'offline')), true);
  assert.deepEqual(board.replace(undefined), []);
});

// ------------------------------------------------------------------ helpers

test('backoffDelay is full jitter under an exponential, capped ceiling', () => {
  const max = () => 0.999999;
  assert.equal(backoffDelay(0, { random: () => 0 }), 0);
  assert.ok(backoffDelay(0, { random: max }) < 500);
  assert.ok(backoffDelay(0, { random: max }) >= 499);
  assert.ok(backoffDelay(3, { random: max }) < 4000);
  assert.ok(backoffDelay(3, { random: max }) >= 3999);
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 2000);
  assert.ok(backoffDelay(50, { random: max }) < 30_000);
  assert.ok(backoffDelay(5000, { random: max }) < 30_000, 'no overflow');
  assert.ok(backoffDelay(10, { baseMs: 100, maxMs: 1000, random: () => 1 }) <= 999);
  assert.equal(backoffDelay(-1, { random: () => 0.5 }), 250, 'negative attempts count as 0');
  assert.equal(backoffDelay(NaN, { random: () => 0.5 }), 250);
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const d = backoffDelay(attempt);
    assert.ok(Number.isInteger(d) && d >= 0 && d < Math.min(30_000, 500 * 2 ** attempt));
  }
});

test('parseRetryAfter reads seconds and HTTP dates', () => {
  assert.equal(parseRetryAfter('5'), 5000);
  assert.equal(parseRetryAfter(' 0 '), 0);
  const now = Date.parse('2030-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('Tue, 01 Jan 2030 00:00:10 GMT', now), 10_000);
  assert.equal(parseRetryAfter('Mon, 31 Dec 2029 23:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter(''), null);
  assert.equal(parseRetryAfter('soon'), null);
});

test('small helpers', () => {
  const id = newSessionId();
  assert.match(id, /^[A-Za-z0-9_-]{1,64}$/);
  assert.equal(id.includes('-'), false);
  assert.match(newSessionId({ getRandomValues: (a) => a.fill(171) }), /^(ab){16}$/);
  assert.match(newSessionId(null), /^[a-z0-9]{1,64}$/);
  assert.equal(isChatGroup('chat:trondelag-lobby'), true);
  assert.equal(isChatGroup('chat:a.b_c-1'), true);
  assert.equal(isChatGroup('region:trondelag'), false);
  assert.equal(isChatGroup('chat:'), false);
  assert.equal(isChatGroup(`chat:${'x'.repeat(65)}`), false);
  assert.equal(withQuery('ws://h/local', 'token', 'a b'), 'ws://h/local?token=a%20b');
  assert.equal(withQuery('/v1/heartbeats?x=1', 'token', 't'), '/v1/heartbeats?x=1&token=t');
});

// ------------------------------------------------------------------ PresenceClient: heartbeats

test('a lone leader opens its socket with session_id and beats one-way frames at the told interval', async () => {
  const clock = new FakeClock();
  const sentAt = [];
  const browser = fakeBrowser({
    env: clock.env(),
    onSend: (_socket, frame) => frame.action === 'heartbeat' && sentAt.push(clock.now()),
  });
  const { client } = browser.tab('tok-1');
  const events = record(client, 'leader', 'heartbeat', 'error');
  assert.equal(client.intervalS, DEFAULT_INTERVAL_S);
  assert.equal(DEFAULT_INTERVAL_S, 60);
  client.start();
  await clock.advance(0);
  assert.equal(client.leader, true);
  assert.equal(browser.sockets.length, 1, 'the first socket waited to learn leadership');
  const [socket] = browser.sockets;
  const sessionId = client.sessionId;
  assert.match(sessionId, /^[0-9a-f]{32}$/);
  assert.equal(browser.storage.getItem('presence.session'), sessionId);
  assert.equal(socket.url, `ws://host/local?token=tok-1&session_id=${sessionId}`);
  assert.equal(events.filter((e) => e.type === 'heartbeat').length, 0, 'nothing before the socket opens');

  socket.open();
  // $connect applied and bound the session: that was the first heartbeat, no frame needed.
  assert.deepEqual(events.filter((e) => e.type === 'heartbeat').map((e) => e.detail), [
    { interval_s: 60, via: 'socket', timer: 'page' },
  ]);
  assert.equal(socket.frames('heartbeat').length, 0);
  answerSnapshot(socket, [], { interval_s: 60 });

  await clock.advance(10 * MINUTE_MS);
  assert.equal(sentAt.length, 10);
  for (const frame of socket.frames('heartbeat')) assert.deepEqual(frame, { action: 'heartbeat', session_id: sessionId });
  assert.deepEqual(new Set(sentAt.slice(1).map((at, i) => at - sentAt[i])), new Set([MINUTE_MS]));
  assert.equal(client.heartbeatVia, 'socket');
  assert.equal(browser.calls.length, 0, 'no HTTP heartbeat while the socket is open');
  assert.equal(socket.frames('ping').length, 0, 'the heartbeats keep the socket busy: no ping');

  // The server tells another interval in a later snapshot.
  client.snapshot().catch(() => {});
  answerSnapshot(socket, [], { interval_s: 20 });
  assert.equal(client.intervalS, 20);
  const before = sentAt.length;
  await clock.advance(2 * MINUTE_MS);
  assert.equal(sentAt.length - before, 6);
  // Invalid intervals are ignored.
  for (const interval_s of [0, -5, 'x', null, Infinity, 0.5]) {
    client.snapshot().catch(() => {});
    answerSnapshot(socket, [], { interval_s });
  }
  assert.equal(client.intervalS, 20);
  assert.equal(events.filter((e) => e.type === 'error').length, 0, 'no reply awaited: no timeouts');
  await client.stop();
});

test('without a WebSocket the leader heartbeats over HTTP at once, with the bearer token', async () => {
  const browser = fakeBrowser({ env: { WebSocket: RefusedSocket } });
  const { client } = browser.tab('tok-1');
  const events = record(client, 'leader', 'heartbeat');
  client.start();
  await waitFor(() => events.some((e) => e.type === 'heartbeat'), 'first heartbeat');
  assert.equal(client.leader, true);
  assert.deepEqual(events[0], { type: 'leader', detail: { leader: true } });
  assert.deepEqual(events.find((e) => e.type === 'heartbeat').detail, { interval_s: 30, via: 'http', timer: 'page' });
  assert.equal(client.intervalS, 30, 'the interval of the 202');
  const [call] = browser.calls;
  assert.equal(call.url, '/v1/heartbeats');
  assert.equal(call.init.method, 'POST');
  assert.equal(call.auth, 'Bearer tok-1');
  assert.equal(call.body.state, 'active');
  assert.match(call.body.session_id, /^[0-9a-f]{32}$/);
  assert.equal(browser.storage.getItem('presence.session'), call.body.session_id);
  assert.equal(client.sessionId, call.body.session_id);
  await client.stop();
});

test('an existing session id is reused', async () => {
  const browser = fakeBrowser({ autoOpen: true });
  browser.storage.setItem('presence.session', 'kept_Session-1');
  const { client } = browser.tab();
  client.start();
  await waitFor(() => browser.sockets.length === 1, 'a socket');
  assert.equal(browser.sockets[0].params.get('session_id'), 'kept_Session-1');
  await client.stop();
});

test('heartbeat failures honour Retry-After on 503 and back off otherwise', async () => {
  let status = 503;
  const browser = fakeBrowser({
    env: { WebSocket: RefusedSocket },
    respond: () =>
      new Response(JSON.stringify({ error: { code: 'unavailable', message: 'queue down' } }), {
        status,
        headers: status === 503 ? { 'Retry-After': '7' } : {},
      }),
  });
  const { client } = browser.tab();
  const errors = record(client, 'error');
  client.start();
  await waitFor(() => errors.some((e) => e.detail.source === 'heartbeat'), 'error event');
  assert.deepEqual(errors.find((e) => e.detail.source === 'heartbeat').detail, {
    source: 'heartbeat',
    status: 503,
    code: 'unavailable',
    message: 'queue down',
    retry_in_ms: 7000,
  });
  await client.stop();

  status = 400;
  const other = browser.tab().client;
  const more = record(other, 'error');
  other.start();
  const beats = () => more.filter((e) => e.detail.source === 'heartbeat');
  await waitFor(() => beats().length >= 2, 'two quick retries with backoff (max 4 ms)');
  assert.ok(beats().every((e) => e.detail.status === 400 && e.detail.retry_in_ms < 4));
  await other.stop();
});

test('HTTP is the fallback while the socket is not open; a dropped leader socket beats over HTTP at once and rebinds', async () => {
  const clock = new FakeClock();
  const browser = fakeBrowser({ env: clock.env() });
  const { client } = browser.tab();
  const beats = record(client, 'heartbeat');
  client.start();
  await clock.advance(0);
  const [first] = browser.sockets;
  const sessionId = client.sessionId;
  assert.equal(first.params.get('session_id'), sessionId);
  // The socket hangs in "connecting": the next tick of the heartbeat clock uses HTTP.
  await clock.advance(14_000);
  assert.equal(browser.calls.length, 0);
  await clock.advance(1_000);
  assert.deepEqual(browser.calls.map((c) => c.body), [{ session_id: sessionId, state: 'active' }]);
  assert.deepEqual(beats.at(-1).detail, { interval_s: 30, via: 'http', timer: 'page' });
  await clock.advance(30_000);
  assert.equal(browser.calls.length, 2, 'every interval (30 s, told by the 202) while not open');

  first.open(); // the session rides the socket from now on
  assert.equal(beats.at(-1).detail.via, 'socket');
  await clock.advance(60_000);
  assert.equal(browser.calls.length, 2);
  assert.equal(first.frames('heartbeat').length, 2);

  // The socket drops: the server lets the session linger ~10 s, so HTTP beats at once...
  first.drop(1001);
  assert.equal(browser.calls.length, 3);
  await clock.advance(0);
  assert.equal(beats.at(-1).detail.via, 'http');
  // ...and the reconnect carries session_id again.
  await clock.advance(10);
  assert.equal(browser.sockets.length, 2);
  const second = browser.sockets[1];
  assert.equal(second.params.get('session_id'), sessionId);
  second.open();
  assert.equal(second.frames('heartbeat').length, 0, '$connect bound it');
  await clock.advance(30_000);
  assert.equal(second.frames('heartbeat').length, 1);
  assert.equal(browser.calls.length, 3);
  await client.stop();
});

test('a lone tab says "ended" with sendBeacon and ?token= on pagehide', async () => {
  const browser = fakeBrowser({ autoOpen: true });
  const { client, target } = browser.tab('a b/c');
  const beats = record(client, 'heartbeat');
  client.start();
  await waitFor(() => beats.length === 1, 'heartbeat');
  const sessionId = client.sessionId;
  pageHide(target);
  assert.equal(browser.beacons.length, 1);
  const [{ url, data }] = browser.beacons;
  assert.equal(url, '/v1/heartbeats?token=a%20b%2Fc');
  assert.equal(data.type, 'text/plain');
  assert.deepEqual(JSON.parse(await data.text()), { session_id: sessionId, state: 'ended' });
  assert.equal(client.leader, false);
  assert.equal(client.state, 'closed');
  await client.stop();
  assert.equal(browser.beacons.length, 1);
  assert.equal(browser.calls.length, 0, 'no HTTP heartbeat: presence rode the socket');
});

test('a new leader whose socket is open sends a heartbeat frame at once; the last tab ends the session', async () => {
  const browser = fakeBrowser({ autoOpen: true });
  const a = browser.tab('tok-a');
  const b = browser.tab('tok-b');
  a.client.start();
  await waitFor(() => a.client.leader && a.client.state === 'open', 'a leads, open');
  b.client.start();
  await waitFor(() => a.client.tabCount === 2 && b.client.tabCount === 2, 'tabs know each other');
  await waitFor(() => b.client.state === 'open', 'b open');
  assert.equal(b.client.leader, false);
  const [socketA, socketB] = browser.sockets;
  const sessionId = a.client.sessionId;
  assert.equal(socketA.params.get('session_id'), sessionId);
  assert.equal(socketB.params.has('session_id'), false, 'a follower connects without session_id');
  assert.equal(socketB.frames('heartbeat').length, 0);

  const bEvents = record(b.client, 'heartbeat');
  pageHide(a.target);
  assert.equal(browser.beacons.length, 0, 'b is alive: no "ended"');
  await waitFor(() => b.client.leader, 'b takes over');
  // At once, on the socket already open: the session is bound to b's socket before the
  // server's grace for a's closed socket runs out.
  assert.deepEqual(socketB.frames('heartbeat'), [{ action: 'heartbeat', session_id: sessionId }]);
  assert.deepEqual(bEvents.map((e) => e.detail.via), ['socket']);
  assert.equal(browser.sockets.length, 2, 'no new socket');
  assert.equal(browser.calls.length, 0);
  await waitFor(() => b.client.tabCount === 1, 'b heard the bye');

  // b's reconnects carry the session from now on.
  socketB.drop();
  await waitFor(() => browser.sockets.length === 3, 'b reconnects');
  assert.equal(browser.sockets[2].params.get('session_id'), sessionId);
  await waitFor(() => b.client.state === 'open', 'b open again');

  await b.client.stop(); // sign-out in the last tab
  const ended = browser.calls.find((c) => c.body.state === 'ended');
  assert.equal(ended.auth, 'Bearer tok-b');
  assert.equal(ended.init.keepalive, true);
  assert.deepEqual(ended.body, { session_id: sessionId, state: 'ended' });
  assert.equal(browser.storage.getItem('presence.session'), null, 'the next sign-in gets a fresh session');
  await a.client.stop();
});

test('a follower tab that goes away leaves the leader alone', async () => {
  const browser = fakeBrowser({ autoOpen: true });
  const a = browser.tab();
  const b = browser.tab();
  a.client.start();
  await waitFor(() => a.client.leader, 'a leads');
  b.client.start();
  await waitFor(() => a.client.tabCount === 2, 'a knows b');
  await b.client.stop();
  assert.equal(browser.calls.filter((c) => c.body.state === 'ended').length, 0);
  assert.equal(a.client.leader, true);
  await waitFor(() => a.client.tabCount === 1, 'a heard the bye');
  await a.client.stop();
  assert.equal(browser.calls.filter((c) => c.body.state === 'ended').length, 1);
});

test('without Web Locks a localStorage lease elects exactly one leader', async () => {
  const browser = fakeBrowser({ locks: null, autoOpen: true });
  const a = browser.tab();
  const b = browser.tab();
  a.client.start();
  b.client.start();
  await waitFor(() => a.client.leader || b.client.leader, 'a leader');
  await tick(150);
  assert.equal(Number(a.client.leader) + Number(b.client.leader), 1);
  const [leader, follower] = a.client.leader ? [a, b] : [b, a];
  await waitFor(() => follower.client.tabCount === 2, 'tabs know each other');
  await leader.client.stop();
  await waitFor(() => follower.client.leader, 'the follower takes the lease');
  await waitFor(() => browser.sockets.some((s) => s.frames('heartbeat').length > 0), 'it beats on its socket');
  await follower.client.stop();
});

test('a quiet follower socket sends a one-way keepalive every 7.5 min, under the idle timeout', async () => {
  const clock = new FakeClock();
  const browser = fakeBrowser({ locks: heldElsewhere(), env: clock.env() });
  const { client } = browser.tab();
  client.start();
  await clock.advance(0);
  const [socket] = browser.sockets;
  assert.equal(client.leader, false);
  assert.equal(socket.params.has('session_id'), false);
  socket.open();
  answerSnapshot(socket);
  await clock.advance(16 * MINUTE_MS);
  assert.deepEqual(socket.frames('visibility'), [
    { action: 'visibility', visible: true },
    { action: 'visibility', visible: true },
  ]);
  assert.equal(socket.frames('ping').length, 0, 'no two-way ping: its answer is billed too');
  assert.equal(socket.frames('heartbeat').length, 0);
  assert.equal(client.heartbeatTimer, null, 'no heartbeat clock in a follower');
  await client.stop();
});

// ------------------------------------------------------------------ heartbeat clock and throttling

test('the heartbeat clock runs in a Blob worker when it can, on page timers otherwise', async () => {
  const clock = new FakeClock();
  const kit = fakeWorkers(clock);
  const browser = fakeBrowser({ autoOpen: true, env: { ...clock.env(), Worker: kit.Worker, URL: kit.URL, Blob } });
  const { client } = browser.tab();
  client.start();
  await clock.advance(0);
  assert.equal(client.heartbeatTimer, 'worker');
  assert.equal(kit.workers.length, 1);
  const [worker] = kit.workers;
  assert.equal(worker.source, TICKER_WORKER_SOURCE);
  assert.deepEqual(worker.received, [{ ms: 15_000 }], 'ticks every interval/4');
  await clock.advance(3 * MINUTE_MS);
  assert.equal(browser.sockets[0].frames('heartbeat').length, 3);
  await client.stop();
  assert.equal(worker.terminated, true);
  assert.equal(kit.blobs.size, 0, 'the blob URL is revoked');

  // A worker that fails to start (a CSP without worker-src blob:): page timers take over.
  const broken = fakeWorkers(clock, { fail: true });
  const other = fakeBrowser({ autoOpen: true, env: { ...clock.env(), Worker: broken.Worker, URL: broken.URL, Blob } });
  const tab = other.tab().client;
  tab.start();
  await clock.advance(0);
  assert.equal(tab.heartbeatTimer, 'page');
  await clock.advance(3 * MINUTE_MS);
  assert.equal(other.sockets[0].frames('heartbeat').length, 3);
  await tab.stop();
});

/**
 * A leader tab that stays hidden for `minutes` of virtual time with Chrome's intensive
 * throttling: every page timer fires at the next whole minute at the earliest. The server
 * tells interval_s 60 and drops each socket after 2 h (API Gateway's limit). Returns the
 * virtual times at which the server received a heartbeat.
 */
async function hiddenLeader({ worker, transport, minutes = 300 }) {
  const clock = new FakeClock({ throttleMs: MINUTE_MS });
  const received = [];
  const { Socket, created } = socketClass({
    autoOpen: true,
    onOpen: (socket) => {
      if (socket.params.has('session_id')) received.push(clock.now()); // $connect binds
      clock.add(() => socket.drop(1001), 2 * 60 * MINUTE_MS, false, true);
    },
    onSend: (socket, frame) => {
      if (frame.action === 'heartbeat') received.push(clock.now());
      if (frame.action === 'snapshot') {
        queueMicrotask(() => socket.push({ type: 'snapshot', region: 'r', facilities: [], interval_s: 60, ref: frame.ref }));
      }
    },
  });
  const { fetch } = fakeFetch((call) => {
    if (call.body.state === 'active') received.push(clock.now());
    return new Response(JSON.stringify({ interval_s: 60 }), { status: 202 });
  });
  const kit = worker ? fakeWorkers(clock) : { Worker: null, URL: null };
  const doc = new FakeDocument('hidden');
  const client = new PresenceClient({
    token: 'tok',
    websocketUrl: 'ws://host/local',
    heartbeatUrl: '/v1/heartbeats',
    env: {
      ...clock.env(),
      WebSocket: transport === 'socket' ? Socket : RefusedSocket,
      fetch,
      locks: fakeLocks(),
      storage: new MemoryStorage(),
      BroadcastChannel: null,
      sendBeacon: null,
      target: null,
      document: doc,
      Worker: kit.Worker,
      URL: kit.URL,
      Blob,
    },
  });
  clients.add(client);
  const start = clock.now();
  client.start();
  await clock.advance(minutes * MINUTE_MS);
  assert.equal(client.leader, true);
  assert.equal(client.heartbeatTimer, worker ? 'worker' : 'page');
  if (transport === 'socket') {
    assert.ok(created.length >= 3, 'sockets were dropped and reopened');
    assert.ok(created.every((s) => s.frames('visibility').length === 1), 'each socket was told hidden');
  }
  await client.stop();
  return { received, gap: largestGap(received, start, clock.now()) };
}

for (const transport of ['socket', 'http']) {
  for (const worker of [false, true]) {
    test(`a hidden, throttled leader (${transport}, ${worker ? 'worker' : 'page timers'}) never leaves a gap of a TTL`, async () => {
      const { received, gap } = await hiddenLeader({ worker, transport });
      assert.ok(received.length >= 290, `about one heartbeat a minute (${received.length})`);
      assert.ok(gap < TTL_MS, `largest gap ${gap} ms`);
      // The worker's clock is not throttled: beats every interval, not at minute boundaries.
      if (worker) assert.ok(gap <= 60_000 + 7_500, `largest gap ${gap} ms with the worker`);
    });
  }
}

test('the throttling harness catches a naive design: page timers chained every 120 s', async () => {
  const clock = new FakeClock({ throttleMs: MINUTE_MS });
  const { setTimeout: later } = clock.env();
  const received = [];
  const start = clock.now();
  const beat = () => {
    received.push(clock.now());
    later(beat, 120_000);
  };
  beat();
  await clock.advance(60 * MINUTE_MS);
  assert.ok(largestGap(received, start, clock.now()) > TTL_MS, 'a throttled 120 s timer lands 180 s later');
  // The same loop on unthrottled (worker) timers would have held.
  const fair = new FakeClock();
  const times = [];
  const again = () => {
    times.push(fair.now());
    fair.add(again, 120_000);
  };
  again();
  await fair.advance(60 * MINUTE_MS);
  assert.ok(largestGap(times, times[0], fair.now()) < TTL_MS);
});

test('visible again or resumed (Page Lifecycle), the leader beats at once if its last beat is stale', async () => {
  const clock = new FakeClock();
  const doc = new FakeDocument('visible');
  const browser = fakeBrowser({ autoOpen: true, env: { ...clock.env(), document: doc } });
  const { client } = browser.tab();
  client.start();
  await clock.advance(0);
  const [socket] = browser.sockets;
  await clock.advance(30_000);
  doc.hide();
  doc.show();
  assert.equal(socket.frames('heartbeat').length, 0, 'the last beat is fresh');
  doc.hide();
  clock.freeze(5 * MINUTE_MS); // frozen: no timer ran
  doc.resume();
  assert.equal(socket.frames('heartbeat').length, 1, 'at once on resume');
  clock.freeze(2 * MINUTE_MS);
  doc.show();
  assert.equal(socket.frames('heartbeat').length, 2, 'at once when shown');
  await client.stop();
});

// ------------------------------------------------------------------ PresenceClient: WebSocket

/** A follower tab (another tab holds the leader lock), its socket created but not open. */
async function connected(extra = {}, browserOptions = {}) {
  const browser = fakeBrowser({ locks: heldElsewhere(), ...browserOptions });
  const { client, target } = browser.tab('tok', extra);
  client.start();
  await waitFor(() => browser.sockets.length === 1, 'a socket');
  const [socket] = browser.sockets;
  return { browser, client, target, socket };
}

test('a follower socket carries the token (no session_id) and asks for a snapshot on open', async () => {
  const { client, socket } = await connected();
  const events = record(client, 'connection', 'snapshot', 'status');
  assert.equal(socket.url, 'ws://host/local?token=tok');
  assert.equal(client.state, 'connecting');
  socket.open();
  assert.equal(client.state, 'open');
  assert.deepEqual(events[0], { type: 'connection', detail: { state: 'open', attempt: 0 } });
  const ask = socket.last('snapshot');
  assert.ok(ask && typeof ask.ref === 'string');
  socket.push({ type: 'snapshot', region: 'r', facilities: [status('a', 2), status('b', 1, 'offline')], ref: ask.ref });
  const snap = events.find((e) => e.type === 'snapshot').detail;
  assert.equal(snap.region, 'r');
  assert.deepEqual(snap.applied.map((s) => s.facility_id), ['a', 'b']);
  assert.equal(events.filter((e) => e.type === 'status').length, 0, 'snapshot entries fire no status');

  socket.push({ type: 'facility.status', ...status('a', 2, 'offline') }); // duplicate version
  socket.push({ type: 'facility.status', ...status('a', 1, 'offline') }); // older
  assert.equal(events.filter((e) => e.type === 'status').length, 0);
  socket.push({ type: 'facility.status', ...status('a', 3, 'offline') });
  const applied = events.filter((e) => e.type === 'status');
  assert.equal(applied.length, 1);
  assert.equal(applied[0].detail.status, 'offline');
  assert.equal(applied[0].detail.version, 3);
  assert.equal(client.board.get('a').status, 'offline');
  assert.equal(socket.frames('heartbeat').length, 0, 'a follower never beats');
  await client.stop();
  assert.equal(socket.closedByClient, true);
});

test('facility.statuses frames apply each status in order, newer versions only, with status events', async () => {
  const { client, socket } = await connected();
  const events = record(client, 'status');
  socket.open();
  answerSnapshot(socket, [status('a', 5), status('b', 2)]);
  const { region: _omit, ...noRegion } = status('c', 1);
  socket.push({
    type: 'facility.statuses',
    region: 'r',
    statuses: [
      status('a', 4, 'offline'), // older than held: ignored
      status('b', 3, 'offline'),
      status('a', 6, 'offline'),
      status('a', 6, 'online'), // duplicate version: ignored
      status('b', 4, 'online'),
      status('b', 3, 'offline'), // late: ignored
      noRegion, // the frame's region applies
      null, // malformed: skipped
    ],
  });
  assert.deepEqual(
    events.map((e) => [e.detail.facility_id, e.detail.version, e.detail.status]),
    [
      ['b', 3, 'offline'],
      ['a', 6, 'offline'],
      ['b', 4, 'online'],
      ['c', 1, 'online'],
    ],
  );
  assert.equal(client.board.get('a').status, 'offline');
  assert.equal(client.board.get('b').version, 4);
  assert.equal(client.board.get('c').region, 'r');
  socket.push({ type: 'facility.statuses', region: 'r' }); // no list: nothing
  socket.push({ type: 'facility.status', ...status('c', 2, 'offline') }); // single frames still work
  assert.equal(events.length, 5);
  await client.stop();
});

test('hidden past the grace: visible:false once; shown: visible:true, then a fresh snapshot', async () => {
  const clock = new FakeClock();
  const doc = new FakeDocument('visible');
  const { client, socket } = await connected({}, { env: { ...clock.env(), document: doc } });
  const events = record(client, 'visibility', 'snapshot', 'status');
  socket.open();
  answerSnapshot(socket, [status('a', 1), status('b', 1)]);
  const sentBefore = socket.sent.length;

  doc.hide();
  await clock.advance(20_000);
  doc.show(); // a short look away says nothing
  doc.hide();
  await clock.advance(29_000);
  assert.equal(socket.sent.length, sentBefore, 'nothing within the grace');
  assert.equal(client.reportedVisible, true);
  await clock.advance(2_000);
  assert.deepEqual(socket.sent.slice(sentBefore), [{ action: 'visibility', visible: false }]);
  assert.deepEqual(events.filter((e) => e.type === 'visibility').map((e) => e.detail), [{ visible: false }]);
  assert.equal(client.reportedVisible, false);
  await clock.advance(10 * MINUTE_MS);
  // said once; a quiet socket's keepalive only restates it
  assert.deepEqual(
    socket.frames('visibility'),
    [{ action: 'visibility', visible: false }, { action: 'visibility', visible: false }],
  );
  assert.deepEqual(events.filter((e) => e.type === 'visibility').map((e) => e.detail), [{ visible: false }]);

  const shownAt = socket.sent.length;
  doc.show();
  const shown = socket.sent.slice(shownAt);
  assert.deepEqual(shown[0], { action: 'visibility', visible: true });
  assert.equal(shown[1].action, 'snapshot');
  assert.equal(shown.length, 2);
  // Region events were missed meanwhile: the snapshot brings them onto the board.
  answerSnapshot(socket, [status('a', 1), status('b', 3, 'offline')]);
  const snap = events.filter((e) => e.type === 'snapshot').at(-1).detail;
  assert.deepEqual(snap.applied.map((s) => [s.facility_id, s.version]), [['b', 3]]);
  assert.equal(client.board.get('b').status, 'offline');
  assert.deepEqual(events.filter((e) => e.type === 'visibility').map((e) => e.detail.visible), [false, true]);
  assert.equal(client.reportedVisible, true);
  await client.stop();
});

test('a reconnect while reported hidden says visible:false right after open; shown while closed says nothing', async () => {
  const clock = new FakeClock();
  const doc = new FakeDocument('hidden'); // a tab opened in the background
  const { browser, client, socket } = await connected({ hiddenGraceMs: 5_000 }, { env: { ...clock.env(), document: doc } });
  socket.open();
  answerSnapshot(socket);
  await clock.advance(5_000);
  assert.deepEqual(socket.last('visibility'), { action: 'visibility', visible: false });

  socket.drop();
  await clock.advance(10);
  const second = browser.sockets[1];
  second.open();
  assert.deepEqual(second.sent[0], { action: 'visibility', visible: false }, 'a new connection starts visible');
  assert.equal(second.sent[1].action, 'snapshot');

  // Shown while disconnected: nothing to send; the next connection starts visible anyway.
  second.drop();
  doc.show();
  assert.equal(client.reportedVisible, true);
  await clock.advance(10);
  const third = browser.sockets[2];
  third.open();
  assert.deepEqual(third.sent.map((m) => m.action), ['snapshot']);
  await client.stop();
});

test('a resync event makes the client take a snapshot and replace its board', async () => {
  const { client, socket } = await connected();
  const events = record(client, 'snapshot', 'status');
  socket.open();
  const first = socket.last('snapshot');
  socket.push({ type: 'snapshot', region: 'r', facilities: [status('a', 9), status('b', 4)], ref: first.ref });
  socket.push({ type: 'resync', reason: 'data_loss' });
  const again = socket.last('snapshot');
  assert.notEqual(again.ref, first.ref, 'a second snapshot is asked for');
  assert.equal('resync' in again, false, 'the frame carries no client-side flag');
  socket.push({ type: 'snapshot', region: 'r', facilities: [status('b', 1)], ref: again.ref });
  const snap = events.filter((e) => e.type === 'snapshot')[1].detail;
  assert.equal(snap.resync, true);
  assert.deepEqual(snap.applied.map((s) => [s.facility_id, s.status]).sort(), [['a', 'offline'], ['b', 'online']]);
  assert.equal(client.board.get('a').status, 'offline');
  assert.equal(client.board.get('b').version, 1);
  await client.stop();
});

test('requests resolve with the reply matched by ref and reject on error replies', async () => {
  const { client, socket } = await connected();
  const events = record(client, 'joined', 'message', 'error', 'member.joined');
  socket.open();

  const join = client.join('chat:r-lobby');
  const sent = socket.last('join');
  assert.equal(sent.group, 'chat:r-lobby');
  socket.push({ type: 'joined', group: 'chat:r-lobby', ref: 'someone-else' }); // not ours
  socket.push({ type: 'joined', group: 'chat:r-lobby', ref: sent.ref });
  assert.deepEqual(await join, { type: 'joined', group: 'chat:r-lobby', ref: sent.ref });
  assert.equal(events.filter((e) => e.type === 'joined').length, 2, 'joined events fire for every copy');
  assert.deepEqual(client.groups, ['chat:r-lobby']);

  const send = client.send('chat:r-lobby', { text: 'hi' }, { others: true });
  const out = socket.last('send');
  assert.deepEqual({ ...out, ref: undefined }, { action: 'send', group: 'chat:r-lobby', data: { text: 'hi' }, others: true, ref: undefined });
  socket.push({ type: 'message', group: 'chat:r-lobby', from: 'u2', data: { text: 'yo' } });
  socket.push({ type: 'sent', group: 'chat:r-lobby', delivered: 3, ref: out.ref });
  assert.equal((await send).delivered, 3);
  assert.deepEqual(events.find((e) => e.type === 'message').detail.data, { text: 'yo' });

  const members = client.members('chat:other');
  socket.push({ type: 'error', code: 'not_member', message: 'join first', action: 'members', ref: socket.last('members').ref });
  await assert.rejects(members, (e) => e instanceof PresenceError && e.code === 'not_member' && e.action === 'members');
  assert.equal(events.filter((e) => e.type === 'error').length, 0, 'a matched error only rejects');

  socket.push({ type: 'error', code: 'bad_request', message: 'nope' });
  assert.deepEqual(events.find((e) => e.type === 'error').detail, {
    source: 'server',
    code: 'bad_request',
    message: 'nope',
    action: undefined,
  });
  socket.push({ type: 'member.joined', group: 'chat:r-lobby', user: 'u2' });
  assert.equal(events.find((e) => e.type === 'member.joined').detail.user, 'u2');

  await assert.rejects(client.join('region:r'), (e) => e.code === 'bad_group');
  await client.stop();
});

test('requests time out', async () => {
  const { client, socket } = await connected({ requestTimeoutMs: 20 });
  socket.open();
  await assert.rejects(client.members('chat:x'), (e) => e.code === 'timeout');
  await client.stop();
});

test('a failed join is forgotten; a join asked while disconnected happens on open', async () => {
  const { client, socket } = await connected();
  await assert.rejects(client.join('chat:early'), (e) => e.code === 'not_connected');
  socket.open();
  const early = socket.last('join');
  assert.equal(early.group, 'chat:early');
  const bad = client.join('chat:forbidden');
  socket.push({ type: 'error', code: 'forbidden', message: 'no', action: 'join', ref: socket.last('join').ref });
  await assert.rejects(bad);
  assert.deepEqual(client.groups, ['chat:early']);
  await client.stop();
});

test('on close: pending requests reject, backoff, reconnect, snapshot and re-join', async () => {
  const { client, socket } = await connected();
  const events = record(client, 'connection', 'left');
  socket.open();
  const join = client.join('chat:r-lobby');
  socket.push({ type: 'joined', group: 'chat:r-lobby', ref: socket.last('join').ref });
  await join;
  client.join('chat:second').catch(() => {});
  socket.push({ type: 'joined', group: 'chat:second', ref: socket.last('join').ref });
  socket.push({ type: 'left', group: 'chat:second' }); // left on another device

  const pending = client.members('chat:r-lobby');
  const before = FakeSocket.instances.length;
  socket.drop(1001);
  await assert.rejects(pending, (e) => e.code === 'closed');
  const closed = events.find((e) => e.type === 'connection' && e.detail.state === 'closed').detail;
  assert.equal(closed.code, 1001);
  assert.equal(closed.attempt, 1);
  assert.ok(closed.retry_in_ms >= 0 && closed.retry_in_ms < 4);

  await waitFor(() => FakeSocket.instances.length === before + 1, 'a new socket');
  const again = FakeSocket.instances[before];
  assert.equal(again.url, 'ws://host/local?token=tok');
  again.open();
  assert.deepEqual(again.sent.map((m) => m.action), ['snapshot', 'join']);
  assert.equal(again.sent[1].group, 'chat:r-lobby', 'a group left elsewhere is not re-joined');
  assert.equal(events.filter((e) => e.type === 'left').length, 1);
  await client.stop();
});

test('leaving on another device stops re-joins; a leave asked offline is sent on open', async () => {
  const { client, socket } = await connected();
  socket.open();
  client.join('chat:a').catch(() => {});
  client.join('chat:b').catch(() => {});
  socket.push({ type: 'left', group: 'chat:a' }); // from another device of this user
  assert.deepEqual(client.groups, ['chat:b']);
  const before = FakeSocket.instances.length;
  socket.drop();
  await assert.rejects(client.leave('chat:b'), (e) => e.code === 'not_connected');
  await waitFor(() => FakeSocket.instances.length === before + 1, 'a new socket');
  const again = FakeSocket.instances[before];
  again.open();
  assert.deepEqual(
    again.sent.map((m) => `${m.action}${m.group ? ` ${m.group}` : ''}`),
    ['snapshot', 'leave chat:b'],
  );
  await client.stop();
});

test('stop() closes the socket without reconnecting', async () => {
  const { client, socket } = await connected();
  socket.open();
  const before = FakeSocket.instances.length;
  await client.stop();
  await tick(30);
  assert.equal(FakeSocket.instances.length, before);
  assert.equal(client.state, 'closed');
  assert.equal(client.running, false);
});

// ------------------------------------------------------------------ messages: seq, history, recovery

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
/** An unsigned JWT-shaped token (the client never verifies). */
const jwt = (payload) => `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(payload)}.c2ln`;

const chatMessage = (seq, extra = {}) => ({
  type: 'message',
  group: 'chat:r-lobby',
  from: 'u2',
  data: { text: `m${seq}` },
  seq,
  ts: 1_700_000_000_000 + seq,
  ...extra,
});
const stored = (seq) => ({ seq, ts: 1_700_000_000_000 + seq, from: seq % 2 ? 'u2' : null, data: { text: `m${seq}` } });

/** Opens `socket`, answers its snapshot and the join of `group` (if asked). */
async function openAndJoin(socket, group = 'chat:r-lobby') {
  socket.open();
  answerSnapshot(socket);
  const join = socket.frames('join').find((f) => f.group === group);
  if (join) socket.push({ type: 'joined', group, ref: join.ref });
  await flush();
}

/** A follower client joined to chat:r-lobby that saw live messages `seqs`. */
async function joinedWith(seqs, extra = {}, browserOptions = {}) {
  const ctx = await connected(extra, browserOptions);
  ctx.socket.open();
  answerSnapshot(ctx.socket);
  const join = ctx.client.join('chat:r-lobby');
  ctx.socket.push({ type: 'joined', group: 'chat:r-lobby', ref: ctx.socket.last('join').ref });
  await join;
  for (const seq of seqs) ctx.socket.push(chatMessage(seq));
  return ctx;
}

/** Drops `ctx.socket` and resolves with the next socket (not open yet). */
async function reconnect(ctx) {
  const n = ctx.browser.sockets.length;
  ctx.socket.drop();
  await waitFor(() => ctx.browser.sockets.length === n + 1, 'a new socket');
  ctx.socket = ctx.browser.sockets[n];
  return ctx.socket;
}

test('after a reopen the client asks history after the last seq, pages while more, and emits each message once, in order', async () => {
  const ctx = await joinedWith([1, 2, 3]);
  const { client } = ctx;
  assert.equal(client.lastSeq('chat:r-lobby'), 3);
  const events = record(client, 'message', 'recovered');

  const socket = await reconnect(ctx);
  await openAndJoin(socket);
  assert.deepEqual(socket.sent.map((m) => m.action), ['snapshot', 'join', 'history'], 'history after the re-join');
  const first = socket.last('history');
  assert.deepEqual({ ...first, ref: undefined }, { action: 'history', group: 'chat:r-lobby', after: 3, limit: 200, ref: undefined });

  // Live messages during the recovery wait: one that history will bring too, one newer, a duplicate.
  socket.push(chatMessage(5));
  socket.push(chatMessage(8));
  socket.push(chatMessage(3));
  assert.equal(events.length, 0, 'nothing before the recovered ones');

  socket.push({ type: 'history', group: 'chat:r-lobby', messages: [stored(4), stored(5)], complete: true, more: true, ref: first.ref });
  await flush();
  const second = socket.last('history');
  assert.notEqual(second.ref, first.ref);
  assert.equal(second.after, 5, 'the next page starts after the last seq returned');
  socket.push({ type: 'history', group: 'chat:r-lobby', messages: [stored(6), stored(7)], complete: true, more: false, ref: second.ref });
  await flush();

  assert.deepEqual(events.map((e) => [e.type, e.detail.seq ?? e.detail.count]), [
    ['message', 4], ['message', 5], ['message', 6], ['message', 7], ['message', 8], ['recovered', 4],
  ]);
  const recovered = events.filter((e) => e.type === 'message' && e.detail.recovered).map((e) => e.detail);
  assert.deepEqual(recovered.map((m) => m.seq), [4, 5, 6, 7]);
  assert.deepEqual(recovered[0], { type: 'message', group: 'chat:r-lobby', from: null, data: { text: 'm4' }, seq: 4, ts: 1_700_000_000_004, recovered: true });
  assert.equal(events[4].detail.recovered, undefined, 'the held live message follows as it came');
  assert.deepEqual(events.at(-1).detail, { group: 'chat:r-lobby', count: 4, complete: true, after: 3, last_seq: 8 });
  assert.equal(client.lastSeq('chat:r-lobby'), 8);

  // Live again: duplicates dropped, new ones through at once.
  socket.push(chatMessage(8));
  socket.push(chatMessage(9));
  assert.deepEqual(events.slice(6).map((e) => e.detail.seq), [9]);
  await client.stop();
});

test('a recovery that finds messages dropped by retention says complete:false and moves on', async () => {
  const ctx = await joinedWith([1, 2]);
  const events = record(ctx.client, 'message', 'recovered');
  const socket = await reconnect(ctx);
  await openAndJoin(socket);
  const ask = socket.last('history');
  assert.equal(ask.after, 2);
  socket.push({ type: 'history', group: 'chat:r-lobby', messages: [stored(40), stored(41)], complete: false, more: false, ref: ask.ref });
  await flush();
  assert.deepEqual(events.map((e) => e.detail.seq ?? e.detail.complete), [40, 41, false]);
  assert.equal(ctx.client.lastSeq('chat:r-lobby'), 41, 'no waiting for seqs that are gone');

  // Nothing missed: a recovery with nothing to deliver still reports.
  const third = await reconnect(ctx);
  await openAndJoin(third);
  const again = third.last('history');
  assert.equal(again.after, 41);
  third.push({ type: 'history', group: 'chat:r-lobby', messages: [], complete: true, more: false, ref: again.ref });
  await flush();
  assert.deepEqual(events.at(-1).detail, { group: 'chat:r-lobby', count: 0, complete: true, after: 41, last_seq: 41 });
  await ctx.client.stop();
});

test('a recovery cut by another close delivers what it got and starts again from there', async () => {
  const ctx = await joinedWith([1]);
  const events = record(ctx.client, 'message', 'recovered');
  let socket = await reconnect(ctx);
  await openAndJoin(socket);
  const ask = socket.last('history');
  socket.push({ type: 'history', group: 'chat:r-lobby', messages: [stored(2), stored(3)], complete: true, more: true, ref: ask.ref });
  socket.push(chatMessage(9)); // live, held
  await flush();
  socket = await reconnect(ctx); // closed while asking the second page
  await flush();
  assert.deepEqual(events.map((e) => e.detail.seq), [2, 3, 9], 'the held live message is delivered when the recovery ends');
  assert.equal(events.some((e) => e.type === 'recovered'), false);
  assert.equal(ctx.client.lastSeq('chat:r-lobby'), 3, 'the watermark stops below the gap');

  await openAndJoin(socket);
  const resumed = socket.last('history');
  assert.equal(resumed.after, 3);
  socket.push({ type: 'history', group: 'chat:r-lobby', messages: [4, 5, 6, 7, 8, 9].map(stored), complete: true, more: false, ref: resumed.ref });
  await flush();
  assert.deepEqual(events.slice(3).map((e) => e.detail.seq ?? `recovered ${e.detail.count}`), [4, 5, 6, 7, 8, 'recovered 5']);
  assert.equal(ctx.client.lastSeq('chat:r-lobby'), 9);
  await ctx.client.stop();
});

test('live messages: each seq once, out-of-order ones delivered, the watermark only over contiguous seqs', async () => {
  const { client, socket } = await joinedWith([]);
  const events = record(client, 'message');
  for (const seq of [10, 12, 11, 12, 10, 14]) socket.push(chatMessage(seq));
  assert.deepEqual(events.map((e) => e.detail.seq), [10, 12, 11, 14]);
  assert.equal(client.lastSeq('chat:r-lobby'), 12, '13 is still missing');
  socket.push(chatMessage(13));
  assert.equal(client.lastSeq('chat:r-lobby'), 14);
  socket.push({ type: 'message', group: 'chat:r-lobby', from: null, data: 'no seq' }); // an older server
  assert.equal(events.at(-1).detail.data, 'no seq');
  assert.equal(events.at(-1).detail.from, null);

  // A send with `others` gets no copy back: its seq counts as delivered from the `sent` reply.
  const sent = client.send('chat:r-lobby', 'hi', { others: true });
  socket.push({ type: 'sent', group: 'chat:r-lobby', delivered: 2, seq: 15, ref: socket.last('send').ref });
  assert.equal((await sent).seq, 15);
  assert.equal(client.lastSeq('chat:r-lobby'), 15);
  // Without `others` the copy is the delivery, whichever comes first.
  const own = client.send('chat:r-lobby', 'me');
  socket.push({ type: 'sent', group: 'chat:r-lobby', delivered: 3, seq: 16, ref: socket.last('send').ref });
  await own;
  socket.push(chatMessage(16, { from: 'me' }));
  assert.deepEqual(events.map((e) => e.detail.seq).slice(-1), [16]);
  await client.stop();
});

test('history() sends after/limit, resolves with the reply, and sets where recovery starts', async () => {
  const ctx = await connected();
  const { client, socket } = ctx;
  socket.open();
  answerSnapshot(socket);
  const join = client.join('chat:r-lobby');
  socket.push({ type: 'joined', group: 'chat:r-lobby', ref: socket.last('join').ref });
  await join;
  assert.equal(client.lastSeq('chat:r-lobby'), undefined);

  const last50 = client.history('chat:r-lobby', { limit: 50 });
  const ask = socket.last('history');
  assert.deepEqual({ ...ask, ref: undefined }, { action: 'history', group: 'chat:r-lobby', limit: 50, ref: undefined });
  const reply = { type: 'history', group: 'chat:r-lobby', messages: [stored(31), stored(32)], complete: true, more: false, ref: ask.ref };
  socket.push(reply);
  assert.deepEqual(await last50, reply);
  assert.equal(client.lastSeq('chat:r-lobby'), 32);
  const events = record(client, 'message');
  socket.push(chatMessage(32)); // already loaded
  socket.push(chatMessage(33));
  assert.deepEqual(events.map((e) => e.detail.seq), [33]);

  const page = client.history('chat:r-lobby', { after: 10, limit: 2 });
  assert.deepEqual({ ...socket.last('history'), ref: undefined }, { action: 'history', group: 'chat:r-lobby', after: 10, limit: 2, ref: undefined });
  socket.push({ type: 'error', code: 'not_member', message: 'join first', action: 'history', ref: socket.last('history').ref });
  await assert.rejects(page, (e) => e.code === 'not_member' && e.action === 'history');
  await assert.rejects(client.history('chat:r-lobby', { limit: 0 }), (e) => e.code === 'bad_request');
  await assert.rejects(client.history('chat:r-lobby', { limit: 501 }), (e) => e.code === 'bad_request');
  await assert.rejects(client.history('chat:r-lobby', { after: -1 }), (e) => e.code === 'bad_request');
  await assert.rejects(client.history(''), (e) => e.code === 'bad_group');

  // An empty group: recovery starts from the beginning.
  const empty = client.history('chat:empty', { limit: 50 });
  socket.push({ type: 'history', group: 'chat:empty', messages: [], complete: true, more: false, ref: socket.last('history').ref });
  await empty;
  assert.equal(client.lastSeq('chat:empty'), 0);
  await client.stop();
});

test('leaving forgets a group\'s seqs: no recovery for it; track() declares other groups, with a starting seq', async () => {
  const ctx = await joinedWith([1, 2], { historyGroups: ['user:me'] });
  const { client } = ctx;
  assert.deepEqual(client.historyGroups.sort(), ['chat:r-lobby', 'user:me']);
  ctx.socket.push({ type: 'left', group: 'chat:r-lobby' }); // left on another device
  assert.equal(client.lastSeq('chat:r-lobby'), undefined);
  ctx.socket.push({ type: 'message', group: 'user:me', from: null, data: 'x', seq: 7, ts: 1 }); // the backend to this user
  assert.equal(client.lastSeq('user:me'), 7);
  client.track('user:other', 20);
  await flush();
  const events = record(client, 'message', 'recovered');

  const socket = await reconnect(ctx);
  socket.open();
  answerSnapshot(socket);
  await flush();
  const asks = socket.frames('history').map((f) => [f.group, f.after]).sort();
  assert.deepEqual(asks, [['user:me', 7], ['user:other', 20]]);
  for (const f of socket.frames('history')) {
    socket.push({ type: 'history', group: f.group, messages: [stored(f.after + 1)], complete: true, more: false, ref: f.ref });
  }
  await flush();
  assert.deepEqual(
    events.filter((e) => e.type === 'message').map((e) => [e.detail.group, e.detail.seq]).sort(),
    [['user:me', 8], ['user:other', 21]],
  );
  client.untrack('user:other');
  assert.equal(client.lastSeq('user:other'), undefined);
  assert.deepEqual(client.historyGroups, ['user:me']);
  await client.stop();
  assert.equal(client.lastSeq('user:me'), undefined, 'stop() forgets every seq');
});

test('a failed re-join asks no history', async () => {
  const ctx = await joinedWith([1]);
  const socket = await reconnect(ctx);
  socket.open();
  answerSnapshot(socket);
  socket.push({ type: 'error', code: 'banned', message: 'banned', action: 'join', ref: socket.last('join').ref });
  await flush();
  assert.equal(socket.frames('history').length, 0);
  assert.deepEqual(ctx.client.groups, []);
  await ctx.client.stop();
});

test('presence() resolves with the reply; member.online and member.offline are events', async () => {
  const { client, socket } = await connected();
  const events = record(client, 'member.online', 'member.offline', 'member.joined', 'member.left');
  socket.open();
  const asked = client.presence('chat:r-lobby');
  const ask = socket.last('presence');
  assert.deepEqual({ ...ask, ref: undefined }, { action: 'presence', group: 'chat:r-lobby', ref: undefined });
  const reply = { type: 'presence', group: 'chat:r-lobby', members: [{ user: 'ann', devices: 2 }], ref: ask.ref };
  socket.push(reply);
  assert.deepEqual(await asked, reply);
  socket.push({ type: 'member.online', group: 'chat:r-lobby', user: 'bo' });
  socket.push({ type: 'member.offline', group: 'chat:r-lobby', user: 'ann' });
  socket.push({ type: 'member.joined', group: 'chat:r-lobby', user: 'cy' });
  socket.push({ type: 'member.left', group: 'chat:r-lobby', user: 'cy' });
  assert.deepEqual(events.map((e) => [e.type, e.detail.user]), [
    ['member.online', 'bo'], ['member.offline', 'ann'], ['member.joined', 'cy'], ['member.left', 'cy'],
  ]);
  await client.stop();
});

// ------------------------------------------------------------------ token refresh

test('JWT helpers: exp without verification, refresh 60 s before or at 80 % of the life', () => {
  const now = Date.UTC(2030, 0, 1);
  const token = jwt({ sub: 'ann', exp: now / 1000 + 3600, name: 'Åse' });
  assert.equal(tokenExpiry(token), now / 1000 + 3600);
  assert.equal(decodeJwtPayload(token).name, 'Åse');
  assert.equal(tokenExpiry('not-a-jwt'), null);
  assert.equal(tokenExpiry(jwt({ sub: 'ann' })), null);
  assert.equal(decodeJwtPayload('a.!!!.c'), null);
  assert.equal(tokenRefreshDelay(now / 1000 + 12 * 3600, now), 34_560_000, '80 % of a long life');
  assert.equal(tokenRefreshDelay(now / 1000 + 120, now), 60_000, '60 s before a short one');
  assert.equal(tokenRefreshDelay(now / 1000 + 30, now), 0, 'due');
  assert.equal(tokenRefreshDelay(now / 1000 - 5, now), 0, 'expired');
  // 80 % of the life the token had when received, not of what is left now
  assert.equal(tokenRefreshDelay(now / 1000 + 600, now + 400_000, now), 80_000);
  assert.equal(tokenRefreshDelay(now / 1000 + 600, now + 500_000, now), 0);
});

/** A follower on virtual time whose tokens expire `lifeS` after they are made. */
async function tokenClient({ lifeS = 600, respond, getToken: custom } = {}) {
  const clock = new FakeClock();
  let n = 0;
  const issued = [];
  const getToken =
    custom ??
    (async () => {
      const token = jwt({ sub: 'ann', n: ++n, exp: Math.floor(clock.now() / 1000) + lifeS });
      issued.push({ token, at: clock.now() });
      return token;
    });
  const first = jwt({ sub: 'ann', n: 0, exp: Math.floor(clock.now() / 1000) + lifeS });
  const browser = fakeBrowser({ locks: heldElsewhere(), env: clock.env(), respond });
  const { client } = browser.tab(first, { getToken });
  const events = record(client, 'token', 'authed', 'error');
  client.start();
  await waitFor(() => browser.sockets.length === 1, 'a socket');
  return { clock, browser, client, events, issued, first, socket: browser.sockets[0] };
}

test('a token is refreshed before it expires and sent on the open socket; authed schedules the next', async () => {
  const { clock, client, events, issued, first, socket } = await tokenClient({ lifeS: 600 });
  assert.equal(socket.params.get('token'), first);
  socket.open();
  answerSnapshot(socket);
  assert.equal(client.tokenExp, Math.floor(clock.now() / 1000) + 600);
  await clock.advance(479_000); // 80 % of 600 s = 480 s (sooner than 540 s)
  assert.equal(issued.length, 0);
  await clock.advance(2_000);
  assert.equal(issued.length, 1);
  const auth = socket.last('auth');
  assert.equal(auth.token, issued[0].token);
  assert.deepEqual(events.map((e) => e.type), ['token']);
  assert.equal(events[0].detail.exp, tokenExpiry(issued[0].token));
  socket.push({ type: 'authed', exp: tokenExpiry(issued[0].token), ref: auth.ref });
  await flush();
  assert.deepEqual(events.map((e) => e.type), ['token', 'authed']);
  assert.deepEqual(events[1].detail, { exp: tokenExpiry(issued[0].token) });

  // The next one: 480 s after the first refresh.
  await clock.advance(478_000);
  assert.equal(issued.length, 1);
  await clock.advance(3_000);
  assert.equal(issued.length, 2);
  assert.equal(socket.frames('auth').length, 2);
  await client.stop();
});

test('a short-lived token is refreshed 60 s before its exp', async () => {
  const { clock, client, issued, socket } = await tokenClient({ lifeS: 120 });
  socket.open();
  answerSnapshot(socket);
  await clock.advance(59_000);
  assert.equal(issued.length, 0);
  await clock.advance(2_000);
  assert.equal(issued.length, 1);
  await client.stop();
});

test('a refused auth is retried with backoff', async () => {
  const { clock, client, events, issued, socket } = await tokenClient({ lifeS: 3600 * 12 });
  socket.open();
  answerSnapshot(socket);
  await clock.advance(0.8 * 12 * 3600 * 1000 + 1_000);
  assert.equal(issued.length, 1);
  socket.push({ type: 'error', code: 'unauthorized', message: 'bad token', action: 'auth', ref: socket.last('auth').ref });
  await flush();
  assert.deepEqual(events.filter((e) => e.type === 'error').map((e) => [e.detail.source, e.detail.code]), [['token', 'unauthorized']]);
  await clock.advance(1_000); // the first retry within 1 s (full jitter), later ones up to a minute apart
  assert.equal(issued.length, 2, 'retried');
  socket.push({ type: 'authed', exp: tokenExpiry(issued[1].token), ref: socket.last('auth').ref });
  await clock.advance(3_600_000);
  assert.equal(issued.length, 2, 'accepted: the next refresh is hours away');
  await client.stop();
});

test('token_expired: refresh at once, then the refused request is sent again (once)', async () => {
  const { client, events, issued, socket } = await tokenClient();
  socket.open();
  answerSnapshot(socket);
  const join = client.join('chat:r-lobby');
  const first = socket.last('join');
  socket.push({ type: 'error', code: 'token_expired', message: 'expired', action: 'join', ref: first.ref });
  await flush();
  assert.equal(issued.length, 1);
  const auth = socket.last('auth');
  assert.equal(auth.token, issued[0].token);
  assert.equal(socket.frames('join').length, 1, 'not again before authed');
  socket.push({ type: 'authed', exp: tokenExpiry(issued[0].token), ref: auth.ref });
  await flush();
  const again = socket.last('join');
  assert.notEqual(again.ref, first.ref);
  socket.push({ type: 'joined', group: 'chat:r-lobby', ref: again.ref });
  assert.equal((await join).type, 'joined');
  assert.equal(events.filter((e) => e.type === 'error').length, 0, 'the app saw nothing');

  // A second refusal of the retried frame is the app's.
  const send = client.send('chat:r-lobby', 'x');
  socket.push({ type: 'error', code: 'token_expired', message: 'expired', action: 'send', ref: socket.last('send').ref });
  await flush();
  socket.push({ type: 'authed', exp: 1, ref: socket.last('auth').ref });
  await flush();
  socket.push({ type: 'error', code: 'token_expired', message: 'expired', action: 'send', ref: socket.last('send').ref });
  await assert.rejects(send, (e) => e.code === 'token_expired');
  await client.stop();
});

test('a one-way frame refused with token_expired (no ref) refreshes at once', async () => {
  const { client, events, issued, socket } = await tokenClient();
  socket.open();
  answerSnapshot(socket);
  socket.push({ type: 'error', code: 'token_expired', message: 'expired', action: 'visibility' });
  socket.push({ type: 'error', code: 'token_expired', message: 'expired', action: 'heartbeat' });
  await flush();
  assert.equal(issued.length, 1, 'one refresh for both');
  assert.equal(socket.frames('auth').length, 1);
  assert.equal(events.filter((e) => e.type === 'error' && e.detail.code === 'token_expired').length, 2);
  await client.stop();
});

test('reconnects and HTTP heartbeats use the newest token; a token due at reconnect is refreshed first', async () => {
  const clock = new FakeClock();
  let n = 0;
  const getToken = async () => jwt({ sub: 'ann', n: ++n, exp: Math.floor(clock.now() / 1000) + 600 });
  const browser = fakeBrowser({ env: clock.env() }); // this tab leads
  const { client } = browser.tab(jwt({ sub: 'ann', n: 0, exp: Math.floor(clock.now() / 1000) + 600 }), { getToken });
  client.start();
  await clock.advance(10);
  const [socket] = browser.sockets;
  socket.open();
  answerSnapshot(socket);
  await clock.advance(481_000);
  const fresh = socket.last('auth').token;
  assert.equal(decodeJwtPayload(fresh).n, 1);
  socket.push({ type: 'authed', exp: tokenExpiry(fresh), ref: socket.last('auth').ref });

  socket.drop(); // the leader beats over HTTP at once, with the new token
  await flush();
  assert.equal(browser.calls.at(-1).auth, `Bearer ${fresh}`);
  await clock.advance(10);
  const second = browser.sockets[1];
  assert.equal(second.params.get('token'), fresh);

  // Closed for long: the token is due when the reconnect comes, so a fresh one first.
  second.drop();
  await clock.advance(0);
  clock.freeze(500_000);
  await clock.advance(10);
  const third = browser.sockets.at(-1);
  assert.equal(decodeJwtPayload(third.params.get('token')).n, 2);
  await client.stop();
});

test('a token refreshed while the socket was connecting is sent right after open', async () => {
  const { client, clock, browser, issued, socket } = await tokenClient({ lifeS: 600 });
  socket.open();
  socket.drop();
  await clock.advance(490_000); // refreshed while closed
  assert.equal(issued.length, 1);
  const next = browser.sockets.at(-1);
  next.open();
  assert.equal(next.sent[0].action, 'auth');
  assert.equal(next.sent[0].token, issued[0].token);
  await client.stop();
});

test('setToken uses a token at once: auth on the open socket, null when closed', async () => {
  const { client, socket } = await connected();
  await assert.rejects(client.setToken(''), (e) => e.code === 'bad_request');
  socket.open();
  const token = jwt({ sub: 'ann', exp: 4_000_000_000 });
  const events = record(client, 'token', 'authed');
  const done = client.setToken(token);
  const auth = socket.last('auth');
  assert.equal(auth.token, token);
  socket.push({ type: 'authed', exp: 4_000_000_000, ref: auth.ref });
  assert.equal((await done).exp, 4_000_000_000);
  assert.deepEqual(events.map((e) => [e.type, e.detail.exp]), [['token', 4_000_000_000], ['authed', 4_000_000_000]]);
  assert.equal(client.tokenExp, 4_000_000_000);
  socket.drop();
  assert.equal(await client.setToken(jwt({ sub: 'ann', exp: 4_000_000_001 })), null);
  await client.stop();
});
