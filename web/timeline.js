// timeline.js — a facility's status over a time range, as online/offline segments, drawn as a
// bar of positioned <span>s (with an optional time axis). The pure parts (`buildSegments`,
// `summarize`, `axisTicks`, the formatters) need no DOM and are unit-tested in Node.

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;
/** The history API's longest range (31 days). */
export const MAX_RANGE_MS = 31 * DAY_MS;

const opposite = (status) => (status === 'online' ? 'offline' : 'online');

/**
 * The segments of `[from, min(to, now))`, oldest first, adjacent ones of one status merged:
 * `[{status: 'online'|'offline'|'unknown', start, end}]`.
 *
 * - `flips`: the history API's flips of the range (`{status, since_ms, version}`), any order.
 * - `current`: the live status (`{status, since_ms, version}`) or null. It extends the history
 *   with what the rollup has not persisted yet; one older than the last flip is ignored, and one
 *   older than `from` gives the status of the whole range when there are no flips.
 * - Before the first flip of the range the status is the opposite of that flip's (a flip is a
 *   change of status). With no flip at all, the part before the current status is `unknown`.
 */
export function buildSegments({ from, to, flips = [], current = null, now = Date.now() }) {
  const end = Math.min(to, now);
  if (!(end > from)) return [];
  const points = flips
    .filter((f) => f && typeof f.since_ms === 'number' && f.since_ms < end)
    .map((f) => ({ status: f.status === 'online' ? 'online' : 'offline', at: f.since_ms, version: f.version ?? 0 }))
    .sort((a, b) => a.at - b.at || a.version - b.version);
  const known = points.length > 0;
  if (current && typeof current.since_ms === 'number' && current.since_ms < end) {
    const last = points[points.length - 1];
    const status = current.status === 'online' ? 'online' : 'offline';
    if (!last || current.since_ms > last.at || (current.since_ms === last.at && (current.version ?? 0) > last.version)) {
      if (!last || last.status !== status) points.push({ status, at: current.since_ms, version: current.version ?? 0 });
    }
  }
  let state;
  if (known) state = points[0].at > from ? opposite(points[0].status) : points[0].status;
  else if (points.length && points[0].at <= from) state = points[0].status;
  else state = 'unknown';

  const segments = [];
  const push = (status, start, stop) => {
    if (stop <= start) return;
    const prev = segments[segments.length - 1];
    if (prev && prev.status === status && prev.end === start) prev.end = stop;
    else segments.push({ status, start, end: stop });
  };
  let cursor = from;
  for (const p of points) {
    const at = Math.max(from, p.at);
    push(state, cursor, at);
    cursor = Math.max(cursor, at);
    state = p.status;
  }
  push(state, cursor, end);
  return segments;
}

/** Milliseconds online, offline and unknown in `segments`. */
export function summarize(segments) {
  const sums = { online: 0, offline: 0, unknown: 0 };
  for (const s of segments) sums[s.status] = (sums[s.status] ?? 0) + (s.end - s.start);
  return sums;
}

const pad = (n) => String(n).padStart(2, '0');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "12 s", "2 min", "1 h 5 min", "3 d 4 h". */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const days = Math.floor(h / 24);
  return h % 24 ? `${days} d ${h % 24} h` : `${days} d`;
}

