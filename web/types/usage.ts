// Realistic uses of the whole public API of presence-client.js, type-checked against its
// declarations: `cd web && npx tsc --noEmit -p tsconfig.json` (never run, never emitted).
// Imported through the package's own name, so `exports`/`types` of package.json are checked
// too. A declaration missing or mistyped fails the check; each `@ts-expect-error` fails it
// when a type became too loose (e.g. `any`).
import {
  DEFAULT_HIDDEN_GRACE_MS,
  DEFAULT_INTERVAL_S,
  FacilityBoard,
  HISTORY_PAGE_LIMIT,
  PresenceClient,
  PresenceError,
  TICKER_WORKER_SOURCE,
  TOKEN_REFRESH_BEFORE_MS,
  TOKEN_REFRESH_SHARE,
  backoffDelay,
  decodeJwtPayload,
  isChatGroup,
  newSessionId,
  parseRetryAfter,
  tokenExpiry,
  tokenRefreshDelay,
  withQuery,
} from '@presence/client';
import type {
  AuthedReply,
  ClientErrorDetail,
  ConnectionState,
  FacilityStatus,
  HistoryReply,
  Json,
  MembersReply,
  MessageDetail,
  PresenceClientEventMap,
  PresenceClientOptions,
  PresenceMember,
  PresenceReply,
  RecoveredDetail,
  SentReply,
  ServerFrame,
  SnapshotReply,
  StoredMessage,
} from '@presence/client';

declare function render(status: FacilityStatus): void;
declare function show(line: string): void;

async function fetchToken(): Promise<string> {
  const response = await fetch('/dev/token?user=nurse-ann');
  const body = (await response.json()) as { token: string };
  return body.token;
}

export async function dashboard(token: string): Promise<void> {
  const options: PresenceClientOptions = {
    token,
    websocketUrl: 'ws://127.0.0.1:3001/local',
    heartbeatUrl: '/v1/heartbeats',
    getToken: fetchToken,
    historyGroups: ['user:nurse-ann'],
    backoff: { baseMs: 500, maxMs: 30_000 },
    requestTimeoutMs: 10_000,
    hiddenGraceMs: DEFAULT_HIDDEN_GRACE_MS,
  };
  const client = new PresenceClient(options).start();

  // Facility statuses.
  client.addEventListener('status', (event) => render(event.detail));
  client.addEventListener('snapshot', ({ detail }) => {
    for (const status of detail.applied) render(status);
    const region: string = detail.region;
    const resync: boolean = detail.resync;
    show(`${region} ${resync}`);
  });
  const board: FacilityBoard = client.board;
  const held: FacilityStatus | undefined = board.get('st-olav-icu');
  const up: number = board.all().filter((s) => s.status === 'online').length;
  show(`${held?.version ?? 0} ${up} of ${board.size}`);
  const snap: SnapshotReply = await client.snapshot();
  const interval: number = snap.interval_s;

  // Chat: join, the last 50, who is online, live and recovered messages.
  const group = 'chat:trondelag-lobby';
  await client.join(group);
  const recent: HistoryReply = await client.history(group, { limit: 50 });
  const shown = new Set<number>();
  for (const m of recent.messages) {
    const stored: StoredMessage = m;
    shown.add(stored.seq);
    show(`${m.from ?? 'system'} at ${new Date(m.ts).toISOString()}: ${JSON.stringify(m.data)}`);
  }
  if (!recent.complete || recent.more) show('older messages exist');
  const page: HistoryReply = await client.history(group, { after: 10, limit: 500 });
  show(`${page.messages.length}`);

  client.addEventListener('message', (event) => {
    const message: MessageDetail = event.detail;
    if (message.seq !== undefined && shown.has(message.seq)) return;
    const from: string | null = message.from;
    const data: Json = message.data;
    const recovered: boolean = message.recovered === true;
    show(`${message.group} ${from ?? '(backend)'} ${JSON.stringify(data)} ${recovered}`);
    // @ts-expect-error the detail is typed, not any
    message.nope;
  });
  client.addEventListener('recovered', (event) => {
    const detail: RecoveredDetail = event.detail;
    const count: number = detail.count;
    const complete: boolean = detail.complete;
    show(`${detail.group}: ${count} recovered after ${detail.after}${complete ? '' : ' (some were dropped)'}; now ${detail.last_seq}`);
  });

  const who: PresenceReply = await client.presence(group);
  const online = new Map<string, number>(who.members.map((m: PresenceMember) => [m.user, m.devices]));
  client.addEventListener('member.online', ({ detail }) => online.set(detail.user, 1));
  client.addEventListener('member.offline', ({ detail }) => online.delete(detail.user));
  client.addEventListener('member.joined', ({ detail }) => online.set(detail.user, online.get(detail.user) ?? 1));
  client.addEventListener('member.left', ({ detail }) => online.delete(detail.user));
  client.addEventListener('joined', ({ detail }) => show(`joined ${detail.group}`));
  client.addEventListener('left', ({ detail }) => show(`left ${detail.group}`));

  const sent: SentReply = await client.send(group, { text: 'hello' }, { others: true });
  const seq: number | undefined = sent.seq;
  const delivered: number = sent.delivered;
  const members: MembersReply = await client.members(group);
  show(`${seq} ${delivered} ${members.users.join(', ')}`);

  // Recovery bookkeeping: persist the watermark, declare other groups.
  const last: number | undefined = client.lastSeq(group);
  client.track('user:nurse-ann', last ?? 0);
  client.untrack('user:nurse-ann');
  const groups: string[] = client.groups;
  const recovering: string[] = client.historyGroups;
  show(`${groups} ${recovering}`);

  // Tokens.
  client.addEventListener('token', ({ detail }) => show(`token until ${detail.exp ?? 'forever'}`));
  client.addEventListener('authed', ({ detail }) => show(`connection good until ${detail.exp}`));
  const authed: AuthedReply | null = await client.setToken(await fetchToken());
  const exp: number | null = client.tokenExp;
  show(`${authed?.exp} ${exp}`);

  // Connection, leadership, heartbeats, visibility, errors.
  client.addEventListener('connection', ({ detail }) => {
    const state: ConnectionState = detail.state;
    show(`${state} ${detail.attempt} ${detail.retry_in_ms ?? ''}`);
  });
  client.addEventListener('leader', ({ detail }) => show(`leader ${detail.leader}`));
  client.addEventListener('heartbeat', ({ detail }) => show(`${detail.via} ${detail.interval_s} ${detail.timer}`));
  client.addEventListener('visibility', ({ detail }) => show(`visible ${detail.visible}`));
  const onError = (event: PresenceClientEventMap['error']) => {
    const detail: ClientErrorDetail = event.detail;
    show(`${detail.source} ${detail.code ?? ''} ${detail.message ?? ''}`);
  };
  client.addEventListener('error', onError);
  client.removeEventListener('error', onError);
  // @ts-expect-error not an event detail of `leader`
  client.addEventListener('leader', ({ detail }) => detail.visible);

  const state: ConnectionState = client.state;
  const flags: boolean[] = [client.leader, client.running, client.reportedVisible];
  const numbers: number[] = [client.intervalS, client.tabCount, interval];
  const session: string | null = client.sessionId;
  const via: 'socket' | 'http' | null = client.heartbeatVia;
  const timer: 'worker' | 'page' | null = client.heartbeatTimer;
  show(`${state} ${flags} ${numbers} ${session} ${via} ${timer}`);

  try {
    await client.leave(group);
  } catch (error) {
    if (error instanceof PresenceError) {
      const code: string = error.code;
      const action: string | undefined = error.action;
      show(`${code} ${action}`);
    }
  }
  await client.stop();
}

