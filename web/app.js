// app.js — the Presence dashboard: sign-in, facility tiles, event log, chat, simulation.
// Plain ES module, no build step. Talks to the local stack on the page's own origin
// (/dev/config, /dev/directory, /dev/token, /dev/simulation) and to Presence through
// PresenceClient (one WebSocket per tab; the leader tab's carries the heartbeats, with HTTP as
// the fallback).
import { PresenceClient } from './presence-client.js';
import { FacilityHistory, HistoryApi } from './facility.js';
import { LobbyChat, resetChatView } from './chat.js';

const USER_KEY = 'presence.user'; // sessionStorage: the signed-in user of this tab
const LOG_LIMIT = 200;
const SIM_POLL_MS = 10_000;

const $ = (id) => document.getElementById(id);

/** @type {{websocket_url: string, heartbeat_url: string}|null} */
let config = null;
/** Directory lookups, filled at boot. */
const dir = { regions: new Map(), users: new Map(), facilityNames: new Map(), list: null };
/**
 * The signed-in session, or null.
 * @type {null | {user: any, region: any, client: PresenceClient, chat: LobbyChat,
 *   tiles: Map<string, HTMLElement>,
 *   timers: any[]}}
 */
let session = null;

// ------------------------------------------------------------------ small helpers

/** Creates an element: el('p', {class: 'x', dataset: {a: 1}}, 'text', child). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') {
      for (const [name, data] of Object.entries(value)) if (data != null) node.dataset[name] = String(data);
    }
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function requestJSON(url, init) {
  const response = await fetch(url, { cache: 'no-store', ...init });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body?.error?.message ?? `${response.status} ${response.statusText}`.trim();
    throw new Error(`${url.split('?')[0]}: ${message}`);
  }
  return body;
}

const storage = {
  get(key) {
    try {
      return sessionStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      sessionStorage.setItem(key, value);
    } catch {
      /* private mode: the reload will ask again */
    }
  },
  remove(key) {
    try {
      sessionStorage.removeItem(key);
    } catch {
      /* ignore */
    }
  },
};

const pad = (n) => String(n).padStart(2, '0');

/** "14:02" (today) or "3 Mar 14:02". */
function clockTime(ms, now = Date.now()) {
  const d = new Date(ms);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (new Date(now).toDateString() === d.toDateString()) return hm;
  return `${d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' })} ${hm}`;
}

/** "14:02:07" for log lines. */
function logTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "12 s", "2 min", "1 h 5 min", "3 d 4 h". */
function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const days = Math.floor(h / 24);
  return h % 24 ? `${days} d ${h % 24} h` : `${days} d`;
}

function sinceText(status, now = Date.now()) {
  if (!status || typeof status.since_ms !== 'number') return 'no activity yet';
  return status.status === 'online'
    ? `online for ${duration(now - status.since_ms)}`
    : `offline since ${clockTime(status.since_ms, now)}`;
}

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const userName = (id) => dir.users.get(id)?.name ?? id;
const facilityName = (id) => dir.facilityNames.get(id) ?? id;

function setView(view) {
  document.body.dataset.view = view;
  $('loading-view').hidden = view !== 'loading';
  $('boot-error-view').hidden = view !== 'boot-error';
  $('sign-in-view').hidden = view !== 'sign-in';
  $('dashboard').hidden = view !== 'dashboard';
  $('account').hidden = view !== 'dashboard';
}

// ------------------------------------------------------------------ boot and sign-in

async function boot() {
  setView('loading');
  try {
    const [cfg, directory] = await Promise.all([requestJSON('/dev/config'), requestJSON('/dev/directory')]);
    config = cfg;
    indexDirectory(directory);
  } catch (error) {
    $('boot-error').textContent = `${error.message}. Is the local stack running?`;
    setView('boot-error');
    return;
  }
  fillUserSelect();

  const fromUrl = new URL(window.location.href).searchParams.get('user');
  const wanted = fromUrl || storage.get(USER_KEY);
  if (wanted && dir.users.has(wanted)) {
    await signIn(wanted);
  } else {
    if (wanted) storage.remove(USER_KEY);
    showSignIn(wanted ? `Unknown user "${wanted}".` : '');
  }
}