/** "3 Dec 14:02:07" (local time; the date only when `withDate`). */
export function localTime(ms, { seconds = true, withDate = true } = {}) {
  const d = new Date(ms);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? `:${pad(d.getSeconds())}` : ''}`;
  return withDate ? `${d.getDate()} ${MONTHS[d.getMonth()]} ${hm}` : hm;
}

/** The value of an `<input type="datetime-local" step="1">` for `ms`, in local time. */
export function toLocalInput(ms) {
  const d = new Date(ms);
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${date}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Parses a datetime-local value ("2026-12-01T14:02" or with ":07") as local time; NaN if bad. */
export function fromLocalInput(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/.exec(String(value ?? '').trim());
  if (!m) return NaN;
  const [, y, mo, d, h, mi, s = '0', frac = '0'] = m;
  const ms = Number(frac.padEnd(3, '0'));
  return new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms).getTime();
}

/** "99.2%", "<0.1%", ">99.9%", "100%", "0%". */
export function percent(share) {
  if (!Number.isFinite(share)) return '–';
  const p = share * 100;
  if (p <= 0) return '0%';
  if (p >= 100) return '100%';
  if (p < 0.1) return '<0.1%';
  if (p > 99.9) return '>99.9%';
  return `${p.toFixed(1).replace(/\.0$/, '')}%`;
}

/** "1 h", "24 h", "7 d", "90 min": the length of a range. */
export function spanText(ms) {
  if (ms % DAY_MS === 0 && ms >= 2 * DAY_MS) return `${ms / DAY_MS} d`;
  if (ms % HOUR_MS === 0) return `${ms / HOUR_MS} h`;
  if (ms % MINUTE_MS === 0) return `${ms / MINUTE_MS} min`;
  return duration(ms);
}

const TICK_STEPS = [
  MINUTE_MS, 2 * MINUTE_MS, 5 * MINUTE_MS, 10 * MINUTE_MS, 15 * MINUTE_MS, 30 * MINUTE_MS,
  HOUR_MS, 2 * HOUR_MS, 3 * HOUR_MS, 6 * HOUR_MS, 12 * HOUR_MS, DAY_MS, 2 * DAY_MS, 7 * DAY_MS,
];

/**
 * Round local times within `[from, to]` for an axis: at most `max` of them,
 * `[{at, label}]`. Steps of a day or more fall on local midnight.
 */
export function axisTicks(from, to, max = 6) {
  const span = to - from;
  if (!(span > 0)) return [];
  const step = TICK_STEPS.find((s) => span / s <= max) ?? Math.ceil(span / max / DAY_MS) * DAY_MS;
  const ticks = [];
  let at;
  if (step >= DAY_MS) {
    const d = new Date(from);
    d.setHours(0, 0, 0, 0);
    if (d.getTime() < from) d.setDate(d.getDate() + 1);
    at = d.getTime();
    const days = step / DAY_MS;
    for (; at <= to && ticks.length < 100; ) {
      ticks.push({ at, label: localTime(at, { seconds: false, withDate: true }).replace(/ 00:00$/, '') });
      const next = new Date(at);
      next.setDate(next.getDate() + days);
      at = next.getTime();
    }
    return ticks;
  }
  // Sub-day steps: round on the local clock (offsets are whole minutes for the steps used).
  const offset = new Date(from).getTimezoneOffset() * MINUTE_MS;
  at = Math.ceil((from - offset) / step) * step + offset;
  const withDate = new Date(from).toDateString() !== new Date(to).toDateString();
  for (; at <= to && ticks.length < 100; at += step) {
    const midnight = new Date(at).getHours() === 0 && new Date(at).getMinutes() === 0;
    ticks.push({ at, label: localTime(at, { seconds: false, withDate: withDate && midnight }) });
  }
  return ticks;
}

/** A sentence for screen readers: "Last 24 h: online 2 h 5 min, offline 21 h 55 min." */
export function describe(segments, title) {
  const sums = summarize(segments);
  const parts = [];
  if (sums.online) parts.push(`online ${duration(sums.online)}`);
  if (sums.offline) parts.push(`offline ${duration(sums.offline)}`);
  if (sums.unknown) parts.push(`no data ${duration(sums.unknown)}`);
  return `${title}: ${parts.length ? parts.join(', ') : 'no data'}.`;
}

/**
 * Draws the segments of `[from, to]` into a new element (`div.timeline[role=img]`, with an
 * aria-label from `describe`). Segments are `span.timeline-seg[data-status][data-start][data-end]`
 * placed in percent of the range, so the bar fits any width; `axis` adds round local times
 * under it. `doc` is the document to create elements in.
 */
export function renderTimeline(doc, { from, to, segments, title, axis = false, maxTicks = 6 }) {
  const root = doc.createElement('div');
  root.className = axis ? 'timeline timeline-large' : 'timeline';
  root.setAttribute('role', 'img');
  root.setAttribute('aria-label', describe(segments, title));
  root.dataset.from = String(from);
  root.dataset.to = String(to);
  const track = doc.createElement('div');
  track.className = 'timeline-track';
  const span = to - from;
  for (const s of segments) {
    const seg = doc.createElement('span');
    seg.className = 'timeline-seg';
    seg.dataset.status = s.status;
    seg.dataset.start = String(s.start);
    seg.dataset.end = String(s.end);
    // a segment is at least 2 px wide (CSS), so a short one at the very end moves left to show
    seg.style.left = `min(${((s.start - from) / span) * 100}%, calc(100% - 2px))`;
    seg.style.width = `${((s.end - s.start) / span) * 100}%`;
    seg.title = `${s.status === 'unknown' ? 'no data' : s.status} ${localTime(s.start)} – ${localTime(s.end)} (${duration(s.end - s.start)})`;
    track.append(seg);
  }
  root.append(track);
  if (axis) {
    const ticks = doc.createElement('div');
    ticks.className = 'timeline-axis';
    ticks.setAttribute('aria-hidden', 'true');
    for (const t of axisTicks(from, to, maxTicks)) {
      const tick = doc.createElement('span');
      const share = (t.at - from) / span;
      // labels near the ends hang inwards, so none sticks out of the bar
      tick.className = `timeline-tick${share < 0.08 ? ' timeline-tick-start' : share > 0.92 ? ' timeline-tick-end' : ''}`;
      tick.style.left = `${share * 100}%`;
      tick.textContent = t.label;
      ticks.append(tick);
    }
    root.append(ticks);
  }
  return root;
}

/** The instant under a pointer at `clientX` over a timeline element drawn for `[from, to]`. */
export function instantAt(element, clientX, from, to) {
  const track = element.querySelector('.timeline-track') ?? element;
  const box = track.getBoundingClientRect();
  const x = Math.min(Math.max(clientX - box.left, 0), box.width);
  return Math.round(from + (box.width ? x / box.width : 0) * (to - from));
}