export function helpers(frame: ServerFrame): void {
  const ms: number = backoffDelay(3, { baseMs: 500, maxMs: 30_000, random: Math.random });
  const wait: number | null = parseRetryAfter('5', Date.now());
  const id: string = newSessionId(crypto);
  const url: string = withQuery('/v1/heartbeats', 'token', id);
  const payload: Record<string, unknown> | null = decodeJwtPayload('a.b.c');
  const exp: number | null = tokenExpiry('a.b.c');
  const delay: number = tokenRefreshDelay(exp ?? 0, Date.now(), Date.now() - 60_000);
  const constants: number[] = [DEFAULT_INTERVAL_S, HISTORY_PAGE_LIMIT, TOKEN_REFRESH_BEFORE_MS, TOKEN_REFRESH_SHARE];
  const source: string = TICKER_WORKER_SOURCE;
  const name: string = 'chat:x';
  if (isChatGroup(name)) {
    const chat: `chat:${string}` = name;
    show(chat);
  }
  const board = new FacilityBoard();
  const applied: boolean = board.apply({
    facility_id: 'f', region: 'r', status: 'online', since_ms: 1, version: 1, online_sessions: 1,
  });
  const changed: FacilityStatus[] = board.replace(board.applySnapshot([]));
  board.clear();
  switch (frame.type) {
    case 'history':
      show(`${frame.messages.length} ${frame.more}`);
      break;
    case 'presence':
      show(frame.members.map((m) => `${m.user}×${m.devices}`).join());
      break;
    case 'message':
      show(`${frame.seq} ${frame.ts} ${frame.from}`);
      break;
    case 'authed':
      show(`${frame.exp}`);
      break;
    case 'error':
      show(frame.code);
      break;
    default:
      break;
  }
  const error = new PresenceError('timeout', 'no reply', 'history');
  show(`${ms} ${wait} ${url} ${payload} ${delay} ${constants} ${source} ${applied} ${changed} ${error.name}`);
}
