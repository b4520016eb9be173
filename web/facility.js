// facility.js — facility history on the dashboard, from the history read API
// (GET /v1/facilities/{id}/history, /availability and /sessions, with the user's token):
//
// - each tile's last 24 hours as a timeline bar with its availability (`FacilityHistory`
//   `attachTile`), fetched on load, every 5 minutes and shortly after a status event of that
//   facility, never more than once per tile per 10 s (`RefreshThrottle`);
// - the facility view, the hash route `#facility/{id}`: a zoomable timeline of a chosen range,
//   the range's flips (paged through the API's cursor), "who was online at" an instant, and a
//   CSV download of the range's flips.
//
// Nothing here touches the DOM at import time, so the pure parts are unit-tested in Node.
import {
  DAY_MS,
  HOUR_MS,
  MAX_RANGE_MS,
  MINUTE_MS,
  buildSegments,
  duration,
  fromLocalInput,
  instantAt,
  localTime,
  percent,
  renderTimeline,
  spanText,
  toLocalInput,
} from './timeline.js';

/** How often a tile's history may be fetched at most (ms). */
export const TILE_MIN_INTERVAL_MS = 10_000;
/** How long a tile waits after a status event before fetching (more events within it coalesce). */
export const TILE_DEBOUNCE_MS = 2_000;
/**
 * After a status event, the history is fetched once more this much later: the rollup persists
 * flips once a minute, so the first fetch may not have the new flip yet.
 */
export const SETTLE_MS = 65_000;
/** Every tile's history is fetched again this often (the 24 h window slides). */
export const TILE_PERIOD_MS = 5 * MINUTE_MS;
/** The tiles' bars are redrawn from what is held this often (no fetch). */
const REDRAW_MS = 30_000;
/** Flips per page of the facility view's list (`?history_page_size=` overrides it). */
export const FLIP_PAGE_SIZE = 50;
export const RANGE_PRESETS = [
  { label: '1 h', ms: HOUR_MS },
  { label: '24 h', ms: DAY_MS },
  { label: '7 d', ms: 7 * DAY_MS },
  { label: '30 d', ms: 30 * DAY_MS },
];
const MIN_SPAN_MS = MINUTE_MS;

// ------------------------------------------------------------------ the API

/** A failed history request: `status` (HTTP, 0 for a network error) and the server's `code`. */
export class HistoryError extends Error {
  constructor(message, { status = 0, code = 'network' } = {}) {
    super(message);
    this.name = 'HistoryError';
    this.status = status;
    this.code = code;
  }
}

/** The history read API with a bearer token; a 401 fetches a fresh token once and retries. */
export class HistoryApi {
  /**
   * @param {{getToken: () => Promise<string>, token?: string, fetch?: typeof fetch}} options
   */
  constructor({ getToken, token = null, fetch: fetchFn = (...args) => globalThis.fetch(...args) }) {
    this.getToken = getToken;
    this.token = token;
    this.fetch = fetchFn;
  }

