/**
 * presence-client.js — a small, dependency-free browser client for Presence.
 *
 * One WebSocket per tab, and ONE heartbeat stream per browser:
 *
 * - **Heartbeats** make this browser count as "online" at the user's facility. The tabs elect
 *   a leader (Web Locks, or a localStorage lease where Web Locks is missing) and only the
 *   leader heartbeats, with a browser-wide session id kept in `localStorage`. Presence rides
 *   the leader's socket: it is opened with `&session_id=` (the server applies and binds the
 *   session at `$connect`) and the backstop heartbeats are one-way frames
 *   `{"action":"heartbeat","session_id"}` every `interval_s` (told by the server in the
 *   `snapshot` reply and in HTTP 202s). While the socket is not open, the leader falls back to
 *   `POST /v1/heartbeats`. The heartbeat clock runs in a tiny dedicated Worker where one can
 *   be made (page timers of hidden tabs are throttled to once a minute), else on page timers.
 *   When the last tab goes away it says `ended` with `navigator.sendBeacon`, so the facility
 *   flips offline at once instead of after the session TTL; when other tabs remain, one of
 *   them takes over and binds the session to its own socket at once.
 * - **The WebSocket** receives `facility.status` / `facility.statuses` events and chat
 *   traffic. Non-leader tabs open it without `session_id`. It reconnects with full-jitter
 *   exponential backoff, and on every open asks for a `snapshot` and re-joins the chat groups
 *   this tab asked to join. A page hidden for longer than `hiddenGraceMs` tells the server
 *   (`{"action":"visibility","visible":false}`), which then sends it only its own facility's
 *   events; shown again, it says `visible: true` and takes a fresh snapshot.
 *
 * Everything is exported so it can be unit-tested under Node (`node --test web/test/`): the
 * browser APIs the client touches (timers and the clock included) can be replaced through the
 * `env` constructor option.
 *
 * @module presence-client
 */

/** Heartbeat interval used until the server tells another one, in seconds. */
export const DEFAULT_INTERVAL_S = 60;

/** How long the page must stay hidden before the server is told to stop region events. */
export const DEFAULT_HIDDEN_GRACE_MS = 30_000;

/**
 * The dedicated worker that keeps the heartbeat clock: page timers of a hidden tab run at most
 * once a minute (Chrome's intensive throttling), a dedicated worker's are not throttled.
 * Message `{ms}` (re)starts a tick every `ms` milliseconds, `{ms: 0}` stops it.
 */
export const TICKER_WORKER_SOURCE = `let timer = null;
self.onmessage = (event) => {
  clearInterval(timer);
  timer = null;
  const ms = Number(event.data && event.data.ms);
  if (ms > 0) timer = setInterval(() => self.postMessage('tick'), ms);
};
`;

const WS_OPEN = 1; // WebSocket.OPEN, spelled out so that test doubles need not define it
const STABLE_AFTER_MS = 10_000; // a connection open this long resets the backoff
// A quiet socket (a follower tab's) says something at least this often, to stay under API
// Gateway's 10 min idle timeout: a one-way `visibility` frame restating what it reported
// (one billed message, no answer). Checked every KEEPALIVE_CHECK_MS, so even a hidden tab's
// minute-aligned timers keep the gap under 9 minutes.
const KEEPALIVE_AFTER_MS = 7.5 * 60_000;
const KEEPALIVE_CHECK_MS = 30_000;
const TICK_MAX_MS = 15_000; // the heartbeat clock ticks every interval/4, at most this far apart
const TICK_MIN_MS = 250;
const LEADER_WAIT_MS = 500; // the first socket waits this long at most to learn leadership
const TAB_HERE_EVERY_MS = 20_000; // each tab says "here" this often...
const TAB_STALE_AFTER_MS = 150_000; // ...and is presumed gone after this much silence
const LEASE_MS = 5_000; // fallback leader lease (no Web Locks): validity...
const LEASE_RENEW_MS = 1_500; // ...and renewal period
const LEASE_SETTLE_MS = 50; // wait before trusting a lease we just wrote
const STOP_WAIT_MS = 3_000; // stop() waits at most this long for the network

// Message history (recovery after a reconnect) and token refresh.
/** Messages asked per `history` page while recovering after a reconnect (the server allows 1..500). */
export const HISTORY_PAGE_LIMIT = 200;
const SEEN_LIMIT = 1_000; // seqs above a group's watermark remembered for dedupe (out-of-order arrivals)
/** A token is refreshed this long before its `exp` at the latest... */
export const TOKEN_REFRESH_BEFORE_MS = 60_000;
/** ...or once this share of its remaining life has passed, whichever is sooner. */
export const TOKEN_REFRESH_SHARE = 0.8;
const TOKEN_MIN_GAP_MS = 30_000; // at least this long between scheduled refreshes (skewed clocks, short tokens)
const MAX_TIMER_MS = 2 ** 31 - 1; // longer setTimeout delays fire at once

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

/**
 * The payload of a JWT (its middle part, base64url JSON), decoded without any verification.
 * @param {string} token
 * @returns {object|null} null when the token is not a JWT or its payload is not a JSON object
 */
export function decodeJwtPayload(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    b64 += '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return payload && typeof payload === 'object' && !Array.isArray(payload) ? payload : null;
  } catch {
    return null;
  }
}

/**
 * A JWT's `exp` claim (seconds since the epoch), read without verification.
 * @param {string} token
 * @returns {number|null} null when absent or not a number
 */
export function tokenExpiry(token) {
  const exp = decodeJwtPayload(token)?.exp;
  return typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
}

/**
 * How long to wait before refreshing a token that expires at `expS`: until
 * `TOKEN_REFRESH_BEFORE_MS` (60 s) before the expiry, or until `TOKEN_REFRESH_SHARE` (80 %) of
 * the life it had at `sinceMs` (when it was received) has passed, whichever is sooner; 0 when
 * that moment is past.
 * @param {number} expS the token's `exp`, seconds since the epoch
 * @param {number} [nowMs]
 * @param {number} [sinceMs] when the token was received (default: now)
 * @returns {number} milliseconds, whole, >= 0
 */
