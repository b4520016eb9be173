/**
 * presence-client.js — a small, dependency-free browser client for Presence.
 *
 * Two channels reach the server:
 *
 * - **HTTP heartbeats** (`POST /v1/heartbeats`) make this browser count as "online" at the
 *   user's facility. There is ONE heartbeat stream per browser, not per tab: the tabs elect a
 *   leader (Web Locks, or a localStorage lease where Web Locks is missing) and only the leader
 *   heartbeats, with a browser-wide session id kept in `localStorage`. When the last tab goes
 *   away it says `ended` with `navigator.sendBeacon`, so the facility flips offline at once
 *   instead of after the session TTL; when other tabs remain, one of them takes over.
 * - **A WebSocket per tab** receives `facility.status` events and chat traffic. It is opened
 *   WITHOUT `session_id` (presence comes from the heartbeats), reconnects with full-jitter
 *   exponential backoff, and on every open asks for a `snapshot` and re-joins the chat groups
 *   this tab asked to join.
 *
 * Everything is exported so it can be unit-tested under Node (`node --test web/test/`): the
 * browser APIs the client touches can be replaced through the `env` constructor option.
 *
 * @module presence-client
 */

/** Heartbeat interval used until the server tells another one, in seconds. */
export const DEFAULT_INTERVAL_S = 30;

const WS_OPEN = 1; // WebSocket.OPEN, spelled out so that test doubles need not define it
const STABLE_AFTER_MS = 10_000; // a connection open this long resets the backoff
const PING_EVERY_MS = 4 * 60_000; // keeps a quiet socket under the 10 min idle timeout
const TAB_HERE_EVERY_MS = 20_000; // each tab says "here" this often...
const TAB_STALE_AFTER_MS = 150_000; // ...and is presumed gone after this much silence
const LEASE_MS = 5_000; // fallback leader lease (no Web Locks): validity...
const LEASE_RENEW_MS = 1_500; // ...and renewal period
const LEASE_SETTLE_MS = 50; // wait before trusting a lease we just wrote
const STOP_WAIT_MS = 3_000; // stop() waits at most this long for the network

const SESSION_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const CHAT_GROUP_RE = /^chat:[A-Za-z0-9_.-]{1,64}$/;

/**
 * A facility's status as the server reports it (snapshot entries and `facility.status`).
 * @typedef {object} FacilityStatus
 * @property {string} facility_id
 * @property {string} region
 * @property {"online"|"offline"} status
 * @property {number} since_ms   when the facility entered this status (server clock, ms)
 * @property {number} version    grows by one per flip
 * @property {number} online_sessions
 */

/**
 * An error reply from the server, a timeout, or a request that could not be sent.
 * `code` is the server's code (`not_member`, `bad_request`, ...) or one of the client's own:
 * `not_connected`, `closed` (the socket closed before the reply), `timeout`, `bad_group`,
 * `send_failed`.
 */
export class PresenceError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string} [action] the action that failed
   */
  constructor(code, message, action) {
    super(message);
    this.name = 'PresenceError';
    /** @type {string} */
    this.code = code;
    /** @type {string|undefined} */
    this.action = action;
  }
}

/**
 * Facility statuses keyed by facility id, ordered by `version`.
 *
 * The push path delivers at least once and out of order, so an event is applied only when
 * its version is newer than the one held for that facility; duplicates and late arrivals
 * change nothing. Pure: no I/O, no timers.
 */
export class FacilityBoard {
  /** @type {Map<string, FacilityStatus>} */
  #byId = new Map();