  async get(path, params = {}) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) if (value != null) query.set(key, String(value));
    const url = `${query}` ? `${path}?${query}` : path;
    for (let attempt = 0; ; attempt += 1) {
      if (!this.token) this.token = await this.getToken();
      let response;
      try {
        response = await this.fetch(url, { headers: { Authorization: `Bearer ${this.token}` }, cache: 'no-store' });
      } catch (error) {
        throw new HistoryError(`${path}: ${error.message}`);
      }
      if (response.status === 401 && attempt === 0) {
        this.token = null;
        continue;
      }
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      if (!response.ok) {
        const code = body?.error?.code ?? 'error';
        const message = body?.error?.message ?? `${response.status}`;
        throw new HistoryError(message, { status: response.status, code });
      }
      return body;
    }
  }

  /** One page of flips of `[from, to)`, oldest first: `{flips, cursor}`. */
  flips(facility, from, to, { limit = 100, cursor = null } = {}) {
    return this.get(`/v1/facilities/${encodeURIComponent(facility)}/history`, {
      from: Math.floor(from),
      to: Math.floor(to),
      limit,
      cursor,
    });
  }

  /** Every flip of `[from, to)`, at most `maxPages` pages of `limit`: `{flips, complete}`. */
  async allFlips(facility, from, to, { limit = 1000, maxPages = 10 } = {}) {
    const flips = [];
    let cursor = null;
    for (let page = 0; page < maxPages; page += 1) {
      const body = await this.flips(facility, from, to, { limit, cursor });
      flips.push(...(body?.flips ?? []));
      cursor = body?.cursor ?? null;
      if (!cursor) return { flips, complete: true };
    }
    return { flips, complete: false };
  }

  availability(facility, from, to) {
    return this.get(`/v1/facilities/${encodeURIComponent(facility)}/availability`, {
      from: Math.floor(from),
      to: Math.floor(to),
    });
  }

  sessions(facility, at) {
    return this.get(`/v1/facilities/${encodeURIComponent(facility)}/sessions`, { at: Math.floor(at) });
  }
}

// ------------------------------------------------------------------ CSV

const csvField = (value) => {
  const text = value == null ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
};

export const CSV_HEADER = ['at_ms', 'iso_time', 'status', 'online_sessions', 'version'];

/** The flips as CSV (RFC 4180, CRLF), with a header row `at_ms,iso_time,status,online_sessions,version`. */
export function flipsToCsv(flips) {
  const rows = [CSV_HEADER.join(',')];
  for (const f of flips) {
    rows.push(
      [f.since_ms, new Date(f.since_ms).toISOString(), f.status, f.online_sessions ?? '', f.version ?? '']
        .map(csvField)
        .join(','),
    );
  }
  return `${rows.join('\r\n')}\r\n`;
}

/** "20261201T1402Z": a compact UTC time for file names. */
const fileTime = (ms) => `${new Date(ms).toISOString().replace(/[-:]/g, '').slice(0, 15)}Z`;

// ------------------------------------------------------------------ throttling

/**
 * Runs `run(key)` for keys asked for with `request`, each key at most once per
 * `minIntervalMs` (from the start of one run to the start of the next) and never twice at once;
 * a request waits `debounce` ms first, and requests while one is pending join it.
 */
export class RefreshThrottle {
  constructor({ run, minIntervalMs = TILE_MIN_INTERVAL_MS, env = {} }) {
    this.run = run;
    this.minIntervalMs = minIntervalMs;
    this.setTimeout = env.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this.clearTimeout = env.clearTimeout ?? ((id) => globalThis.clearTimeout(id));
    this.now = env.now ?? (() => Date.now());
    /** @type {Map<string, {last: number, timer: any, running: boolean, again: boolean}>} */
    this.keys = new Map();
    this.stopped = false;
  }

  #state(key) {
    let state = this.keys.get(key);
    if (!state) {
      state = { last: -Infinity, timer: null, running: false, again: false };
      this.keys.set(key, state);
    }
    return state;
  }

  request(key, debounce = 0) {
    if (this.stopped) return;
    const state = this.#state(key);
    if (state.running) {
      state.again = true;
      return;
    }
    if (state.timer) return;
    const wait = Math.max(debounce, state.last + this.minIntervalMs - this.now(), 0);
    state.timer = this.setTimeout(() => {
      state.timer = null;
      this.#go(key, state);
    }, wait);
  }

  async #go(key, state) {
    if (this.stopped) return;
    state.running = true;
    state.last = this.now();
    try {
      await this.run(key);
    } catch {
      /* the runner shows its own errors */
    } finally {
      state.running = false;
      if (state.again) {
        state.again = false;
        this.request(key, 0);
      }
    }
  }

  stop() {
    this.stopped = true;
    for (const state of this.keys.values()) if (state.timer) this.clearTimeout(state.timer);
    this.keys.clear();
  }
}

