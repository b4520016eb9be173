// Unit tests for web/presence-client.js: node --test web/test/
// Dependency-free: browser APIs are replaced by the small fakes below through `env`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FacilityBoard,
  PresenceClient,
  PresenceError,
  backoffDelay,
  isChatGroup,
  newSessionId,
  parseRetryAfter,
  withQuery,
} from '../presence-client.js';

// ------------------------------------------------------------------ fakes

class FakeSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
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
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
  last(action) {
    return [...this.sent].reverse().find((m) => m.action === action);
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

/** A Web Locks stand-in: one exclusive lock per name, FIFO, abortable while waiting. */
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
        const entry = { callback, resolve, reject };
        if (!queues.has(name)) queues.set(name, []);
        const queue = queues.get(name);
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

let channelSeq = 0;
/** A shared "browser": storage, locks, a tabs channel name, heartbeat server, beacon sink. */
function fakeBrowser({ locks = fakeLocks(), respond } = {}) {
  const storage = new MemoryStorage();
  const { fetch, calls } = fakeFetch(respond);
  const { sendBeacon, beacons } = fakeBeacon();
  const tabsChannel = `presence-tabs-test-${process.pid}-${++channelSeq}`;
  const lockName = `presence-leader-test-${channelSeq}`;
  const tab = (token = 'tok', extra = {}) => {
    const target = new EventTarget();
    const client = new PresenceClient({
      token,
      websocketUrl: 'ws://host/local',
      heartbeatUrl: '/v1/heartbeats',
      tabsChannel,
      lockName,
      backoff: { baseMs: 1, maxMs: 4 },
      ...extra,
      env: { WebSocket: FakeSocket, fetch, locks, storage, BroadcastChannel, sendBeacon, target },
    });
    return { client, target };
  };
  return { storage, calls, beacons, tab };
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

test('a lone tab leads: heartbeats at once with a stored session id and the bearer token', async () => {
  const browser = fakeBrowser();
  const { client } = browser.tab('tok-1');
  const events = record(client, 'leader', 'heartbeat');
  client.start();
  await waitFor(() => events.some((e) => e.type === 'heartbeat'), 'first heartbeat');
  assert.equal(client.leader, true);
  assert.deepEqual(events[0], { type: 'leader', detail: { leader: true } });
  assert.deepEqual(events.find((e) => e.type === 'heartbeat').detail, { interval_s: 30 });
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
  const browser = fakeBrowser();
  browser.storage.setItem('presence.session', 'kept_Session-1');
  const { client } = browser.tab();
  client.start();
  await waitFor(() => browser.calls.length === 1, 'heartbeat');
  assert.equal(browser.calls[0].body.session_id, 'kept_Session-1');
  await client.stop();
});

test('heartbeat failures honour Retry-After on 503 and back off otherwise', async () => {
  let status = 503;
  const browser = fakeBrowser({
    respond: () =>
      new Response(JSON.stringify({ error: { code: 'unavailable', message: 'queue down' } }), {
        status,
        headers: status === 503 ? { 'Retry-After': '7' } : {},
      }),
  });
  const { client } = browser.tab();
  const errors = record(client, 'error');
  client.start();
  await waitFor(() => errors.length === 1, 'error event');
  assert.deepEqual(errors[0].detail, {
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
  await waitFor(() => more.length >= 2, 'two quick retries with backoff (max 4 ms)');
  assert.ok(more.every((e) => e.detail.status === 400 && e.detail.retry_in_ms < 4));
  await other.stop();
});

test('a lone tab says "ended" with sendBeacon and ?token= on pagehide', async () => {
  const browser = fakeBrowser();
  const { client, target } = browser.tab('a b/c');
  client.start();
  await waitFor(() => browser.calls.length === 1, 'heartbeat');
  const sessionId = browser.calls[0].body.session_id;
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
  assert.equal(browser.calls.length, 1, 'no fetch besides the first heartbeat');
});

test('with two tabs, closing the leader hands the same session over; the last one ends it', async () => {
  const browser = fakeBrowser();
  const a = browser.tab('tok-a');
  const b = browser.tab('tok-b');
  a.client.start();
  await waitFor(() => a.client.leader, 'a leads');
  b.client.start();
  await waitFor(() => a.client.tabCount === 2 && b.client.tabCount === 2, 'tabs know each other');
  assert.equal(b.client.leader, false);
  await waitFor(() => browser.calls.length === 1, 'a heartbeats');
  const sessionId = browser.calls[0].body.session_id;

  pageHide(a.target);
  assert.equal(browser.beacons.length, 0, 'b is alive: no "ended"');
  await waitFor(() => b.client.leader, 'b takes over');
  await waitFor(() => browser.calls.length === 2, 'b heartbeats at once');
  assert.equal(browser.calls[1].auth, 'Bearer tok-b');
  assert.deepEqual(browser.calls[1].body, { session_id: sessionId, state: 'active' });
  await waitFor(() => b.client.tabCount === 1, 'b heard the bye');

  await b.client.stop(); // sign-out in the last tab
  const ended = browser.calls[2];
  assert.equal(ended.auth, 'Bearer tok-b');
  assert.equal(ended.init.keepalive, true);
  assert.deepEqual(ended.body, { session_id: sessionId, state: 'ended' });
  assert.equal(browser.storage.getItem('presence.session'), null, 'the next sign-in gets a fresh session');
  await a.client.stop();
});

test('a follower tab that goes away leaves the leader alone', async () => {
  const browser = fakeBrowser();
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
  const browser = fakeBrowser({ locks: null });
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
  await follower.client.stop();
});

// ------------------------------------------------------------------ PresenceClient: WebSocket

async function connected(extra) {
  const browser = fakeBrowser();
  const { client, target } = browser.tab('tok', extra);
  const before = FakeSocket.instances.length;
  client.start();
  const socket = FakeSocket.instances[before];
  assert.ok(socket, 'a socket was created');
  return { browser, client, target, socket };
}

test('the socket carries the token (no session_id) and asks for a snapshot on open', async () => {
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
  await client.stop();
  assert.equal(socket.closedByClient, true);
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