  /**
   * Applies one status if it is newer than what is held.
   * @param {FacilityStatus} status
   * @returns {boolean} true when applied; false for an older, duplicate or malformed status
   */
  apply(status) {
    if (!status || typeof status !== 'object') return false;
    const { facility_id: id, version } = status;
    if (typeof id !== 'string' || id === '') return false;
    if (typeof version !== 'number' || !Number.isFinite(version)) return false;
    const held = this.#byId.get(id);
    if (held && !(version > held.version)) return false;
    this.#byId.set(id, {
      facility_id: id,
      region: status.region,
      status: status.status === 'online' ? 'online' : 'offline',
      since_ms: status.since_ms,
      version,
      online_sessions: typeof status.online_sessions === 'number' ? status.online_sessions : 0,
    });
    return true;
  }

  /**
   * Applies every entry of a snapshot (each one version-checked like a live event).
   * @param {FacilityStatus[]} list
   * @returns {FacilityStatus[]} the statuses that were applied (copies, as now held)
   */
  applySnapshot(list) {
    const applied = [];
    if (!Array.isArray(list)) return applied;
    for (const status of list) {
      if (this.apply(status)) applied.push(this.get(status.facility_id));
    }
    return applied;
  }

  /**
   * @param {string} id facility id
   * @returns {FacilityStatus|undefined} a copy of the held status
   */
  get(id) {
    const held = this.#byId.get(id);
    return held ? { ...held } : undefined;
  }

  /**
   * Replaces what is held with a snapshot taken after the server asked clients to
   * `resync` (Redis lost its data): versions may have started again, so entries are taken
   * whatever their version, and a facility held but absent from the snapshot is offline
   * (with version 0, so that any later event for it applies).
   * @param {FacilityStatus[]} list
   * @returns {FacilityStatus[]} the statuses that changed (copies, as now held)
   */
  replace(list) {
    const changed = [];
    if (!Array.isArray(list)) return changed;
    const fresh = new Map();
    for (const status of list) {
      if (status && typeof status === 'object' && typeof status.facility_id === 'string') {
        fresh.set(status.facility_id, status);
      }
    }
    for (const [id, held] of [...this.#byId]) {
      if (fresh.has(id)) continue;
      this.#byId.delete(id);
      this.apply({ ...held, status: 'offline', version: 0, online_sessions: 0, since_ms: Date.now() });
      if (held.status !== 'offline') changed.push(this.get(id));
    }
    for (const [id, status] of fresh) {
      const held = this.#byId.get(id);
      this.#byId.delete(id);
      if (!this.apply(status)) {
        if (held) this.#byId.set(id, held);
        continue;
      }
      const now = this.#byId.get(id);
      if (!held || held.status !== now.status || held.version !== now.version) changed.push(this.get(id));
    }
    return changed;
  }

  /** @returns {FacilityStatus[]} copies of every held status */
  all() {
    return [...this.#byId.values()].map((s) => ({ ...s }));
  }

  /** @returns {number} how many facilities are held */
  get size() {
    return this.#byId.size;
  }

  /** Forgets everything. */
  clear() {
    this.#byId.clear();
  }
}

/**
 * Full-jitter exponential backoff: a random delay in `[0, min(maxMs, baseMs * 2^attempt))`.
 * Spreading retries uniformly keeps many clients that lost the server at once (a deploy, the
 * 2-hour socket limit) from coming back in lockstep.
 *
 * @param {number} attempt 0 for the first retry, then 1, 2, ...
 * @param {{baseMs?: number, maxMs?: number, random?: () => number}} [options]
 * @returns {number} whole milliseconds
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30_000, random = Math.random } = {}) {
  const n = Number.isFinite(attempt) && attempt > 0 ? Math.floor(attempt) : 0;
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(n, 52));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.min(Math.floor(r * ceiling), Math.max(ceiling - 1, 0));
}

/**
 * Parses an HTTP `Retry-After` header: delta-seconds or an HTTP date.
 * @param {string|null|undefined} value
 * @param {number} [nowMs]
 * @returns {number|null} milliseconds to wait, or null when absent or malformed
 */
export function parseRetryAfter(value, nowMs = Date.now()) {
  if (value == null) return null;
  const text = String(value).trim();
  if (text === '') return null;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}

/**
 * A new session id: a UUID without dashes (32 hex characters), within `[A-Za-z0-9_-]{1,64}`.
 * @param {Crypto} [cryptoObj]
 * @returns {string}
 */
export function newSessionId(cryptoObj = globalThis.crypto) {
  if (cryptoObj && typeof cryptoObj.randomUUID === 'function') {
    return cryptoObj.randomUUID().replace(/-/g, '').slice(0, 64);
  }
  if (cryptoObj && typeof cryptoObj.getRandomValues === 'function') {
    const bytes = cryptoObj.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  return (Date.now().toString(36) + Math.random().toString(36).slice(2)).slice(0, 64);
}

/**
 * Whether a group name is a chat group a client may join and leave.
 * @param {string} group
 * @returns {boolean}
 */
export function isChatGroup(group) {
  return typeof group === 'string' && CHAT_GROUP_RE.test(group);
}

/**
 * Appends `key=value` to a URL that may already have a query.
 * @param {string} url
 * @param {string} key
 * @param {string} value
 * @returns {string}
 */
export function withQuery(url, key, value) {
  const sep = url.includes('?') ? '&' : '?';
  return `${url}${sep}${encodeURIComponent(key)}=${encodeURIComponent(value)}`;
}

/** localStorage, or null where it is missing or throws (disabled storage, opaque origins). */
function safeLocalStorage() {
  try {
    const storage = globalThis.localStorage;
    if (!storage) return null;
    storage.getItem('presence.probe');
    return storage;
  } catch {
    return null;
  }
}

/** Resolves with `promise`'s outcome or after `ms`, whichever comes first; never rejects. */
function settleWithin(promise, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    Promise.resolve(promise)
      .catch(() => undefined)
      .then((value) => {
        clearTimeout(timer);
        resolve(value);
      });
  });
}