export function tokenRefreshDelay(expS, nowMs = Date.now(), sinceMs = nowMs) {
  const expMs = expS * 1000;
  const at = Math.min(expMs - TOKEN_REFRESH_BEFORE_MS, sinceMs + (expMs - sinceMs) * TOKEN_REFRESH_SHARE);
  const delay = at - nowMs;
  return Number.isFinite(delay) && delay > 0 ? Math.floor(delay) : 0;
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

/**
 * Moves a group's watermark over the seqs seen right above it. Too many seqs held above a gap
 * (one that never filled): the gap is given up.
 * @param {{last: number, seen: Set<number>}} state
 */
function advanceWatermark(state) {
  if (state.seen.size > SEEN_LIMIT) state.last = Math.min(...state.seen) - 1;
  while (state.seen.delete(state.last + 1)) state.last += 1;
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
 * A periodic tick for the heartbeat clock: from a dedicated Worker made from a Blob (not
 * throttled in hidden tabs) when `Worker`, `URL.createObjectURL` and `Blob` exist and the
 * worker starts, else from the page's `setInterval`. A worker that fails (a CSP without
 * `worker-src blob:`, say) is given up for good and the page timer takes over.
 */
class Ticker {
  #env;
  #onTick;
  #ms = 0;
  #worker = null;
  #workerUrl = null;
  #workerFailed = false;
  #timer = null;

  /**
   * @param {object} env the client's env (`Worker`, `URL`, `Blob`, `setInterval`, `clearInterval`)
   * @param {() => void} onTick
   */
  constructor(env, onTick) {
    this.#env = env;
    this.#onTick = onTick;
  }

  /** @returns {"worker"|"page"|null} what ticks now */
  get mode() {
    if (this.#worker) return 'worker';
    return this.#timer != null ? 'page' : null;
  }

  /** (Re)starts ticking every `ms`; a no-op when it already ticks at that period. */
  start(ms) {
    if (ms === this.#ms && this.mode) return;
    this.#ms = ms;
    if (!this.#worker && !this.#workerFailed) this.#worker = this.#makeWorker();
    if (this.#worker) {
      try {
        this.#worker.postMessage({ ms });
        return;
      } catch {
        this.#giveUpWorker();
      }
    }
    this.#env.clearInterval(this.#timer);
    this.#timer = this.#env.setInterval(this.#onTick, ms);
  }

  /** Stops ticking and ends the worker. */
  stop() {
    this.#ms = 0;
    this.#endWorker();
    this.#env.clearInterval(this.#timer);
    this.#timer = null;
  }

  #makeWorker() {
    const { Worker: W, URL: U, Blob: B } = this.#env;
    if (typeof W !== 'function' || typeof B !== 'function' || typeof U?.createObjectURL !== 'function') {
      this.#workerFailed = true;
      return null;
    }
    let url = null;
    try {
      url = U.createObjectURL(new B([TICKER_WORKER_SOURCE], { type: 'text/javascript' }));
      const worker = new W(url);
      worker.onmessage = () => {
        if (this.#worker === worker) this.#onTick();
      };
      worker.onerror = (event) => {
        event?.preventDefault?.();
        if (this.#worker === worker) this.#giveUpWorker();
      };
      this.#workerUrl = url;
      return worker;
    } catch {
      this.#workerFailed = true;
      this.#revoke(url);
      return null;
    }
  }

  /** The worker failed: page timers from now on (at the same period, if ticking). */
  #giveUpWorker() {
    this.#workerFailed = true;
    this.#endWorker();
    const ms = this.#ms;
    if (ms > 0) {
      this.#env.clearInterval(this.#timer);
      this.#timer = this.#env.setInterval(this.#onTick, ms);
    }
  }

  #endWorker() {
    const worker = this.#worker;
    this.#worker = null;
    if (worker) {
      try {
        worker.terminate();
      } catch {
        /* gone already */
      }
    }
    this.#revoke(this.#workerUrl);
    this.#workerUrl = null;
  }

  #revoke(url) {
    if (!url) return;
    try {
      this.#env.URL.revokeObjectURL(url);
    } catch {
      /* ignore */
    }
  }
}

/**
 * The real-time client: heartbeats (when this tab leads), a WebSocket, and the facility board.
 *
 * Events (all `CustomEvent`s, payload in `event.detail`):
 * - `status`        a `FacilityStatus` that was applied (newer than the one held), from a
 *                   `facility.status` frame or one entry of a `facility.statuses` frame
 * - `snapshot`      `{region, facilities, applied, resync}` — the raw list and the entries
 *                   applied (with `resync`: every entry that changed, facilities no longer
 *                   known included, now offline); snapshot entries do not fire `status`, read
 *                   them from `applied`/`board`
 * - `message`       `{group, from, data, seq, ts, recovered?}` — each `seq` of a group once
 *                   (`from` is null for a message the team's backend published); live ones as
 *                   they arrive, and after a reconnect the ones missed meanwhile (`recovered:
 *                   true`), oldest first, before the live ones that came during the recovery
 * - `recovered`     `{group, count, complete, after, last_seq}` — the recovery of a group after a
 *                   reconnect ended: `count` messages delivered, `complete: false` when the
 *                   server's retention had already dropped some of them
 * - `joined`/`left` `{group, ref?}` — for this user, whichever device asked
 * - `member.joined`/`member.left` `{group, user}` — other users joined or left the group
 * - `member.online`/`member.offline` `{group, user}` — another member's first device connected,
 *                   or their last one went away (after the server's grace)
 * - `token`         `{exp}` — a fresh token from `getToken` (or `setToken`) is in use; `exp` is
 *                   its expiry (seconds since the epoch, null if it has none)
 * - `authed`        `{exp}` — the open connection accepted the fresh token (`authed` reply)
 * - `connection`    `{state: "connecting"|"open"|"closed", attempt, code?, reason?, retry_in_ms?}`
 * - `leader`        `{leader: boolean}` — whether this tab sends the heartbeats
 * - `heartbeat`     `{interval_s, via: "socket"|"http", timer: "worker"|"page"|null}` — a
 *                   heartbeat went out on the socket (a one-way frame, or the leader's socket
 *                   opened with `session_id`), or an HTTP heartbeat was accepted
 * - `visibility`    `{visible: boolean}` — what this tab told (or will tell, on the next open)
 *                   the server: `false` after the page stayed hidden for `hiddenGraceMs`
 * - `error`         `{source: "heartbeat"|"server"|"websocket"|"leader"|"token", code?, message,
 *                    status?, action?, retry_in_ms?}` — failures no promise reports
 *
 * @example
 * const client = new PresenceClient({ token, websocketUrl, heartbeatUrl: '/v1/heartbeats' });
 * client.addEventListener('status', (e) => render(e.detail));
 * client.start();
 * await client.join('chat:trondelag-lobby');
 * await client.send('chat:trondelag-lobby', { text: 'hello' });
 * const { messages } = await client.history('chat:trondelag-lobby', { limit: 50 });
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
  #hiddenGraceMs;
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
  #lastSentAt = 0; // when a frame last went out on the socket
  #socketSession = null; // the session_id the current socket was opened with
  #leaderSettled = false; // whether this tab knows if it leads (the first connect waits)
  #connectWaitTimer = null;
  /** @type {Map<string, {resolve: Function, reject: Function, timer: any, action: string, group?: string}>} */
  #pending = new Map();
  #nextRef = 1;
  /** Chat groups this tab wants to be in: re-joined on every open. */
  #groups = new Set();
  /** Leaves asked for while disconnected: sent on the next open. */
  #unsentLeaves = new Set();
  /**
   * Per group, what was delivered: every seq <= `last` was delivered (or is known to be gone),
   * `seen` holds the seqs above it delivered out of order.
   * @type {Map<string, {last: number, seen: Set<number>}>}
   */
  #seqs = new Map();
  /** Groups the app declared for recovery (besides the joined chat groups). */
  #tracked = new Set();
  /** Groups being recovered: their live messages wait in `buffer` until the recovery ends. */
  #recovering = new Map();

  // Token refresh
  #tokenTimer = null;
  #refreshing = null; // the refresh in flight (one at a time)
  #tokenFailures = 0;
  #socketToken = null; // the token the current socket was opened with
  #serverExp = null; // the `exp` told by the last `authed` (for tokens whose exp cannot be read)
  #tokenSince = null; // when the token was received (its life is counted from then)

  // Leadership and heartbeats
  #leader = false;
  #lockAbort = null;
  #releaseLock = null;
  #leaseTimer = null;
  #ticker;
  #hbRetryTimer = null; // an HTTP heartbeat that failed is retried by this timer
  #hbGen = 0; // bumped to orphan a heartbeat in flight (leadership lost, stop, pagehide)
  #hbFailures = 0;
  #hbInFlight = null;
  #lastBeatAt = -Infinity; // when the server last got a heartbeat of ours (our clock)
  #lastVia = null;
  #intervalS = DEFAULT_INTERVAL_S;
  #memorySessionId = null; // used when localStorage is unavailable

  // Other tabs of this browser
  #channel = null;
  /** @type {Map<string, number>} tab id -> last heard (ms) */
  #tabs = new Map();
  #hereTimer = null;

  // Page visibility
  #hiddenTimer = null;
  #reportedHidden = false; // the server was told (or will be, on open) visible:false

  /**
   * @param {object} options
   * @param {string} options.token         the JWT (user, facility and region are its claims)
   * @param {string} options.websocketUrl  e.g. `ws://127.0.0.1:3001/local`; `?token=` is added
   * @param {string} options.heartbeatUrl  e.g. `/v1/heartbeats`
   * @param {string} [options.sessionKey]  localStorage key of the browser-wide session id
   * @param {string} [options.lockName]    Web Locks name of the heartbeat leader
   * @param {string} [options.tabsChannel] BroadcastChannel name used to count live tabs
   * @param {() => Promise<string>} [options.getToken] fetches a fresh token (same user). Called
   *        before the token's `exp` (60 s before, or at 80 % of its life as received, whichever is
   *        sooner), the new one then sent on the open socket (`auth`); at once when the server
   *        says `token_expired` (the refused request is sent again once); after a heartbeat
   *        answered 401; and before a reconnect when the socket never opened or the token is
   *        due. Without it the token is never refreshed.
   * @param {string[]} [options.historyGroups] groups besides the joined chat groups whose
   *        messages are recovered after a reconnect (see `track`)
   * @param {{baseMs?: number, maxMs?: number, random?: () => number}} [options.backoff]
   * @param {number} [options.requestTimeoutMs] how long a request waits for its reply
   * @param {number} [options.hiddenGraceMs] how long the page must stay hidden before the
   *        server is told to stop sending region events (default 30 000)
   * @param {object} [options.env] replacements for browser APIs (tests): `WebSocket`, `fetch`,
   *        `locks`, `storage`, `BroadcastChannel`, `sendBeacon`, `target` (gets the
   *        `pagehide`/`pageshow`/`online` listeners), `document` (`visibilityState`, and the
   *        `visibilitychange`/`resume` listeners), `Worker`, `URL` (`createObjectURL`), `Blob`,
   *        `setTimeout`, `clearTimeout`, `setInterval`, `clearInterval` and `now` (ms clock)
   */
  constructor({
    token,
    websocketUrl,
    heartbeatUrl,
    sessionKey = 'presence.session',
    lockName = 'presence-leader',
    tabsChannel = 'presence-tabs',
    getToken = null,
    historyGroups = [],
    backoff = {},
    requestTimeoutMs = 10_000,
    hiddenGraceMs = DEFAULT_HIDDEN_GRACE_MS,
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
    for (const group of Array.isArray(historyGroups) ? historyGroups : []) {
      if (typeof group === 'string' && group) this.#tracked.add(group);
    }
    this.#backoff = backoff;
    this.#requestTimeoutMs = requestTimeoutMs;
    this.#hiddenGraceMs =
      Number.isFinite(hiddenGraceMs) && hiddenGraceMs >= 0 ? hiddenGraceMs : DEFAULT_HIDDEN_GRACE_MS;

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
      document: has('document') ? env.document : g.document ?? null,
      Worker: has('Worker') ? env.Worker : g.Worker ?? null,
      URL: has('URL') ? env.URL : g.URL ?? null,
      Blob: has('Blob') ? env.Blob : g.Blob ?? null,
      // Wrapped: browsers refuse timers called with another `this` than the window.
      setTimeout: env.setTimeout ?? ((fn, ms) => g.setTimeout(fn, ms)),
      clearTimeout: env.clearTimeout ?? ((id) => g.clearTimeout(id)),
      setInterval: env.setInterval ?? ((fn, ms) => g.setInterval(fn, ms)),
      clearInterval: env.clearInterval ?? ((id) => g.clearInterval(id)),
      now: env.now ?? (() => Date.now()),
    };
    this.#ticker = new Ticker(this.#env, () => this.#onTick());
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

  /** @returns {"socket"|"http"|null} how the last heartbeat went out */
  get heartbeatVia() {
    return this.#lastVia;
  }

  /** @returns {"worker"|"page"|null} what runs the heartbeat clock (null: not leading) */
  get heartbeatTimer() {
    return this.#ticker.mode;
  }

  /** @returns {boolean} false once the server was told this page is hidden */
  get reportedVisible() {
    return !this.#reportedHidden;
  }

  /** @returns {string[]} the chat groups this tab is in (or asked to join) */
  get groups() {
    return [...this.#groups];
  }

  /** @returns {number} live tabs of this browser that run a client, this one included */
  get tabCount() {
    return this.#otherTabsAlive() + (this.#running && !this.#suspended ? 1 : 0);
  }

  /** @returns {number|null} the current token's `exp` (seconds since the epoch), if it has one */
  get tokenExp() {
    return tokenExpiry(this.#token);
  }

  /**
   * @returns {string[]} the groups whose missed messages are recovered after a reconnect: the
   *          joined chat groups and the ones declared with `track`/`historyGroups`
   */
  get historyGroups() {
    return [...new Set([...this.#groups, ...this.#tracked])];
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
    const doc = this.#env.document;
    if (doc && typeof doc.addEventListener === 'function') {
      doc.addEventListener('visibilitychange', this.#onVisibilityChange);
      doc.addEventListener('resume', this.#onLifecycleResume);
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
    const doc = this.#env.document;
    if (doc && typeof doc.removeEventListener === 'function') {
      doc.removeEventListener('visibilitychange', this.#onVisibilityChange);
      doc.removeEventListener('resume', this.#onLifecycleResume);
    }
    this.#seqs.clear(); // the next start may be another user's
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
    this.#forgetSeqs(group);
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

  /**
   * Reads a group's stored messages (members only). With `after`: the messages with a greater
   * `seq`, oldest first, at most `limit` (`more: true` when there are further ones: ask again
   * with the last seq). Without: the newest `limit` ones, oldest first — a device that joins
   * a group loads the last N with `history(group, {limit: N})`. Resolves with the `history`
   * reply `{group, messages: [{seq, ts, from, data}], complete, more}`; `complete: false` when
   * the server's retention dropped some. The messages are not sent as `message` events, but
   * they count as delivered: a later `message` with one of their seqs is dropped, and a reply
   * without `after` sets where the recovery after a reconnect starts for a group that had none.
   * @param {string} group
   * @param {{after?: number, limit?: number}} [options] `after` >= 0, `limit` 1..500 (server default 100)
   * @returns {Promise<object>}
   */
  history(group, { after, limit } = {}) {
    if (typeof group !== 'string' || group === '') {
      return Promise.reject(new PresenceError('bad_group', `not a group: ${group}`, 'history'));
    }
    if (after !== undefined && !(Number.isSafeInteger(after) && after >= 0)) {
      return Promise.reject(new PresenceError('bad_request', 'after must be an integer >= 0', 'history'));
    }
    if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 1 && limit <= 500)) {
      return Promise.reject(new PresenceError('bad_request', 'limit must be an integer in 1..500', 'history'));
    }
    const body = { action: 'history', group };
    if (after !== undefined) body.after = after;
    if (limit !== undefined) body.limit = limit;
    return this.#request(body).then((reply) => {
      this.#noteHistory(group, reply, after);
      return reply;
    });
  }

  /**
   * Who of a group's members is online (members only). Resolves with the `presence` reply
   * `{group, members: [{user, devices}]}` (sorted by user; `devices`: live connections). Keep
   * it current with the `member.online`, `member.offline`, `member.joined` and `member.left`
   * events.
   * @param {string} group
   * @returns {Promise<object>}
   */
  presence(group) {
    return this.#request({ action: 'presence', group });
  }

  /**
   * Uses a fresh token (same user) from now on: for reconnects and HTTP heartbeats, and sent on
   * the open socket (`auth`), so that the connection outlives the old token's `exp`. For apps
   * that refresh tokens themselves; with `getToken` the client does it on its own.
   * Resolves with the `authed` reply, or null when no socket is open (the next one uses it).
   * @param {string} token
   * @returns {Promise<object|null>}
   */
  setToken(token) {
    if (typeof token !== 'string' || token === '') {
      return Promise.reject(new PresenceError('bad_request', 'token must be a non-empty string', 'auth'));
    }
    this.#adoptToken(token);
    this.#scheduleTokenRefresh();
    if (!this.#isOpen()) return Promise.resolve(null);
    return this.#request({ action: 'auth', token });
  }

  /**
   * Declares a group whose missed messages are recovered after each reconnect, besides the
   * joined chat groups (which are recovered without asking): e.g. `user:{id}`, where the
   * team's backend publishes to a user. With `lastSeq` (the last seq the app has, say from a
   * previous page load), recovery starts after it; else after the first message seen (or a
   * `history` reply). When the socket is open and `lastSeq` is given, recovery runs at once.
   * @param {string} group
   * @param {number} [lastSeq]
   */
  track(group, lastSeq) {
    if (typeof group !== 'string' || group === '') throw new TypeError(`PresenceClient.track: not a group: ${group}`);
    this.#tracked.add(group);
    if (Number.isSafeInteger(lastSeq) && lastSeq >= 0) {
      const state = this.#seqs.get(group) ?? { last: lastSeq, seen: new Set() };
      state.last = lastSeq;
      for (const seq of state.seen) if (seq <= lastSeq) state.seen.delete(seq);
      advanceWatermark(state);
      this.#seqs.set(group, state);
      if (this.#isOpen() && !this.#recovering.has(group)) this.#recover(group, null);
    }
  }

  /**
   * Stops recovering a group declared with `track` (a joined chat group is recovered until
   * left).
   * @param {string} group
   */
  untrack(group) {
    this.#tracked.delete(group);
    if (!this.#groups.has(group)) this.#seqs.delete(group);
  }

  /**
   * The seq up to which a group's messages were all delivered (the `after` of the next
   * recovery), or undefined when none is known yet. Worth keeping across page loads: pass it
   * to `track` to recover from there.
   * @param {string} group
   * @returns {number|undefined}
   */
  lastSeq(group) {
    return this.#seqs.get(group)?.last;
  }

  // ---------------------------------------------------------------- internals: lifecycle

  #resume() {
    this.#tabId = newSessionId();
    this.#attempt = 0;
    this.#reportedHidden = false; // a new connection starts visible
    this.#openTabs();
    // The leader's socket carries the session id, so the first connect waits (briefly) to
    // learn whether this tab leads: Web Locks answer `ifAvailable` at once.
    this.#leaderSettled = false;
    this.#connectWaitTimer = this.#env.setTimeout(() => this.#settleLeadership(), LEADER_WAIT_MS);
    this.#acquireLeadership();
    if (this.#isHidden()) this.#armHiddenGrace();
    this.#scheduleTokenRefresh();
  }

  /** Leadership is known (or the wait is over): the first socket may open now. */
  #settleLeadership() {
    if (this.#leaderSettled) return;
    this.#leaderSettled = true;
    this.#env.clearTimeout(this.#connectWaitTimer);
    this.#connectWaitTimer = null;
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
    this.#env.clearTimeout(this.#connectWaitTimer);
    this.#connectWaitTimer = null;
    this.#env.clearTimeout(this.#hiddenTimer);
    this.#hiddenTimer = null;
    this.#env.clearTimeout(this.#tokenTimer);
    this.#tokenTimer = null;
    this.#closeSocket();
    this.#ticker.stop();
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

  // ---------------------------------------------------------------- internals: visibility

  #isHidden() {
    return this.#env.document?.visibilityState === 'hidden';
  }

  #onVisibilityChange = () => {
    if (!this.#running || this.#suspended) return;
    if (this.#isHidden()) {
      this.#armHiddenGrace();
      return;
    }
    this.#env.clearTimeout(this.#hiddenTimer);
    this.#hiddenTimer = null;
    if (this.#reportedHidden) {
      this.#reportedHidden = false;
      this.#emit('visibility', { visible: true });
      // A closed socket needs nothing: a new connection starts visible, with a snapshot.
      if (this.#isOpen()) {
        this.#sendRaw({ action: 'visibility', visible: true });
        // Region events were not sent while hidden: take the region's state again.
        this.#request({ action: 'snapshot' }).catch((error) => this.#reportRequestError(error));
      }
    }
    this.#beatIfStale(); // a hidden page may have been frozen, or its timers throttled
  };

  #onLifecycleResume = () => {
    // Back from the frozen state (Page Lifecycle): no timer ran meanwhile.
    if (this.#running && !this.#suspended) this.#beatIfStale();
  };

  /** Tells the server to stop region events once the page stayed hidden for the grace. */
  #armHiddenGrace() {
    if (this.#hiddenTimer || this.#reportedHidden) return;
    this.#hiddenTimer = this.#env.setTimeout(() => {
      this.#hiddenTimer = null;
      if (!this.#running || this.#suspended || !this.#isHidden() || this.#reportedHidden) return;
      this.#reportedHidden = true;
      this.#emit('visibility', { visible: false });
      this.#sendRaw({ action: 'visibility', visible: false }); // or right after the next open
    }, this.#hiddenGraceMs);
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
    this.#hereTimer = this.#env.setInterval(() => this.#post('here'), TAB_HERE_EVERY_MS);
  }

  #closeTabs() {
    this.#env.clearInterval(this.#hereTimer);
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
      this.#tabs.set(tab, this.#env.now());
      this.#post('here'); // so the newcomer learns about this tab
    } else if (type === 'here') {
      this.#tabs.set(tab, this.#env.now());
    } else if (type === 'bye') {
      this.#tabs.delete(tab);
      if (this.#leaseTimer) this.#leaseTick(); // maybe the leader left: try the lease now
    }
  }

  /** Other live tabs; a tab silent for too long (crashed, killed) no longer counts. */
  #otherTabsAlive() {
    const now = this.#env.now();
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
    const current = () => !abort.signal.aborted && this.#lockAbort === abort;
    // Held for as long as the promise returned by the callback is pending: the tab's life,
    // or until #releaseLeadership. The browser frees it if the tab dies.
    const hold = (lock) => {
      if (!lock || !current()) return undefined;
      return new Promise((release) => {
        this.#releaseLock = release;
        this.#setLeader(true);
      });
    };
    const refused = (error) => {
      if (error?.name === 'AbortError' || this.#lockAbort !== abort) return;
      // Web Locks refused (e.g. an opaque origin): fall back to the lease.
      this.#emit('error', { source: 'leader', message: String(error?.message ?? error) });
      this.#lockAbort = null;
      if (this.#running && !this.#suspended) this.#startLease();
    };
    let request;
    try {
      // First `ifAvailable`, answered at once: a tab that will not lead need not wait to
      // connect. Then, if another tab leads, wait in line (abortable).
      request = locks.request(this.#lockName, { ifAvailable: true }, (lock) => {
        if (lock) return hold(lock);
        if (!current()) return undefined;
        this.#settleLeadership();
        let waiting;
        try {
          waiting = locks.request(this.#lockName, { signal: abort.signal }, hold);
        } catch (error) {
          waiting = Promise.reject(error);
        }
        Promise.resolve(waiting).catch(refused);
        return undefined;
      });
    } catch (error) {
      request = Promise.reject(error);
    }
    Promise.resolve(request).catch(refused);
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
    this.#leaseTimer = this.#env.setInterval(() => this.#leaseTick(), LEASE_RENEW_MS);
    this.#leaseTick();
  }

  #leaseTick() {
    if (!this.#running || this.#suspended || !this.#leaseTimer) return;
    const now = this.#env.now();
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
    this.#env.setTimeout(() => {
      if (!this.#running || this.#suspended || !this.#leaseTimer) return;
      this.#setLeader(this.#readLease()?.tab === this.#tabId);
    }, LEASE_SETTLE_MS);
  }

  #stopLease() {
    if (!this.#leaseTimer) return;
    this.#env.clearInterval(this.#leaseTimer);
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
    const changed = this.#leader !== leader;
    if (changed) {
      this.#leader = leader;
      this.#hbGen += 1;
      this.#env.clearTimeout(this.#hbRetryTimer);
      this.#hbRetryTimer = null;
      this.#hbFailures = 0;
      if (leader) this.#ticker.start(this.#tickMs());
      else this.#ticker.stop();
      this.#emit('leader', { leader });
    }
    this.#settleLeadership(); // the first socket opens now, with session_id if leading
    // The first heartbeat goes out at once: on an open socket as a frame (which binds the
    // session to it, so a leader change never shows offline); on a socket still connecting
    // when it opens; without a socket over HTTP.
    if (changed && leader) this.#beat({ waitForSocket: true });
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

  /** The heartbeat clock's period: a quarter of the interval, within [250 ms, 15 s]. */
  #tickMs() {
    return Math.min(TICK_MAX_MS, Math.max(TICK_MIN_MS, Math.round((this.#intervalS * 1000) / 4)));
  }

  #leading() {
    return this.#running && !this.#suspended && this.#leader;
  }

  /** Takes an interval told by the server (snapshot, HTTP 202) if it is valid. */
  #adoptInterval(value) {
    const interval = Number(value);
    if (value == null || !Number.isFinite(interval) || interval < 1) return;
    if (interval === this.#intervalS) return;
    this.#intervalS = interval;
    if (this.#leading()) this.#ticker.start(this.#tickMs());
  }

  /**
   * A tick of the heartbeat clock: beats when the next tick would come too late. Ticks run
   * every interval/4, so beats go out every interval (give or take half a tick); when the
   * page's timers are throttled to once a minute, at every tick that is due.
   */
  #onTick() {
    if (!this.#leading()) return;
    const elapsed = this.#env.now() - this.#lastBeatAt;
    if (elapsed + this.#tickMs() / 2 < this.#intervalS * 1000) return;
    this.#beat();
  }

  /** Beats now if the last heartbeat is older than the interval (a frozen or throttled page). */
  #beatIfStale() {
    if (!this.#leading()) return;
    if (this.#env.now() - this.#lastBeatAt >= this.#intervalS * 1000) this.#beat();
  }

  /**
   * One heartbeat: a frame on the open socket, else over HTTP (unless an HTTP heartbeat is in
   * flight or waits for its retry). With `waitForSocket`, a socket still connecting is left to
   * beat when it opens (or to fall back to HTTP if it closes first).
   */
  #beat({ waitForSocket = false } = {}) {
    if (!this.#leading()) return;
    if (this.#isOpen()) {
      if (this.#beatOnSocket()) return;
    } else if (waitForSocket && this.#ws && this.#ws.readyState === 0) {
      return;
    }
    if (this.#hbInFlight || this.#hbRetryTimer) return;
    this.#beatOverHttp();
  }

  /** The one-way heartbeat frame; the server never answers it. */
  #beatOnSocket() {
    if (!this.#sendRaw({ action: 'heartbeat', session_id: this.#ensureSessionId() })) return false;
    this.#beaten('socket');
    return true;
  }

  /** A heartbeat reached the server (or went out on the socket, which is the same to us). */
  #beaten(via, at = this.#env.now()) {
    this.#lastBeatAt = Math.max(this.#lastBeatAt, at);
    this.#lastVia = via;
    this.#hbFailures = 0;
    if (via === 'socket') {
      this.#env.clearTimeout(this.#hbRetryTimer); // the socket took over from a failing HTTP
      this.#hbRetryTimer = null;
    }
    this.#emit('heartbeat', { interval_s: this.#intervalS, via, timer: this.#ticker.mode });
  }

  async #beatOverHttp() {
    const gen = this.#hbGen;
    const live = () => this.#leading() && gen === this.#hbGen;
    if (!live()) return;
    const sentAt = this.#env.now();
    const run = this.#postHeartbeat(this.#ensureSessionId());
    this.#hbInFlight = run;
    const result = await run;
    if (this.#hbInFlight === run) this.#hbInFlight = null;
    if (!live()) return;

    if (result.ok) {
      this.#adoptInterval(result.body?.interval_s);
      this.#beaten('http', sentAt);
      return;
    }
    const throttled = result.status === 429 || result.status === 503;
    const delay =
      throttled && result.retryAfterMs != null ? result.retryAfterMs : backoffDelay(this.#hbFailures, this.#backoff);
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
    this.#env.clearTimeout(this.#hbRetryTimer);
    this.#hbRetryTimer = this.#env.setTimeout(() => {
      this.#hbRetryTimer = null;
      if (live()) this.#beat(); // on the socket if it opened meanwhile
    }, delay);
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
        const B = this.#env.Blob ?? Blob;
        if (this.#env.sendBeacon(url, new B([json], { type: 'text/plain' }))) return Promise.resolve(true);
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

  // ---------------------------------------------------------------- internals: token

  #adoptToken(token) {
    if (token === this.#token) return;
    this.#token = token;
    this.#serverExp = null;
    this.#tokenSince = this.#env.now();
    this.#emit('token', { exp: tokenExpiry(token) });
  }

  #currentExp() {
    return tokenExpiry(this.#token) ?? this.#serverExp;
  }

  /** Whether the token is due for a refresh (or expired). */
  #tokenDue() {
    const exp = this.#currentExp();
    return exp !== null && tokenRefreshDelay(exp, this.#env.now(), this.#tokenSince ?? this.#env.now()) === 0;
  }

  /**
   * Times the next refresh from the token's `exp` (at least `minDelayMs` from now), or after
   * `retryMs` (a failed refresh: the token held may be refused, whatever its `exp`).
   */
  #scheduleTokenRefresh(minDelayMs = 0, retryMs = null) {
    this.#env.clearTimeout(this.#tokenTimer);
    this.#tokenTimer = null;
    if (!this.#getToken || !this.#running || this.#suspended) return;
    const exp = this.#currentExp();
    if (exp === null && retryMs === null) return;
    const now = this.#env.now();
    this.#tokenSince ??= now; // the constructor's token: counted from the start
    const due = retryMs ?? Math.max(minDelayMs, tokenRefreshDelay(exp, now, this.#tokenSince));
    const wait = Math.min(due, MAX_TIMER_MS);
    this.#tokenTimer = this.#env.setTimeout(() => {
      this.#tokenTimer = null;
      if (wait < due) this.#scheduleTokenRefresh(); // a token living for weeks: look again later
      else this.#refreshToken();
    }, wait);
  }

  /**
   * Gets a fresh token from `getToken` and, when the socket is open, sends it (`auth`). One at
   * a time: a refresh asked while one runs joins it. Resolves true when the new token is in
   * use (accepted by the open socket, or kept for the next one), false otherwise (a retry is
   * scheduled); never rejects.
   * @returns {Promise<boolean>}
   */
  #refreshToken() {
    if (!this.#getToken) return Promise.resolve(false);
    if (this.#refreshing) return this.#refreshing;
    const run = this.#runRefresh();
    this.#refreshing = run;
    run.then(() => {
      if (this.#refreshing === run) this.#refreshing = null;
    });
    return run;
  }

  async #runRefresh() {
    let ok = false;
    try {
      const token = await this.#getToken();
      if (typeof token !== 'string' || token === '') throw new Error('getToken returned no token');
      this.#adoptToken(token);
      ok = true;
      if (this.#isOpen()) await this.#request({ action: 'auth', token });
    } catch (error) {
      // Closed before the reply: the next socket opens with the new token anyway.
      if (!(ok && (error?.code === 'closed' || error?.code === 'not_connected'))) {
        ok = false;
        this.#emit('error', {
          source: 'token',
          code: error?.code,
          message: String(error?.message ?? error),
          action: error?.action,
        });
      }
    }
    if (ok) {
      this.#tokenFailures = 0;
      this.#scheduleTokenRefresh(TOKEN_MIN_GAP_MS);
    } else {
      const delay = backoffDelay(this.#tokenFailures, { baseMs: 1_000, maxMs: 60_000, random: this.#backoff.random });
      this.#tokenFailures += 1;
      this.#scheduleTokenRefresh(0, Math.max(delay, 1));
    }
    return ok;
  }

  /** A request refused with `token_expired` (not served): refresh, then send it again, once. */
  #retryAfterRefresh(request) {
    this.#refreshToken().then((ok) => {
      if (!ok) {
        request.reject(new PresenceError('token_expired', 'the token expired and no fresh one was accepted', request.action));
        return;
      }
      this.#request(request.body, { resync: request.resync, retried: true }).then(request.resolve, request.reject);
    });
  }

  // ---------------------------------------------------------------- internals: messages

  /** Records a delivered seq of a group; false when it was delivered already. */
  #accept(group, seq) {
    let state = this.#seqs.get(group);
    if (!state) {
      // The first seq known of this group: what came before it is not this client's to deliver.
      state = { last: seq - 1, seen: new Set() };
      this.#seqs.set(group, state);
    }
    if (seq <= state.last || state.seen.has(seq)) return false;
    state.seen.add(seq);
    advanceWatermark(state);
    return true;
  }

  #forgetSeqs(group) {
    if (!this.#tracked.has(group)) this.#seqs.delete(group);
  }

  /** A live `message` frame: once per seq; held back while its group is being recovered. */
  #onMessage(msg) {
    const { group, seq } = msg;
    if (typeof group !== 'string' || !Number.isSafeInteger(seq)) {
      this.#emit('message', msg); // no seq (an older server): nothing to dedupe by
      return;
    }
    const job = this.#recovering.get(group);
    if (job) job.buffer.push(msg);
    else if (this.#accept(group, seq)) this.#emit('message', msg);
  }

  /** The app's `history` reply: its messages count as delivered. */
  #noteHistory(group, reply, after) {
    const list = Array.isArray(reply?.messages) ? reply.messages : [];
    const seqs = list.map((m) => m?.seq).filter((seq) => Number.isSafeInteger(seq));
    if (after === undefined && !this.#seqs.has(group)) {
      // The newest N: where the recovery starts for a group that had no seq yet.
      this.#seqs.set(group, { last: seqs.length ? Math.min(...seqs) - 1 : 0, seen: new Set() });
    }
    for (const seq of seqs) this.#accept(group, seq);
  }

  /**
   * Recovers what a group missed while the socket was closed: `history` after its watermark,
   * page after page, each new message a `message` event (`recovered: true`), oldest first.
   * The group's live messages wait meanwhile and follow (those recovered already dropped).
   * Ends with `recovered`, unless the socket closed or a request failed (the next open tries
   * again from where it got).
   * @param {string} group
   * @param {Promise<object>|null} joining the re-join sent on this open: history comes after it
   */
  async #recover(group, joining) {
    const ws = this.#ws;
    const job = { buffer: [] };
    this.#recovering.set(group, job);
    const current = () => this.#ws === ws && this.#recovering.get(group) === job && this.#seqs.has(group);
    const after = this.#seqs.get(group)?.last;
    let count = 0;
    let complete = true;
    let done = false;
    try {
      if (joining) {
        try {
          await joining;
        } catch {
          return; // not a member (reported by the join), or closed
        }
      }
      let cursor = after;
      let more = true;
      while (more) {
        if (!current()) return;
        const reply = await this.#request({ action: 'history', group, after: cursor, limit: HISTORY_PAGE_LIMIT });
        if (!current()) return;
        if (reply.complete === false) complete = false;
        const messages = (Array.isArray(reply.messages) ? reply.messages : [])
          .filter((m) => m && typeof m === 'object' && Number.isSafeInteger(m.seq) && m.seq > cursor)
          .sort((a, b) => a.seq - b.seq);
        for (const m of messages) {
          if (!this.#accept(group, m.seq)) continue;
          count += 1;
          this.#emit('message', {
            type: 'message',
            group,
            from: m.from ?? null,
            data: m.data,
            seq: m.seq,
            ts: m.ts,
            recovered: true,
          });
        }
        if (messages.length) cursor = messages[messages.length - 1].seq;
        more = reply.more === true && messages.length > 0;
      }
      // Every stored message up to the cursor was returned: a seq still missing below it is
      // gone (retention), so stop waiting for it.
      const state = this.#seqs.get(group);
      if (state && cursor > state.last) {
        state.last = cursor;
        for (const seq of state.seen) if (seq <= cursor) state.seen.delete(seq);
        advanceWatermark(state);
      }
      done = true;
    } catch (error) {
      this.#reportRequestError(error);
    } finally {
      if (this.#recovering.get(group) === job) {
        this.#recovering.delete(group);
        const wanted = this.#seqs.has(group);
        const once = new Set();
        for (const msg of job.buffer.sort((a, b) => a.seq - b.seq)) {
          const fresh = wanted ? this.#accept(group, msg.seq) : !once.has(msg.seq);
          once.add(msg.seq);
          if (fresh) this.#emit('message', msg);
        }
      }
    }
    if (done) {
      this.#emit('recovered', { group, count, complete, after, last_seq: this.#seqs.get(group)?.last ?? null });
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
    this.#env.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    if (!this.#running || this.#suspended || this.#ws) return;
    const WS = this.#env.WebSocket;
    this.#setState('connecting');
    let ws;
    // The leader's socket carries the session: the server applies it at $connect and binds
    // it to this connection (and lets it linger only briefly once the socket closes).
    const sessionId = this.#leader ? this.#ensureSessionId() : null;
    try {
      let url = withQuery(this.#websocketUrl, 'token', this.#token);
      if (sessionId) url = withQuery(url, 'session_id', sessionId);
      ws = new WS(url);
    } catch (error) {
      this.#emit('error', { source: 'websocket', message: String(error?.message ?? error) });
      this.#scheduleReconnect(false, null);
      return;
    }
    this.#ws = ws;
    this.#socketSession = sessionId;
    this.#socketToken = this.#token;
    let opened = false;
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      opened = true;
      this.#lastSentAt = this.#env.now();
      this.#stableTimer = this.#env.setTimeout(() => {
        this.#attempt = 0;
      }, STABLE_AFTER_MS);
      // A keepalive keeps a quiet socket under API Gateway's 10 min idle timeout; a socket
      // that sent anything (the leader's heartbeats) in the last 7.5 min needs none.
      this.#pingTimer = this.#env.setInterval(() => {
        if (this.#env.now() - this.#lastSentAt >= KEEPALIVE_AFTER_MS) {
          this.#sendRaw({ action: 'visibility', visible: !this.#reportedHidden });
        }
      }, KEEPALIVE_CHECK_MS);
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
      this.#socketSession = null;
      this.#clearSocketTimers();
      this.#rejectPending('closed', 'the connection closed before the reply');
      this.#scheduleReconnect(opened, event);
      if (this.#leading()) {
        // The server lets a session whose socket closed linger only ~10 s: unless the
        // reconnect binds it again first, an HTTP heartbeat keeps it alive. A socket that
        // never opened carried nothing: beat only if one is due.
        if (opened) this.#beat();
        else this.#beatIfStale();
      }
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
    this.#reconnectTimer = this.#env.setTimeout(async () => {
      // A socket refused before opening may carry an expired token, and one due for a refresh
      // would not last: get a fresh one first.
      if (this.#getToken && (!opened || this.#tokenDue())) {
        this.#reconnectTimer = null;
        await this.#refreshToken();
      }
      this.#connect();
    }, delay);
  }

  #clearSocketTimers() {
    this.#env.clearTimeout(this.#stableTimer);
    this.#env.clearInterval(this.#pingTimer);
    this.#stableTimer = null;
    this.#pingTimer = null;
  }

  #closeSocket() {
    this.#env.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#clearSocketTimers();
    const ws = this.#ws;
    this.#ws = null; // its close event is now ignored
    this.#socketSession = null;
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

  #reportRequestError(error) {
    if (error?.code !== 'closed' && error?.code !== 'not_connected') {
      this.#emit('error', { source: 'server', code: error?.code, message: error?.message, action: error?.action });
    }
  }

  /**
   * On every open: `visible: false` if the page is reported hidden (a new connection starts
   * visible), the leader's heartbeat, `auth` if the token changed while connecting, the
   * snapshot, then leaves asked offline, every wanted join, and the recovery of every group
   * with a known seq.
   */
  #onOpen() {
    const report = (error) => this.#reportRequestError(error);
    if (this.#reportedHidden) this.#sendRaw({ action: 'visibility', visible: false });
    if (this.#leading()) {
      // Opened with session_id: $connect applied the heartbeat. Else (leadership came while
      // connecting) the frame binds the session to this socket now.
      if (this.#socketSession) this.#beaten('socket');
      else this.#beat();
    }
    // A token refreshed while this socket was connecting: the connection gets it now.
    if (this.#socketToken !== this.#token) {
      this.#socketToken = this.#token;
      this.#request({ action: 'auth', token: this.#token }).catch((error) => {
        if (error?.code !== 'closed') this.#emit('error', { source: 'token', code: error?.code, message: error?.message, action: 'auth' });
      });
    }
    this.#request({ action: 'snapshot' }).catch(report);
    for (const group of this.#unsentLeaves) this.#request({ action: 'leave', group }).catch(report);
    this.#unsentLeaves.clear();
    const joins = new Map();
    for (const group of this.#groups) {
      const joining = this.#request({ action: 'join', group });
      joining.catch(report);
      joins.set(group, joining);
    }
    // Then what the groups missed while closed, each after its re-join.
    for (const group of this.historyGroups) {
      if (this.#seqs.has(group)) this.#recover(group, joins.get(group) ?? null);
    }
  }

  /** A one-way frame (no `ref`, no reply awaited). @returns {boolean} whether it was sent */
  #sendRaw(body) {
    if (!this.#isOpen()) return false;
    try {
      this.#ws.send(JSON.stringify(body));
      this.#lastSentAt = this.#env.now();
      return true;
    } catch {
      return false; // the close event will follow
    }
  }

  /** Sends an action with a fresh `ref`; settles with the reply carrying that `ref`. */
  #request(body, { resync = false, retried = false } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.#isOpen()) {
        reject(new PresenceError('not_connected', 'not connected', body.action));
        return;
      }
      const ref = `r${this.#nextRef++}`;
      const timer = this.#env.setTimeout(() => {
        if (this.#pending.delete(ref)) {
          reject(new PresenceError('timeout', `no reply to ${body.action} within ${this.#requestTimeoutMs} ms`, body.action));
        }
      }, this.#requestTimeoutMs);
      this.#pending.set(ref, { resolve, reject, timer, action: body.action, group: body.group, body, resync, retried });
      try {
        this.#ws.send(JSON.stringify({ ...body, ref }));
        this.#lastSentAt = this.#env.now();
      } catch (error) {
        this.#env.clearTimeout(timer);
        this.#pending.delete(ref);
        reject(new PresenceError('send_failed', String(error?.message ?? error), body.action));
      }
    });
  }

  #rejectPending(code, message) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const request of pending) {
      this.#env.clearTimeout(request.timer);
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
        this.#env.clearTimeout(request.timer);
      }
    }

    switch (msg.type) {
      case 'facility.status':
        if (this.board.apply(msg)) this.#emit('status', this.board.get(msg.facility_id));
        break;
      case 'facility.statuses':
        // Coalesced statuses, in order; each one version-checked like a single event.
        for (const entry of Array.isArray(msg.statuses) ? msg.statuses : []) {
          if (!entry || typeof entry !== 'object') continue;
          const status = entry.region === undefined && msg.region !== undefined ? { ...entry, region: msg.region } : entry;
          if (this.board.apply(status)) this.#emit('status', this.board.get(status.facility_id));
        }
        break;
      case 'heartbeat':
        this.#adoptInterval(msg.interval_s); // heartbeat frames are one-way; tolerated anyway
        break;
      case 'snapshot': {
        this.#adoptInterval(msg.interval_s);
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
        this.#forgetSeqs(msg.group);
        this.#emit('left', msg);
        break;
      case 'member.joined':
      case 'member.left':
      case 'member.online':
      case 'member.offline':
        this.#emit(msg.type, msg);
        break;
      case 'message':
        this.#onMessage(msg);
        break;
      case 'authed':
        if (typeof msg.exp === 'number' && Number.isFinite(msg.exp)) this.#serverExp = msg.exp;
        this.#tokenFailures = 0;
        this.#scheduleTokenRefresh(TOKEN_MIN_GAP_MS);
        this.#emit('authed', { exp: typeof msg.exp === 'number' ? msg.exp : null });
        break;
      case 'error': {
        const expired = msg.code === 'token_expired' && this.#getToken !== null;
        if (expired && request && !request.retried && request.action !== 'auth') {
          // Not served: refresh the token, then send the same frame again (once).
          this.#retryAfterRefresh(request);
          request = null;
          break;
        }
        if (expired) this.#refreshToken(); // a one-way frame's error, or a second refusal
        if (request) {
          if (request.action === 'join' && request.group) this.#groups.delete(request.group);
          request.reject(new PresenceError(msg.code ?? 'error', msg.message ?? 'request failed', msg.action ?? request.action));
          request = null;
        } else {
          this.#emit('error', { source: 'server', code: msg.code, message: msg.message, action: msg.action });
        }
        break;
      }
      default:
        break; // sent, members, history, presence, pong: replies only
    }
    if (request) {
      // Sent with `others`: this socket gets no copy, so the seq is this client's already.
      if (msg.type === 'sent' && request.body?.others && typeof msg.group === 'string' && Number.isSafeInteger(msg.seq)) {
        this.#accept(msg.group, msg.seq);
      }
      request.resolve(msg);
    }
  }
}