// ------------------------------------------------------------------ DOM helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') {
      for (const [name, data] of Object.entries(value)) if (data != null) node.dataset[name] = String(data);
    } else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const timeEl = (ms, options) => el('time', { datetime: new Date(ms).toISOString(), text: localTime(ms, options) });
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function errorText(error) {
  if (error?.status === 404) return 'No history yet: this facility has never been online.';
  if (error?.status === 403) return 'This facility is in another region.';
  if (error?.status === 503) return 'History is unavailable right now; try again shortly.';
  return `Could not load the history: ${error?.message ?? error}`;
}

// ------------------------------------------------------------------ the dashboard's history

/**
 * The history parts of the dashboard for one signed-in session: tile timelines and the
 * facility view. `app.js` makes one at sign-in and calls `attachTile`, `start`,
 * `statusChanged`, `route` and `stop`.
 */
export class FacilityHistory {
  /**
   * @param {{api: HistoryApi, board: {get(id: string): any}, facilityName: (id: string) => string,
   *   userName: (id: string) => string, view: HTMLElement, boardSection: HTMLElement,
   *   pageSize?: number}} options
   */
  constructor({ api, board, facilityName, userName, view, boardSection, pageSize = FLIP_PAGE_SIZE }) {
    this.api = api;
    this.board = board;
    this.facilityName = facilityName;
    this.userName = userName;
    this.viewRoot = view;
    this.boardSection = boardSection;
    this.pageSize = pageSize;
    /** @type {Map<string, {tile: HTMLElement, bar: HTMLElement, text: HTMLElement, data: any}>} */
    this.tiles = new Map();
    this.throttle = new RefreshThrottle({ run: (id) => this.#loadTile(id) });
    this.timers = [];
    /** @type {Map<string, any>} one pending "settle" fetch per facility */
    this.settle = new Map();
    this.view = null;
    this.started = false;
    this.stopped = false;
  }

  // ---------------------------------------------------------------- tiles

  /** Adds the 24 h bar and the availability line to a tile. */
  attachTile(tile, id) {
    const bar = el('div', { class: 'tile-timeline' });
    const text = el('p', { class: 'tile-availability', text: 'Loading history…' });
    tile.append(el('div', { class: 'tile-history' }, bar, text));
    this.tiles.set(id, { tile, bar, text, data: null });
    this.#drawTile(id);
    if (this.started) this.throttle.request(id, 0);
  }

  /** Loads every tile's history, and keeps the bars current. */
  start() {
    this.started = true;
    for (const id of this.tiles.keys()) this.throttle.request(id, 0);
    this.timers.push(setInterval(() => this.redraw(), REDRAW_MS));
    this.timers.push(
      setInterval(() => {
        if (document.visibilityState === 'hidden') return;
        for (const id of this.tiles.keys()) this.throttle.request(id, Math.random() * 5_000);
      }, TILE_PERIOD_MS),
    );
  }

  stop() {
    this.stopped = true;
    this.throttle.stop();
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    for (const timer of this.settle.values()) clearTimeout(timer);
    this.settle.clear();
    this.view?.stop();
    this.view = null;
    this.viewRoot.hidden = true;
    this.viewRoot.replaceChildren();
    this.boardSection.hidden = false;
  }

  /** A status event of `id` arrived: draw it at once, fetch the history a little later. */
  statusChanged(id) {
    if (this.stopped) return;
    if (this.tiles.has(id)) {
      this.#drawTile(id);
      this.throttle.request(id, TILE_DEBOUNCE_MS);
    }
    clearTimeout(this.settle.get(id));
    this.settle.set(
      id,
      setTimeout(() => {
        this.settle.delete(id);
        if (this.tiles.has(id)) this.throttle.request(id, 0);
        this.view?.settled(id);
      }, SETTLE_MS),
    );
    this.view?.statusChanged(id);
  }

  /** Redraws every bar from what is held (after a snapshot, and as time passes). */
  redraw() {
    if (this.stopped) return;
    for (const id of this.tiles.keys()) this.#drawTile(id);
    this.view?.redraw();
  }

  async #loadTile(id) {
    const entry = this.tiles.get(id);
    if (!entry || this.stopped) return;
    const to = Date.now();
    const from = to - DAY_MS;
    try {
      const [history, availability] = await Promise.all([
        this.api.allFlips(id, from, to, { maxPages: 3 }),
        this.api.availability(id, from, to),
      ]);
      entry.data = { flips: history.flips, availability, error: null };
    } catch (error) {
      entry.data = error?.status === 404
        ? { flips: [], availability: null, error: null, unseen: true }
        : { flips: entry.data?.flips ?? null, availability: entry.data?.availability ?? null, error };
    }
    if (!this.stopped) this.#drawTile(id);
  }

  #drawTile(id) {
    const entry = this.tiles.get(id);
    if (!entry) return;
    const to = Date.now();
    const from = to - DAY_MS;
    const { data } = entry;
    const current = this.board.get(id) ?? null;
    const segments = data?.flips ? buildSegments({ from, to, flips: data.flips, current, now: to }) : [];
    const bar = renderTimeline(document, { from, to, segments, title: 'Last 24 hours' });
    entry.bar.replaceChildren(bar);
    let text;
    let share = null;
    if (!data) text = 'Loading history…';
    else if (data.availability) {
      share = Number(data.availability.online_share);
      text = `${percent(share)} online in 24 h`;
    } else if (data.unseen) text = 'No history yet';
    else text = 'History unavailable';
    entry.text.textContent = text;
    if (share == null) delete entry.text.dataset.share;
    else entry.text.dataset.share = String(share);
    entry.tile.dataset.history = data ? (data.error ? 'error' : 'loaded') : 'loading';
  }