/**
 * The real-time client: heartbeats (when this tab leads), a WebSocket, and the facility board.
 *
 * Events (all `CustomEvent`s, payload in `event.detail`):
 * - `status`        a `FacilityStatus` that was applied (newer than the one held)
 * - `snapshot`      `{region, facilities, applied, resync}` — the raw list and the entries
 *                   applied (with `resync`: every entry that changed, facilities no longer
 *                   known included, now offline); snapshot entries do not fire `status`, read
 *                   them from `applied`/`board`
 * - `message`       `{group, from, data}`
 * - `joined`/`left` `{group, ref?}` — for this user, whichever device asked
 * - `member.joined`/`member.left` `{group, user}` — other users
 * - `connection`    `{state: "connecting"|"open"|"closed", attempt, code?, reason?, retry_in_ms?}`
 * - `leader`        `{leader: boolean}` — whether this tab sends the heartbeats
 * - `heartbeat`     `{interval_s}` — after each accepted HTTP heartbeat
 * - `error`         `{source: "heartbeat"|"server"|"websocket"|"leader"|"token", code?, message,
 *                    status?, action?, retry_in_ms?}` — failures no promise reports
 *
 * @example
 * const client = new PresenceClient({ token, websocketUrl, heartbeatUrl: '/v1/heartbeats' });
 * client.addEventListener('status', (e) => render(e.detail));
 * client.start();
 * await client.join('chat:trondelag-lobby');
 * await client.send('chat:trondelag-lobby', { text: 'hello' });
 * await client.stop();
 */
export class PresenceClient extends EventTarget {
  /** Facility statuses of the user's region, version-ordered. */
  board = new FacilityBoard();

  #token;
  #websocketUrl;
  #heartbeatUrl;
  #sessionKey;
  #lockName;
  #tabsChannelName;
  #getToken;
  #backoff;
  #requestTimeoutMs;
  #env;

  #running = false;
  #suspended = false; // shut down by pagehide, may come back from the back/forward cache
  #tabId = '';

  // WebSocket
  #ws = null;
  #state = 'closed';
  #attempt = 0;
  #reconnectTimer = null;
  #stableTimer = null;
  #pingTimer = null;
  /** @type {Map<string, {resolve: Function, reject: Function, timer: any, action: string, group?: string}>} */
  #pending = new Map();
  #nextRef = 1;
  /** Chat groups this tab wants to be in: re-joined on every open. */
  #groups = new Set();
  /** Leaves asked for while disconnected: sent on the next open. */
  #unsentLeaves = new Set();

  // Leadership and heartbeats
  #leader = false;
  #lockAbort = null;
  #releaseLock = null;
  #leaseTimer = null;
  #hbTimer = null;
  #hbGen = 0; // bumped to orphan a heartbeat loop (leadership lost, stop, pagehide)
  #hbFailures = 0;
  #hbInFlight = null;
  #intervalS = DEFAULT_INTERVAL_S;
  #memorySessionId = null; // used when localStorage is unavailable

  // Other tabs of this browser
  #channel = null;
  /** @type {Map<string, number>} tab id -> last heard (ms) */
  #tabs = new Map();
  #hereTimer = null;