function indexDirectory(directory) {
  dir.list = directory;
  dir.regions.clear();
  dir.users.clear();
  dir.facilityNames.clear();
  for (const region of directory?.regions ?? []) {
    dir.regions.set(region.id, region);
    for (const facility of region.facilities ?? []) dir.facilityNames.set(facility.id, facility.name);
  }
  for (const user of directory?.users ?? []) dir.users.set(user.id, user);
}

function fillUserSelect() {
  const select = $('user');
  select.replaceChildren();
  const byRegion = new Map();
  for (const user of dir.users.values()) {
    if (!byRegion.has(user.region)) byRegion.set(user.region, []);
    byRegion.get(user.region).push(user);
  }
  for (const [regionId, users] of byRegion) {
    const group = el('optgroup', { label: dir.regions.get(regionId)?.name ?? regionId });
    for (const user of users) {
      group.append(el('option', { value: user.id, text: `${user.name} — ${facilityName(user.facility)}` }));
    }
    select.append(group);
  }
  $('sign-in').disabled = dir.users.size === 0;
}

function showSignIn(message = '') {
  $('sign-in-error').textContent = message;
  $('sign-in').disabled = dir.users.size === 0;
  setView('sign-in');
}

async function signIn(userId) {
  const user = dir.users.get(userId);
  if (!user) {
    showSignIn(`Unknown user "${userId}".`);
    return;
  }
  $('sign-in').disabled = true;
  $('sign-in-error').textContent = '';
  const query = new URLSearchParams({ user: user.id, facility: user.facility, region: user.region });
  const getToken = async () => {
    const body = await requestJSON(`/dev/token?${query}`);
    if (!body?.token) throw new Error('/dev/token returned no token');
    return body.token;
  };
  let token;
  try {
    token = await getToken();
  } catch (error) {
    showSignIn(`Could not sign in: ${error.message}`);
    return;
  }
  storage.set(USER_KEY, user.id);

  const region = dir.regions.get(user.region) ?? { id: user.region, name: user.region, facilities: [] };
  // `?hidden_grace_ms=`: how long the page must stay hidden before it stops taking region
  // status events (the client's default is 30 s; the end-to-end tests shorten it).
  const hiddenGraceMs = Number(new URL(window.location.href).searchParams.get('hidden_grace_ms'));
  const client = new PresenceClient({
    token,
    websocketUrl: config.websocket_url,
    heartbeatUrl: config.heartbeat_url,
    getToken,
    ...(Number.isFinite(hiddenGraceMs) && hiddenGraceMs > 0 ? { hiddenGraceMs } : {}),
  });
  session = {
    user,
    region,
    client,
    // the lobby chat (chat.js): history on joining, who is online, recovered messages
    chat: new LobbyChat({ client, group: `chat:${region.id}-lobby`, self: user.id, userName, log: addLog }),
    tiles: new Map(),
    timers: [],
    // tile timelines and the facility view (#facility/{id}); `?history_page_size=` for tests
    history: new FacilityHistory({
      api: new HistoryApi({ getToken, token }),
      board: client.board,
      facilityName,
      userName,
      view: $('facility-view'),
      boardSection: $('board'),
      pageSize: Number(new URL(window.location.href).searchParams.get('history_page_size')) || undefined,
    }),
  };
  renderDashboard(session);
  wireClient(session);
  setView('dashboard');
  client.start();
  session.history.start();
  session.history.route(window.location.hash);
  session.timers.push(setInterval(() => refreshTimes(), 1000));
  session.timers.push(setInterval(() => refreshSimulation(), SIM_POLL_MS));
  refreshSimulation();
  addLog('system', `Signed in as ${user.name} at ${facilityName(user.facility)}`);
}

async function signOut() {
  const current = session;
  if (!current) return;
  session = null; // events from the old client are ignored from here on
  $('sign-out').disabled = true;
  for (const timer of current.timers) clearInterval(timer);
  current.history.stop();
  current.chat.stop();
  try {
    await current.client.stop(); // says "ended" when this is the browser's last tab
  } finally {
    storage.remove(USER_KEY);
    const url = new URL(window.location.href);
    if (url.searchParams.has('user')) {
      url.searchParams.delete('user');
      window.history.replaceState(null, '', url);
    }
    resetDashboard();
    $('sign-out').disabled = false;
    showSignIn();
  }
}

// ------------------------------------------------------------------ dashboard