  // ---------------------------------------------------------------- the facility view

  /** Shows the facility view for `#facility/{id}`, or the board for any other hash. */
  route(hash) {
    if (this.stopped) return false;
    const match = /^#facility\/([^/?#]+)$/.exec(hash ?? '');
    const id = match ? safeDecode(match[1]) : null;
    if (!id) {
      const was = this.view?.id;
      this.view?.stop();
      this.view = null;
      this.viewRoot.hidden = true;
      this.viewRoot.replaceChildren();
      delete document.body.dataset.facilityView;
      this.boardSection.hidden = false;
      document.title = 'Presence';
      if (was) this.tiles.get(was)?.tile.querySelector('.tile-link')?.focus({ preventScroll: false });
      return false;
    }
    if (this.view?.id === id) return true;
    this.view?.stop();
    this.view = new FacilityView(this, id);
    this.boardSection.hidden = true;
    this.viewRoot.hidden = false;
    document.body.dataset.facilityView = id;
    document.title = `${this.facilityName(id)} · Presence`;
    this.view.open();
    return true;
  }
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** The facility view of one facility (built into `history.viewRoot`). */
class FacilityView {
  constructor(history, id) {
    this.h = history;
    this.id = id;
    this.api = history.api;
    const to = Date.now();
    this.range = { from: to - DAY_MS, to, live: true };
    this.seq = 0; // ignores answers to superseded loads
    this.data = null; // {from, to, flips, complete, availability, error}
    this.list = { cursor: null, count: 0 };
    this.throttle = new RefreshThrottle({ run: () => this.load({ keepList: true }) });
    this.timer = null;
  }