  /**
   * @param {object} options
   * @param {string} options.token         the JWT (user, facility and region are its claims)
   * @param {string} options.websocketUrl  e.g. `ws://127.0.0.1:3001/local`; `?token=` is added
   * @param {string} options.heartbeatUrl  e.g. `/v1/heartbeats`
   * @param {string} [options.sessionKey]  localStorage key of the browser-wide session id
   * @param {string} [options.lockName]    Web Locks name of the heartbeat leader
   * @param {string} [options.tabsChannel] BroadcastChannel name used to count live tabs
   * @param {() => Promise<string>} [options.getToken] fetches a fresh token; called after a
   *        heartbeat answered 401 and before reconnecting a socket that never opened
   * @param {{baseMs?: number, maxMs?: number, random?: () => number}} [options.backoff]
   * @param {number} [options.requestTimeoutMs] how long a request waits for its reply
   * @param {object} [options.env] replacements for browser APIs (tests): `WebSocket`, `fetch`,
   *        `locks`, `storage`, `BroadcastChannel`, `sendBeacon`, `target` (gets the
   *        `pagehide`/`pageshow`/`online` listeners)
   */
  constructor({
    token,
    websocketUrl,
    heartbeatUrl,
    sessionKey = 'presence.session',
    lockName = 'presence-leader',
    tabsChannel = 'presence-tabs',
    getToken = null,
    backoff = {},
    requestTimeoutMs = 10_000,
    env = {},
  } = {}) {
    super();
    if (!token) throw new TypeError('PresenceClient: token is required');
    if (!websocketUrl) throw new TypeError('PresenceClient: websocketUrl is required');
    if (!heartbeatUrl) throw new TypeError('PresenceClient: heartbeatUrl is required');
    this.#token = token;
    this.#websocketUrl = websocketUrl;
    this.#heartbeatUrl = heartbeatUrl;
    this.#sessionKey = sessionKey;
    this.#lockName = lockName;
    this.#tabsChannelName = tabsChannel;
    this.#getToken = typeof getToken === 'function' ? getToken : null;
    this.#backoff = backoff;
    this.#requestTimeoutMs = requestTimeoutMs;

    const g = globalThis;
    const nav = g.navigator;
    const has = (key) => Object.prototype.hasOwnProperty.call(env, key);
    this.#env = {
      WebSocket: has('WebSocket') ? env.WebSocket : g.WebSocket,
      fetch: has('fetch') ? env.fetch : typeof g.fetch === 'function' ? g.fetch.bind(g) : null,
      locks: has('locks') ? env.locks : nav?.locks ?? null,
      storage: has('storage') ? env.storage : safeLocalStorage(),
      BroadcastChannel: has('BroadcastChannel') ? env.BroadcastChannel : g.BroadcastChannel ?? null,
      sendBeacon: has('sendBeacon')
        ? env.sendBeacon
        : typeof nav?.sendBeacon === 'function'
          ? (url, data) => nav.sendBeacon(url, data)
          : null,
      target: has('target')
        ? env.target
        : typeof g.window === 'object' && typeof g.addEventListener === 'function'
          ? g
          : null,
    };
  }

  // ---------------------------------------------------------------- public state

  /** @returns {boolean} whether this tab currently sends the heartbeats */
  get leader() {
    return this.#leader;
  }

  /** @returns {"connecting"|"open"|"closed"} the WebSocket's state */
  get state() {
    return this.#state;
  }

  /** @returns {boolean} between start() and stop() */
  get running() {
    return this.#running;
  }

  /** @returns {string|null} the browser-wide session id, once one exists */
  get sessionId() {
    return this.#readSessionId();
  }

  /** @returns {number} the heartbeat interval last told by the server, in seconds */
  get intervalS() {
    return this.#intervalS;
  }

  /** @returns {string[]} the chat groups this tab is in (or asked to join) */
  get groups() {
    return [...this.#groups];
  }

  /** @returns {number} live tabs of this browser that run a client, this one included */
  get tabCount() {
    return this.#otherTabsAlive() + (this.#running && !this.#suspended ? 1 : 0);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Starts: announces this tab, competes for heartbeat leadership, opens the WebSocket.
   * @returns {this}
   */
  start() {
    if (this.#running) return this;
    this.#running = true;
    this.#suspended = false;
    const target = this.#env.target;
    if (target) {
      target.addEventListener('pagehide', this.#onPageHide);
      target.addEventListener('pageshow', this.#onPageShow);
      target.addEventListener('online', this.#onOnline);
    }
    this.#resume();
    return this;
  }

  /**
   * Stops for good (sign-out). When this tab leads and no other tab of the browser is alive,
   * says `ended` (a `fetch` with the Authorization header) so the facility goes offline now,
   * and forgets the session id, so that the next sign-in — maybe another user — starts a
   * fresh session. Otherwise another tab takes over the heartbeats.
   * Resolves once `ended` was answered (or after 3 s).
   * @returns {Promise<void>}
   */
  async stop() {
    if (!this.#running) return;
    this.#running = false;
    const target = this.#env.target;
    if (target) {
      target.removeEventListener('pagehide', this.#onPageHide);
      target.removeEventListener('pageshow', this.#onPageShow);
      target.removeEventListener('online', this.#onOnline);
    }
    if (this.#suspended) {
      this.#suspended = false; // pagehide already shut everything down
      return;
    }
    // Let a heartbeat in flight land first, so that "ended" is the session's last word.
    if (this.#hbInFlight) await settleWithin(this.#hbInFlight, STOP_WAIT_MS);
    const ended = this.#shutdown(false);
    if (ended) {
      await settleWithin(ended, STOP_WAIT_MS);
      this.#forgetSessionId();
    }
  }

  // ---------------------------------------------------------------- requests

  /**
   * Joins a chat group (`chat:NAME`). The group is remembered and re-joined on every
   * reconnect until left. Resolves with the `joined` reply.
   * @param {string} group
   * @returns {Promise<object>}
   */
  join(group) {
    if (!isChatGroup(group)) {
      return Promise.reject(new PresenceError('bad_group', `not a chat group: ${group}`, 'join'));
    }
    this.#groups.add(group);
    this.#unsentLeaves.delete(group);
    return this.#request({ action: 'join', group });
  }

  /**
   * Leaves a chat group — on all of this user's devices. Asked while disconnected, the leave
   * is sent on the next open (and this promise rejects with `not_connected`).
   * Resolves with the `left` reply.
   * @param {string} group
   * @returns {Promise<object>}
   */
  leave(group) {
    if (!isChatGroup(group)) {
      return Promise.reject(new PresenceError('bad_group', `not a chat group: ${group}`, 'leave'));
    }
    this.#groups.delete(group);
    if (!this.#isOpen()) this.#unsentLeaves.add(group);
    return this.#request({ action: 'leave', group });
  }

  /**
   * Sends any JSON to a group's members. With `others`, not back to this socket.
   * Resolves with the `sent` reply (`delivered` = sockets reached).
   * @param {string} group
   * @param {*} data
   * @param {{others?: boolean}} [options]
   * @returns {Promise<object>}
   */
  send(group, data, { others = false } = {}) {
    return this.#request({ action: 'send', group, data: data === undefined ? null : data, others: Boolean(others) });
  }

  /**
   * Lists a group's members. Resolves with the `members` reply (`users`: user ids).
   * @param {string} group
   * @returns {Promise<object>}
   */
  members(group) {
    return this.#request({ action: 'members', group });
  }

  /**
   * Asks for the region's snapshot again (done automatically on every open).
   * Resolves with the `snapshot` reply; it is applied to the board as well.
   * @returns {Promise<object>}
   */
  snapshot() {
    return this.#request({ action: 'snapshot' });
  }

  // ---------------------------------------------------------------- internals: lifecycle

  #resume() {
    this.#tabId = newSessionId();
    this.#attempt = 0;
    this.#openTabs();
    this.#acquireLeadership();
    this.#connect();
  }

  /**
   * Tears down this tab's part. Returns the `ended` request when one was sent.
   * @param {boolean} beacon use sendBeacon (page going away) rather than fetch
   */
  #shutdown(beacon) {
    const alone = this.#otherTabsAlive() === 0;
    const ended = this.#leader && alone ? this.#sendEnded(beacon) : null;
    this.#releaseLeadership(); // before "bye", so the lease is free when others hear it
    this.#closeTabs();
    this.#closeSocket();
    return ended;
  }

  #onPageHide = () => {
    if (!this.#running || this.#suspended) return;
    this.#suspended = true;
    this.#shutdown(true);
  };

  #onPageShow = (event) => {
    // Back from the back/forward cache: start over (a new heartbeat revives the session).
    if (!this.#running || !this.#suspended || !event?.persisted) return;
    this.#suspended = false;
    this.#resume();
  };

  #onOnline = () => {
    // The network is back: skip the rest of the backoff.
    if (this.#running && !this.#suspended && !this.#ws && this.#reconnectTimer) this.#connect();
  };

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ---------------------------------------------------------------- internals: tabs

  #openTabs() {
    this.#tabs.clear();
    const BC = this.#env.BroadcastChannel;
    if (typeof BC !== 'function') return;
    try {
      this.#channel = new BC(this.#tabsChannelName);
    } catch {
      this.#channel = null;
      return;
    }
    this.#channel.onmessage = (event) => this.#onTabMessage(event.data);
    this.#post('hello');
    this.#hereTimer = setInterval(() => this.#post('here'), TAB_HERE_EVERY_MS);
  }

  #closeTabs() {
    clearInterval(this.#hereTimer);
    this.#hereTimer = null;
    if (this.#channel) {
      this.#post('bye');
      try {
        this.#channel.close();
      } catch {
        /* already closed */
      }
      this.#channel = null;
    }
    this.#tabs.clear();
  }

  #post(type) {
    try {
      this.#channel?.postMessage({ type, tab: this.#tabId });
    } catch {
      /* closed channel */
    }
  }

  #onTabMessage(message) {
    if (!message || typeof message !== 'object') return;
    const { type, tab } = message;
    if (typeof tab !== 'string' || tab === this.#tabId) return;
    if (type === 'hello') {
      this.#tabs.set(tab, Date.now());
      this.#post('here'); // so the newcomer learns about this tab
    } else if (type === 'here') {
      this.#tabs.set(tab, Date.now());
    } else if (type === 'bye') {
      this.#tabs.delete(tab);
      if (this.#leaseTimer) this.#leaseTick(); // maybe the leader left: try the lease now
    }
  }

  /** Other live tabs; a tab silent for too long (crashed, killed) no longer counts. */
  #otherTabsAlive() {
    const now = Date.now();
    for (const [tab, seen] of this.#tabs) {
      if (now - seen > TAB_STALE_AFTER_MS) this.#tabs.delete(tab);
    }
    return this.#tabs.size;
  }

  // ---------------------------------------------------------------- internals: leadership

  #acquireLeadership() {
    const locks = this.#env.locks;
    if (!locks || typeof locks.request !== 'function') {
      this.#startLease();
      return;
    }
    const abort = new AbortController();
    this.#lockAbort = abort;
    let request;
    try {
      // Held for as long as the promise returned by the callback is pending: the tab's life,
      // or until #releaseLeadership. The browser frees it if the tab dies.
      request = locks.request(this.#lockName, { signal: abort.signal }, () => {
        if (abort.signal.aborted || this.#lockAbort !== abort) return undefined;
        return new Promise((release) => {
          this.#releaseLock = release;
          this.#setLeader(true);
        });
      });
    } catch (error) {
      request = Promise.reject(error);
    }
    Promise.resolve(request).catch((error) => {
      if (error?.name === 'AbortError' || this.#lockAbort !== abort) return;
      // Web Locks refused (e.g. an opaque origin): fall back to the lease.
      this.#emit('error', { source: 'leader', message: String(error?.message ?? error) });
      this.#lockAbort = null;
      if (this.#running && !this.#suspended) this.#startLease();
    });
  }

  #releaseLeadership() {
    if (this.#lockAbort) {
      this.#lockAbort.abort(); // drops a request still waiting for the lock
      this.#lockAbort = null;
    }
    if (this.#releaseLock) {
      this.#releaseLock(); // frees a held lock: the next waiting tab becomes leader
      this.#releaseLock = null;
    }
    this.#stopLease();
    this.#setLeader(false);
  }

  // Fallback without Web Locks: a lease `{tab, until}` in localStorage, renewed by its holder
  // and taken by anyone once it expires (or at once when its holder says "bye").

  #leaseKey() {
    return `${this.#lockName}.lease`;
  }

  #readLease() {
    try {
      const lease = JSON.parse(this.#env.storage.getItem(this.#leaseKey()) ?? 'null');
      return lease && typeof lease.tab === 'string' && typeof lease.until === 'number' ? lease : null;
    } catch {
      return null;
    }
  }

  #startLease() {
    if (!this.#env.storage) {
      this.#setLeader(true); // nothing to coordinate with: act as the only tab
      return;
    }
    this.#leaseTimer = setInterval(() => this.#leaseTick(), LEASE_RENEW_MS);
    this.#leaseTick();
  }

  #leaseTick() {
    if (!this.#running || this.#suspended || !this.#leaseTimer) return;
    const now = Date.now();
    const lease = this.#readLease();
    if (lease && lease.until >= now && lease.tab !== this.#tabId) {
      this.#setLeader(false);
      return;
    }
    try {
      this.#env.storage.setItem(this.#leaseKey(), JSON.stringify({ tab: this.#tabId, until: now + LEASE_MS }));
    } catch {
      this.#setLeader(true); // storage full or gone: better two heartbeat streams than none
      return;
    }
    if (this.#leader) return; // renewal of a lease already held
    // Two tabs may have written at once: the last write wins, so look again shortly.
    setTimeout(() => {
      if (!this.#running || this.#suspended || !this.#leaseTimer) return;
      this.#setLeader(this.#readLease()?.tab === this.#tabId);
    }, LEASE_SETTLE_MS);
  }

  #stopLease() {
    if (!this.#leaseTimer) return;
    clearInterval(this.#leaseTimer);
    this.#leaseTimer = null;
    if (this.#readLease()?.tab === this.#tabId) {
      try {
        this.#env.storage.removeItem(this.#leaseKey());
      } catch {
        /* ignore */
      }
    }
  }

  #setLeader(leader) {
    if (this.#leader === leader) return;
    this.#leader = leader;
    this.#hbGen += 1;
    clearTimeout(this.#hbTimer);
    this.#hbTimer = null;
    this.#hbFailures = 0;
    this.#emit('leader', { leader });
    if (leader) this.#beat(); // the first heartbeat goes out at once
  }

  // ---------------------------------------------------------------- internals: heartbeats

  #readSessionId() {
    let stored = null;
    try {
      stored = this.#env.storage?.getItem(this.#sessionKey) ?? null;
    } catch {
      stored = null;
    }
    if (stored && SESSION_ID_RE.test(stored)) {
      this.#memorySessionId = stored;
      return stored;
    }
    return this.#env.storage ? null : this.#memorySessionId;
  }

  #ensureSessionId() {
    const held = this.#readSessionId();
    if (held) return held;
    const id = newSessionId();
    this.#memorySessionId = id;
    try {
      this.#env.storage?.setItem(this.#sessionKey, id);
    } catch {
      /* keep it in memory */
    }
    return id;
  }

  #forgetSessionId() {
    this.#memorySessionId = null;
    try {
      this.#env.storage?.removeItem(this.#sessionKey);
    } catch {
      /* ignore */
    }
  }

  async #beat() {
    const gen = this.#hbGen;
    const live = () => this.#running && !this.#suspended && this.#leader && gen === this.#hbGen;
    if (!live()) return;
    this.#hbTimer = null;
    const run = this.#postHeartbeat(this.#ensureSessionId());
    this.#hbInFlight = run;
    const result = await run;
    if (this.#hbInFlight === run) this.#hbInFlight = null;
    if (!live()) return;

    let delay;
    if (result.ok) {
      const interval = Number(result.body?.interval_s);
      this.#intervalS = Number.isFinite(interval) && interval >= 1 ? interval : DEFAULT_INTERVAL_S;
      this.#hbFailures = 0;
      delay = this.#intervalS * 1000;
      this.#emit('heartbeat', { interval_s: this.#intervalS });
    } else {
      const throttled = result.status === 429 || result.status === 503;
      delay =
        throttled && result.retryAfterMs != null
          ? result.retryAfterMs
          : backoffDelay(this.#hbFailures, this.#backoff);
      this.#hbFailures += 1;
      const error = result.body?.error;
      this.#emit('error', {
        source: 'heartbeat',
        status: result.status,
        code: error?.code ?? (result.status ? `http_${result.status}` : 'network'),
        message: error?.message ?? String(result.error?.message ?? result.error ?? 'heartbeat failed'),
        retry_in_ms: delay,
      });
      if (result.status === 401 && this.#getToken) {
        await this.#refreshToken();
        if (!live()) return;
      }
    }
    this.#hbTimer = setTimeout(() => this.#beat(), delay);
  }

  /** One `active` heartbeat; never rejects. */
  async #postHeartbeat(sessionId) {
    const fetchImpl = this.#env.fetch;
    if (!fetchImpl) return { ok: false, status: 0, body: null, retryAfterMs: null, error: 'fetch is unavailable' };
    try {
      const response = await fetchImpl(this.#heartbeatUrl, {
        method: 'POST',
        headers: { Authorization: `Bearer ${this.#token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ session_id: sessionId, state: 'active' }),
        cache: 'no-store',
      });
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      return {
        ok: response.ok,
        status: response.status,
        body,
        retryAfterMs: parseRetryAfter(response.headers?.get?.('Retry-After')),
      };
    } catch (error) {
      return { ok: false, status: 0, body: null, retryAfterMs: null, error };
    }
  }

  /**
   * Says `ended` for the browser's session. On page exit with `sendBeacon`, which survives
   * the page but cannot set headers: hence the token in the query, and a text/plain body
   * (no CORS preflight). Otherwise, or if the beacon was refused, a keepalive `fetch`.
   * @returns {Promise<boolean>|null}
   */
  #sendEnded(beacon) {
    const sessionId = this.#readSessionId();
    if (!sessionId) return null;
    const json = JSON.stringify({ session_id: sessionId, state: 'ended' });
    if (beacon && this.#env.sendBeacon) {
      try {
        const url = withQuery(this.#heartbeatUrl, 'token', this.#token);
        if (this.#env.sendBeacon(url, new Blob([json], { type: 'text/plain' }))) return Promise.resolve(true);
      } catch {
        /* fall through to fetch */
      }
    }
    if (!this.#env.fetch) return null;
    try {
      return Promise.resolve(
        this.#env.fetch(this.#heartbeatUrl, {
          method: 'POST',
          keepalive: true,
          headers: { Authorization: `Bearer ${this.#token}`, 'Content-Type': 'application/json' },
          body: json,
        }),
      ).then(
        (response) => response.ok,
        () => false,
      );
    } catch {
      return null;
    }
  }

  async #refreshToken() {
    try {
      const token = await this.#getToken();
      if (typeof token === 'string' && token) this.#token = token;
    } catch (error) {
      this.#emit('error', { source: 'token', message: String(error?.message ?? error) });
    }
  }

  // ---------------------------------------------------------------- internals: WebSocket

  #isOpen() {
    return Boolean(this.#ws) && this.#ws.readyState === WS_OPEN;
  }

  #setState(state, extra = {}) {
    if (this.#state === state && Object.keys(extra).length === 0) return;
    this.#state = state;
    this.#emit('connection', { state, attempt: this.#attempt, ...extra });
  }

  #connect() {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    if (!this.#running || this.#suspended || this.#ws) return;
    const WS = this.#env.WebSocket;
    this.#setState('connecting');
    let ws;
    try {
      ws = new WS(withQuery(this.#websocketUrl, 'token', this.#token));
    } catch (error) {
      this.#emit('error', { source: 'websocket', message: String(error?.message ?? error) });
      this.#scheduleReconnect(false, null);
      return;
    }
    this.#ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      opened = true;
      this.#stableTimer = setTimeout(() => {
        this.#attempt = 0;
      }, STABLE_AFTER_MS);
      this.#pingTimer = setInterval(() => this.#sendRaw({ action: 'ping' }), PING_EVERY_MS);
      this.#setState('open');
      this.#onOpen();
    };
    ws.onmessage = (event) => {
      if (this.#ws === ws) this.#onFrame(event.data);
    };
    ws.onerror = () => {
      /* a close event always follows; it is handled there */
    };
    ws.onclose = (event) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#clearSocketTimers();
      this.#rejectPending('closed', 'the connection closed before the reply');
      this.#scheduleReconnect(opened, event);
    };
  }

  #scheduleReconnect(opened, event) {
    if (!this.#running || this.#suspended) {
      this.#setState('closed');
      return;
    }
    const delay = backoffDelay(this.#attempt, this.#backoff);
    this.#attempt += 1;
    this.#setState('closed', { code: event?.code, reason: event?.reason, retry_in_ms: delay });
    this.#reconnectTimer = setTimeout(async () => {
      // A socket refused before opening may carry an expired token: get a fresh one.
      if (!opened && this.#getToken) {
        this.#reconnectTimer = null;
        await this.#refreshToken();
      }
      this.#connect();
    }, delay);
  }

  #clearSocketTimers() {
    clearTimeout(this.#stableTimer);
    clearInterval(this.#pingTimer);
    this.#stableTimer = null;
    this.#pingTimer = null;
  }

  #closeSocket() {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#clearSocketTimers();
    const ws = this.#ws;
    this.#ws = null; // its close event is now ignored
    if (ws) {
      try {
        ws.close(1000, 'client stopped');
      } catch {
        /* already closing */
      }
    }
    this.#rejectPending('closed', 'the client stopped');
    this.#setState('closed');
  }

  /** On every open: the snapshot, then leaves asked offline, then every wanted join. */
  #onOpen() {
    const report = (error) => {
      if (error?.code !== 'closed' && error?.code !== 'not_connected') {
        this.#emit('error', { source: 'server', code: error?.code, message: error?.message, action: error?.action });
      }
    };
    this.#request({ action: 'snapshot' }).catch(report);
    for (const group of this.#unsentLeaves) this.#request({ action: 'leave', group }).catch(report);
    this.#unsentLeaves.clear();
    for (const group of this.#groups) this.#request({ action: 'join', group }).catch(report);
  }

  #sendRaw(body) {
    if (!this.#isOpen()) return;
    try {
      this.#ws.send(JSON.stringify(body));
    } catch {
      /* the close event will follow */
    }
  }

  /** Sends an action with a fresh `ref`; settles with the reply carrying that `ref`. */
  #request(body, { resync = false } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.#isOpen()) {
        reject(new PresenceError('not_connected', 'not connected', body.action));
        return;
      }
      const ref = `r${this.#nextRef++}`;
      const timer = setTimeout(() => {
        if (this.#pending.delete(ref)) {
          reject(new PresenceError('timeout', `no reply to ${body.action} within ${this.#requestTimeoutMs} ms`, body.action));
        }
      }, this.#requestTimeoutMs);
      this.#pending.set(ref, { resolve, reject, timer, action: body.action, group: body.group, resync });
      try {
        this.#ws.send(JSON.stringify({ ...body, ref }));
      } catch (error) {
        clearTimeout(timer);
        this.#pending.delete(ref);
        reject(new PresenceError('send_failed', String(error?.message ?? error), body.action));
      }
    });
  }

  #rejectPending(code, message) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const request of pending) {
      clearTimeout(request.timer);
      request.reject(new PresenceError(code, message, request.action));
    }
  }

  #onFrame(raw) {
    if (typeof raw !== 'string') return; // the protocol is JSON text frames only
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      this.#emit('error', { source: 'websocket', code: 'bad_frame', message: 'a frame was not JSON' });
      return;
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return;

    // The reply to one of our requests? (Other devices' copies carry no ref.)
    let request = null;
    if (msg.ref !== undefined && msg.ref !== null) {
      const key = String(msg.ref);
      request = this.#pending.get(key) ?? null;
      if (request) {
        this.#pending.delete(key);
        clearTimeout(request.timer);
      }
    }

    switch (msg.type) {
      case 'facility.status':
        if (this.board.apply(msg)) this.#emit('status', this.board.get(msg.facility_id));
        break;
      case 'snapshot': {
        const facilities = Array.isArray(msg.facilities) ? msg.facilities : [];
        const resync = Boolean(request?.resync);
        const applied = resync ? this.board.replace(facilities) : this.board.applySnapshot(facilities);
        this.#emit('snapshot', { region: msg.region, facilities, applied, resync });
        break;
      }
      case 'resync':
        // Redis lost its data: what was shown may be neither in Redis nor in DynamoDB, so
        // no event will ever correct it. Take the truth again, whatever its versions.
        this.#request({ action: 'snapshot' }, { resync: true }).catch((error) => {
          this.#emit('error', { source: 'server', code: error?.code, message: error?.message, action: 'snapshot' });
        });
        break;
      case 'joined':
        // Sent to all of the user's devices: membership is the user's, so follow it.
        if (isChatGroup(msg.group)) {
          this.#groups.add(msg.group);
          this.#unsentLeaves.delete(msg.group);
        }
        this.#emit('joined', msg);
        break;
      case 'left':
        // Leaving on one device leaves on all: do not re-join it on the next reconnect.
        this.#groups.delete(msg.group);
        this.#emit('left', msg);
        break;
      case 'member.joined':
      case 'member.left':
      case 'message':
        this.#emit(msg.type, msg);
        break;
      case 'error':
        if (request) {
          if (request.action === 'join' && request.group) this.#groups.delete(request.group);
          request.reject(new PresenceError(msg.code ?? 'error', msg.message ?? 'request failed', msg.action ?? request.action));
          request = null;
        } else {
          this.#emit('error', { source: 'server', code: msg.code, message: msg.message, action: msg.action });
        }
        break;
      default:
        break; // sent, members, heartbeat, pong: replies only
    }
    if (request) request.resolve(msg);
  }
}