function renderDashboard(s) {
  $('whoami').replaceChildren(
    el('strong', { text: s.user.name }),
    el('span', { class: 'muted', text: ` · ${facilityName(s.user.facility)} · ${s.region.name}` }),
  );
  $('region-name').textContent = s.region.name;
  const tiles = $('tiles');
  tiles.replaceChildren();
  for (const facility of s.region.facilities ?? []) addTile(s, facility.id, facility.name);
  s.chat.start();
  setConnection({ state: 'connecting', attempt: 0 });
  $('leader').hidden = true;
  delete $('leader').dataset.via;
  updateSummary();
}

function resetDashboard() {
  $('tiles').replaceChildren();
  $('log').replaceChildren();
  resetChatView();
  $('summary').textContent = '';
  $('sim-count').textContent = '';
  $('sim-count').dataset.count = '0';
  $('sim-error').textContent = '';
  $('leader').hidden = true;
  delete $('leader').dataset.via;
  setConnection({ state: 'closed', attempt: 0 });
}

function addTile(s, id, name) {
  const tile = el(
    'li',
    { class: 'tile', dataset: { facility: id, status: 'offline', sessions: '0' } },
    el(
      'div',
      { class: 'tile-head' },
      // the link covers the whole tile: a click anywhere opens the facility view
      el('h2', { class: 'tile-name' }, el('a', { class: 'tile-link', href: `#facility/${encodeURIComponent(id)}`, text: name })),
      id === s.user.facility ? el('span', { class: 'tile-you', text: 'You' }) : null,
    ),
    el(
      'p',
      { class: 'tile-state' },
      el('span', { class: 'tile-dot', 'aria-hidden': 'true' }),
      el('span', { class: 'tile-state-text', text: 'Offline' }),
    ),
    el(
      'p',
      { class: 'tile-meta' },
      el('span', { class: 'tile-sessions', text: plural(0, 'session') }),
      el('span', { class: 'tile-since', text: 'no activity yet' }),
    ),
  );
  tile.addEventListener('animationend', () => tile.classList.remove('changed'));
  s.tiles.set(id, tile);
  $('tiles').append(tile);
  s.history.attachTile(tile, id);
  return tile;
}

/** Shows a status on its tile (creating the tile for a facility the directory lacks). */
function showStatus(s, status, { flash = false } = {}) {
  if (status.region && status.region !== s.region.id) return false;
  const tile = s.tiles.get(status.facility_id) ?? addTile(s, status.facility_id, facilityName(status.facility_id));
  const online = status.status === 'online';
  tile.dataset.status = online ? 'online' : 'offline';
  tile.dataset.sessions = String(status.online_sessions ?? 0);
  tile.dataset.version = String(status.version);
  tile.querySelector('.tile-state-text').textContent = online ? 'Online' : 'Offline';
  tile.querySelector('.tile-sessions').textContent = plural(status.online_sessions ?? 0, 'session');
  tile.querySelector('.tile-since').textContent = sinceText(status);
  if (flash) {
    tile.classList.remove('changed');
    void tile.offsetWidth; // restart the animation
    tile.classList.add('changed');
  }
  return true;
}

function refreshTimes() {
  const s = session;
  if (!s) return;
  const now = Date.now();
  for (const [id, tile] of s.tiles) {
    tile.querySelector('.tile-since').textContent = sinceText(s.client.board.get(id), now);
  }
}

function updateSummary() {
  const s = session;
  if (!s) return;
  let online = 0;
  for (const tile of s.tiles.values()) if (tile.dataset.status === 'online') online += 1;
  $('summary').textContent = `${online} of ${s.tiles.size} online`;
}

function setConnection({ state, retry_in_ms: retryIn }) {
  const node = $('connection');
  node.dataset.state = state;
  let text = 'Offline';
  if (state === 'open') text = 'Live';
  else if (state === 'connecting') text = 'Connecting…';
  else if (typeof retryIn === 'number') text = `Reconnecting in ${Math.max(1, Math.ceil(retryIn / 1000))} s`;
  $('connection-text').textContent = text;
}

// ------------------------------------------------------------------ event log

function addLog(kind, text, at = Date.now()) {
  const log = $('log');
  log.prepend(
    el(
      'li',
      { class: 'log-entry', dataset: { kind } },
      el('time', { datetime: new Date(at).toISOString(), text: logTime(at) }),
      el('span', { class: 'log-text', text }),
    ),
  );
  while (log.children.length > LOG_LIMIT) log.lastElementChild.remove();
}