  open() {
    const name = this.h.facilityName(this.id);
    const presets = RANGE_PRESETS.map((p) =>
      el('button', { class: 'button button-quiet button-small', type: 'button', dataset: { span: p.ms }, 'aria-pressed': 'false', text: p.label }),
    );
    const n = {};
    n.title = el('h1', { id: 'facility-title', tabindex: '-1', text: name });
    n.now = el('p', { class: 'facility-now' });
    n.status = el('p', { class: 'facility-status small', role: 'status' });
    n.presets = el('div', { class: 'range-presets', role: 'group', 'aria-label': 'Range' }, ...presets);
    n.zoomIn = el('button', { class: 'button button-quiet button-small', type: 'button', id: 'zoom-in', text: 'Zoom in' });
    n.zoomOut = el('button', { class: 'button button-quiet button-small', type: 'button', id: 'zoom-out', text: 'Zoom out' });
    n.earlier = el('button', { class: 'button button-quiet button-small', type: 'button', id: 'range-earlier', text: '◀ Earlier' });
    n.later = el('button', { class: 'button button-quiet button-small', type: 'button', id: 'range-later', text: 'Later ▶' });
    n.from = el('input', { id: 'range-from', type: 'datetime-local', step: '1', required: true });
    n.to = el('input', { id: 'range-to', type: 'datetime-local', step: '1', required: true });
    n.rangeForm = el(
      'form',
      { class: 'range-form', novalidate: true },
      el('label', { for: 'range-from', class: 'small', text: 'From' }),
      n.from,
      el('label', { for: 'range-to', class: 'small', text: 'To' }),
      n.to,
      el('button', { class: 'button button-small', type: 'submit', text: 'Show range' }),
    );
    n.rangeText = el('p', { class: 'range-text', id: 'range-text' });
    n.timeline = el('div', { class: 'facility-timeline', id: 'facility-timeline' });
    n.availability = el('p', { class: 'facility-availability', id: 'facility-availability' });
    n.csv = el('button', { class: 'button button-small', type: 'button', id: 'flips-csv', text: 'Download CSV' });
    n.flipsBody = el('tbody');
    n.flipsTable = el(
      'table',
      { class: 'data-table', id: 'flips' },
      el('caption', { class: 'visually-hidden', text: `Status changes of ${name} in the range, oldest first` }),
      el('thead', {}, el('tr', {}, ...['Time', 'Status', 'Sessions', 'Version'].map((t) => el('th', { scope: 'col', text: t })))),
      n.flipsBody,
    );
    n.flipsNote = el('p', { class: 'muted small', id: 'flips-note' });
    n.more = el('button', { class: 'button button-quiet button-small', type: 'button', id: 'flips-more', text: 'Show more', hidden: true });
    n.at = el('input', { id: 'who-at', type: 'datetime-local', step: '1', required: true });
    n.whoForm = el(
      'form',
      { class: 'who-form', novalidate: true },
      el('label', { for: 'who-at', class: 'small', text: 'At' }),
      n.at,
      el('button', { class: 'button button-small', type: 'submit', id: 'who-show', text: 'Show' }),
    );
    n.whoSummary = el('p', { class: 'small', id: 'who-summary', 'aria-live': 'polite' });
    n.whoBody = el('tbody');
    n.whoTable = el(
      'table',
      { class: 'data-table', id: 'who', hidden: true },
      el('caption', { class: 'visually-hidden', text: 'Sessions online at the chosen instant' }),
      el('thead', {}, el('tr', {}, ...['Session', 'User', 'Started', 'Ended', 'Reason'].map((t) => el('th', { scope: 'col', text: t })))),
      n.whoBody,
    );
    const scroller = (table, label) => el('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0' }, table);

    this.h.viewRoot.replaceChildren(
      el('a', { class: 'back-link', href: '#', id: 'facility-back', text: '← All facilities' }),
      el('div', { class: 'section-head' }, n.title, n.now),
      n.status,
      el(
        'section',
        { class: 'panel', 'aria-labelledby': 'timeline-title' },
        el('div', { class: 'panel-head' }, el('h2', { id: 'timeline-title', text: 'Timeline' }), n.rangeText),
        el('div', { class: 'range-controls' }, n.presets, el('div', { class: 'range-zoom', role: 'group', 'aria-label': 'Zoom and move' }, n.zoomIn, n.zoomOut, n.earlier, n.later)),
        n.rangeForm,
        n.timeline,
        el('div', { class: 'timeline-legend', 'aria-hidden': 'true' },
          el('span', { class: 'legend-online', text: 'Online' }),
          el('span', { class: 'legend-offline', text: 'Offline' }),
          el('span', { class: 'legend-unknown', text: 'No data' })),
        n.availability,
      ),
      el(
        'section',
        { class: 'panel', 'aria-labelledby': 'flips-title' },
        el('div', { class: 'panel-head' }, el('h2', { id: 'flips-title', text: 'Status changes' }), n.csv),
        scroller(n.flipsTable, 'Table of status changes'),
        n.flipsNote,
        n.more,
      ),
      el(
        'section',
        { class: 'panel', 'aria-labelledby': 'who-title' },
        el('div', { class: 'panel-head' }, el('h2', { id: 'who-title', text: 'Who was online' })),
        n.whoForm,
        el('p', { class: 'muted small', text: 'Sessions are listed once they have ended; click the timeline to pick an instant.' }),
        n.whoSummary,
        scroller(n.whoTable, 'Table of sessions'),
      ),
    );
    this.n = n;