// The lobby chat is chat.js (LobbyChat).

// ------------------------------------------------------------------ client events

function wireClient(s) {
  const { client } = s;
  const on = (type, handler) =>
    client.addEventListener(type, (event) => {
      if (session === s) handler(event.detail);
    });

  on('connection', (detail) => {
    const before = $('connection').dataset.state;
    setConnection(detail);
    if (detail.state === 'open') addLog('system', 'Connected');
    else if (detail.state === 'closed' && before === 'open') addLog('system', 'Connection lost, reconnecting');
  });

  on('leader', ({ leader }) => {
    $('leader').hidden = !leader;
    addLog('system', leader ? 'This tab now sends the heartbeats' : 'This tab no longer sends the heartbeats');
  });

  on('heartbeat', ({ interval_s: interval, via }) => {
    const leader = $('leader');
    const over = via === 'http' ? 'over HTTP (the socket is not open)' : 'over the WebSocket';
    leader.title = `This tab sends the heartbeats for the whole browser, every ${interval} s, ${over}`;
    if (leader.dataset.via !== via) {
      if (leader.dataset.via) addLog('system', `Heartbeats now go ${over}`);
      leader.dataset.via = via;
    }
  });

  on('visibility', ({ visible }) => {
    addLog(
      'system',
      visible
        ? 'Visible again: live updates of every facility resumed'
        : 'Hidden for a while: only your own facility is updated live until you come back',
    );
  });

  on('snapshot', ({ applied }) => {
    for (const status of applied) showStatus(s, status);
    updateSummary();
    refreshTimes();
    s.history.redraw();
  });

  on('status', (status) => {
    if (!showStatus(s, status, { flash: true })) return;
    updateSummary();
    s.history.statusChanged(status.facility_id);
    const sessions = status.status === 'online' ? ` (${plural(status.online_sessions ?? 0, 'session')})` : '';
    addLog('status', `${facilityName(status.facility_id)} is ${status.status}${sessions}`);
  });

  on('error', (detail) => {
    const what = detail.source === 'heartbeat' && detail.status ? `heartbeat ${detail.status}` : detail.source;
    addLog('error', `${what}: ${detail.message ?? detail.code ?? 'error'}`);
  });
}

// ------------------------------------------------------------------ simulation

async function refreshSimulation() {
  const s = session;
  if (!s) return;
  try {
    const body = await requestJSON('/dev/simulation');
    if (session !== s) return;
    const count = Number(body?.regions?.[s.region.id] ?? 0);
    $('sim-count').dataset.count = String(count);
    $('sim-count').textContent = count > 0 ? `${plural(count, 'simulated user')} running` : 'No simulated users';
  } catch (error) {
    if (session === s) $('sim-count').textContent = 'Simulation unavailable';
  }
}

async function simulation(method) {
  const s = session;
  if (!s) return;
  $('sim-error').textContent = '';
  $('sim-start').disabled = true;
  $('sim-stop').disabled = true;
  try {
    if (method === 'POST') {
      const users = Math.min(500, Math.max(1, Math.round(Number($('sim-users').value) || 5)));
      $('sim-users').value = String(users);
      await requestJSON('/dev/simulation', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ region: s.region.id, users }),
      });
      addLog('system', `Started ${plural(users, 'simulated user')} in ${s.region.name}`);
    } else {
      await requestJSON(`/dev/simulation?${new URLSearchParams({ region: s.region.id })}`, { method: 'DELETE' });
      addLog('system', `Stopped the simulation in ${s.region.name}`);
    }
  } catch (error) {
    if (session === s) $('sim-error').textContent = error.message;
  } finally {
    $('sim-start').disabled = false;
    $('sim-stop').disabled = false;
    await refreshSimulation();
  }
}

// ------------------------------------------------------------------ DOM wiring

$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const userId = $('user').value;
  if (userId) signIn(userId);
});

$('sign-out').addEventListener('click', () => signOut());
window.addEventListener('hashchange', () => session?.history.route(window.location.hash));
$('boot-retry').addEventListener('click', () => boot());

$('sim-start').addEventListener('click', () => simulation('POST'));
$('sim-stop').addEventListener('click', () => simulation('DELETE'));

boot();