    for (const button of presets) {
      button.addEventListener('click', () => {
        const to = Date.now();
        this.setRange(to - Number(button.dataset.span), to, true);
      });
    }
    n.zoomIn.addEventListener('click', () => this.zoom(0.5));
    n.zoomOut.addEventListener('click', () => this.zoom(2));
    n.earlier.addEventListener('click', () => this.pan(-0.5));
    n.later.addEventListener('click', () => this.pan(0.5));
    n.rangeForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const from = fromLocalInput(n.from.value);
      const to = fromLocalInput(n.to.value);
      if (!Number.isFinite(from) || !Number.isFinite(to)) return this.say('Pick both a start and an end.');
      if (to <= from) return this.say('The end must be after the start.');
      if (to - from > MAX_RANGE_MS) return this.say('A range can be at most 31 days.');
      this.setRange(from, to, to >= Date.now());
    });
    n.more.addEventListener('click', () => this.more());
    n.csv.addEventListener('click', () => this.csv());
    n.whoForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const at = fromLocalInput(n.at.value);
      if (!Number.isFinite(at)) {
        n.whoSummary.textContent = 'Pick an instant.';
        return;
      }
      this.who(at);
    });
    n.timeline.addEventListener('click', (event) => {
      const { from, to } = this.shown();
      const at = instantAt(n.timeline, event.clientX, from, to);
      n.at.value = toLocalInput(at);
      this.who(at);
    });

    n.at.value = toLocalInput(Date.now());
    this.showNow();
    this.setRange(this.range.from, this.range.to, true);
    this.timer = setInterval(() => {
      this.showNow();
      if (this.range.live) this.redraw();
    }, REDRAW_MS);
    n.title.focus();
  }

  stop() {
    this.seq += 1;
    this.stopped = true;
    this.throttle.stop();
    clearInterval(this.timer);
  }

  say(text) {
    this.n.status.textContent = text;
  }

  /** The range on screen: a live range ends now. */
  shown() {
    if (!this.range.live) return { from: this.range.from, to: this.range.to };
    const to = Date.now();
    return { from: to - (this.range.to - this.range.from), to };
  }

  setRange(from, to, live) {
    let span = Math.min(MAX_RANGE_MS, Math.max(MIN_SPAN_MS, Math.round(to - from)));
    const now = Date.now();
    let end = Math.round(from + span);
    if (live || end >= now) {
      live = true;
      end = now;
    }
    this.range = { from: end - span, to: end, live };
    const { n } = this;
    n.from.value = toLocalInput(this.range.from);
    n.to.value = toLocalInput(this.range.to);
    for (const button of n.presets.querySelectorAll('button')) {
      button.setAttribute('aria-pressed', String(live && Number(button.dataset.span) === span));
    }
    n.zoomIn.disabled = span <= MIN_SPAN_MS;
    n.zoomOut.disabled = span >= MAX_RANGE_MS;
    n.later.disabled = live;
    n.rangeText.textContent = `${localTime(this.range.from, { seconds: false })} – ${live ? 'now' : localTime(this.range.to, { seconds: false })} (${spanText(span)})`;
    this.load({ keepList: false });
  }

  zoom(factor) {
    const { from, to } = this.shown();
    const span = (to - from) * factor;
    if (this.range.live) this.setRange(to - span, to, true);
    else {
      const middle = (from + to) / 2;
      this.setRange(middle - span / 2, middle + span / 2, false);
    }
  }

  pan(share) {
    const { from, to } = this.shown();
    const shift = (to - from) * share;
    this.setRange(from + shift, to + shift, false);
  }

  /** Fetches the range's flips (all, for the timeline), its availability and the list's first page. */
  async load({ keepList }) {
    const seq = ++this.seq;
    const { from, to } = this.range.live ? this.shown() : this.range;
    if (this.range.live) Object.assign(this.range, { from, to });
    this.say('Loading…');
    this.h.viewRoot.dataset.loading = 'true';
    const listCount = keepList ? Math.max(this.list.count, this.h.pageSize) : this.h.pageSize;
    try {
      const [history, availability, page] = await Promise.all([
        this.api.allFlips(this.id, from, to, { maxPages: 10 }),
        this.api.availability(this.id, from, to),
        this.api.flips(this.id, from, to, { limit: Math.min(1000, listCount) }),
      ]);
      if (seq !== this.seq) return;
      this.data = { from, to, flips: history.flips, complete: history.complete, availability, error: null };
      this.list = { cursor: page.cursor ?? null, count: 0, from, to };
      this.n.flipsBody.replaceChildren();
      this.addRows(page.flips ?? []);
      this.say('');
    } catch (error) {
      if (seq !== this.seq) return;
      this.data = { from, to, flips: error?.status === 404 ? [] : null, complete: true, availability: null, error };
      this.list = { cursor: null, count: 0, from, to };
      this.n.flipsBody.replaceChildren();
      this.addRows([]);
      this.say(errorText(error));
    } finally {
      if (seq === this.seq) delete this.h.viewRoot.dataset.loading;
    }
    this.redraw();
  }

  addRows(flips) {
    for (const f of flips) {
      this.n.flipsBody.append(
        el(
          'tr',
          { dataset: { status: f.status, since: f.since_ms, version: f.version } },
          el('td', {}, timeEl(f.since_ms)),
          el('td', {}, el('span', { class: `flip-status flip-${f.status === 'online' ? 'online' : 'offline'}`, text: f.status === 'online' ? 'Online' : 'Offline' })),
          el('td', { class: 'num', text: String(f.online_sessions ?? '') }),
          el('td', { class: 'num', text: String(f.version ?? '') }),
        ),
      );
    }
    this.list.count += flips.length;
    const { n } = this;
    n.more.hidden = !this.list.cursor;
    n.flipsNote.textContent = this.list.count === 0
      ? 'No status changes in this range.'
      : `${plural(this.list.count, 'status change')} shown, oldest first${this.list.cursor ? '; more follow' : ''}.`;
  }

  async more() {
    const { cursor, from, to } = this.list;
    if (!cursor) return;
    const seq = this.seq;
    this.n.more.disabled = true;
    try {
      const page = await this.api.flips(this.id, from, to, { limit: this.h.pageSize, cursor });
      if (seq !== this.seq) return;
      this.list.cursor = page.cursor ?? null;
      this.addRows(page.flips ?? []);
    } catch (error) {
      if (seq === this.seq) this.say(errorText(error));
    } finally {
      this.n.more.disabled = false;
    }
  }

  async csv() {
    const { from, to } = this.data ?? this.range;
    const button = this.n.csv;
    button.disabled = true;
    this.say('Preparing the CSV…');
    try {
      const { flips, complete } = await this.api.allFlips(this.id, from, to, { maxPages: 50 });
      const blob = new Blob([flipsToCsv(flips)], { type: 'text/csv;charset=utf-8' });
      const url = URL.createObjectURL(blob);
      const link = el('a', { href: url, download: `${this.id}-flips-${fileTime(from)}-${fileTime(to)}.csv`, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      this.say(`Downloaded ${plural(flips.length, 'status change')}${complete ? '' : ' (the first 50 000 only)'}.`);
    } catch (error) {
      this.say(errorText(error));
    } finally {
      button.disabled = false;
    }
  }

  async who(at) {
    const { n } = this;
    n.whoSummary.textContent = 'Loading…';
    try {
      const body = await this.api.sessions(this.id, at);
      if (this.stopped) return;
      const sessions = body?.sessions ?? [];
      n.whoBody.replaceChildren(
        ...sessions.map((s) =>
          el(
            'tr',
            { dataset: { session: s.session_id, user: s.user_id } },
            el('td', { class: 'mono break', text: s.session_id }),
            el('td', {}, this.h.userName(s.user_id), ' ', el('span', { class: 'mono muted', text: `(${s.user_id})` })),
            el('td', {}, timeEl(s.started_ms)),
            el('td', {}, s.ended_ms == null ? 'still online' : timeEl(s.ended_ms)),
            el('td', { text: s.reason ?? '' }),
          ),
        ),
      );
      n.whoTable.hidden = sessions.length === 0;
      n.whoSummary.textContent = sessions.length
        ? `${plural(sessions.length, 'session')} online at ${localTime(at)}.`
        : `Nobody was online at ${localTime(at)} (or their session has not ended yet).`;
      n.whoSummary.dataset.at = String(at);
    } catch (error) {
      if (this.stopped) return;
      n.whoBody.replaceChildren();
      n.whoTable.hidden = true;
      n.whoSummary.textContent = error?.status === 404 ? 'Nobody: this facility has never been online.' : errorText(error);
    }
  }

  showNow() {
    const status = this.h.board.get(this.id);
    const node = this.n.now;
    if (!status || typeof status.since_ms !== 'number') {
      node.textContent = 'No live status';
      node.dataset.status = 'offline';
      return;
    }
    const online = status.status === 'online';
    node.dataset.status = online ? 'online' : 'offline';
    node.textContent = online
      ? `Online for ${duration(Date.now() - status.since_ms)} · ${plural(status.online_sessions ?? 0, 'session')}`
      : `Offline since ${localTime(status.since_ms, { seconds: false })}`;
  }

  statusChanged(id) {
    if (id !== this.id || this.stopped) return;
    this.showNow();
    this.redraw();
    if (this.range.live) this.throttle.request('range', TILE_DEBOUNCE_MS);
  }

  /** The rollup has surely persisted the last change by now: fetch the live range again. */
  settled(id) {
    if (id === this.id && !this.stopped && this.range.live) this.throttle.request('range', 0);
  }

  redraw() {
    if (this.stopped || !this.n) return;
    const { from, to } = this.shown();
    const data = this.data;
    const current = this.range.live ? this.h.board.get(this.id) ?? null : null;
    const segments = data?.flips ? buildSegments({ from, to, flips: data.flips, current, now: Date.now() }) : [];
    const narrow = this.n.timeline.clientWidth && this.n.timeline.clientWidth < 480;
    this.n.timeline.replaceChildren(
      renderTimeline(document, { from, to, segments, title: `${this.h.facilityName(this.id)}, ${spanText(to - from)}`, axis: true, maxTicks: narrow ? 3 : 6 }),
    );
    const a = data?.availability;
    const node = this.n.availability;
    if (a) {
      node.dataset.share = String(a.online_share);
      node.textContent = `Online ${percent(Number(a.online_share))} of the range · ${plural(a.flips ?? 0, 'status change')} · longest offline ${duration(a.longest_offline_ms ?? 0)}`
        + (data.complete ? '' : ' · the timeline shows the first 10 000 changes only');
    } else {
      delete node.dataset.share;
      node.textContent = data ? '' : 'Loading…';
    }
  }
}
