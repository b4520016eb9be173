// Type declarations for presence-client.js (the browser client of Presence).
// Hand-written; checked by `cd web && npx tsc --noEmit -p tsconfig.json` against
// test/types-check.ts, which uses the whole API.
//
// Wire contract: docs/architecture.md "WebSocket API".

// ------------------------------------------------------------------ constants

/** Heartbeat interval used until the server tells another one, in seconds (60). */
export declare const DEFAULT_INTERVAL_S: number;
/** How long the page must stay hidden before the server is told to stop region events (30 000 ms). */
export declare const DEFAULT_HIDDEN_GRACE_MS: number;
/** Source of the dedicated worker that keeps the heartbeat clock. */
export declare const TICKER_WORKER_SOURCE: string;
/** Messages asked per `history` page while recovering after a reconnect (200). */
export declare const HISTORY_PAGE_LIMIT: number;
/** A token is refreshed this long before its `exp` at the latest (60 000 ms)... */
export declare const TOKEN_REFRESH_BEFORE_MS: number;
/** ...or once this share of its remaining life has passed (0.8), whichever is sooner. */
export declare const TOKEN_REFRESH_SHARE: number;

// ------------------------------------------------------------------ data

/** A facility's status as the server reports it (snapshot entries and `facility.status`). */
export interface FacilityStatus {
  facility_id: string;
  region: string;
  status: 'online' | 'offline';
  /** When the facility entered this status (server clock, ms). */
  since_ms: number;
  /** Grows by one per flip. */
  version: number;
  online_sessions: number;
}

/** Any JSON value (a message's `data`). */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** A stored message as `history` returns it. */
export interface StoredMessage {
  /** Per-group sequence number: starts at 1, only grows, no gaps among stored messages. */
  seq: number;
  /** Server time, ms since the epoch. */
  ts: number;
  /** The sender's user id, or null when the team's backend published it. */
  from: string | null;
  data: Json;
}

/** A member with at least one live connection. */
export interface PresenceMember {
  user: string;
  /** How many live connections (devices, tabs). */
  devices: number;
}

// ------------------------------------------------------------------ server frames

/** Every server frame: `{"type": ...}`; `ref` only on the reply to a frame that carried one. */
interface Frame<T extends string> {
  type: T;
  ref?: string | number;
}

export interface JoinedFrame extends Frame<'joined'> {
  group: string;
}
export interface LeftFrame extends Frame<'left'> {
  group: string;
}
export interface MemberFrame<T extends 'member.joined' | 'member.left' | 'member.online' | 'member.offline'>
  extends Frame<T> {
  group: string;
  user: string;
}
export type MemberJoinedFrame = MemberFrame<'member.joined'>;
export type MemberLeftFrame = MemberFrame<'member.left'>;
export type MemberOnlineFrame = MemberFrame<'member.online'>;
export type MemberOfflineFrame = MemberFrame<'member.offline'>;

export interface MessageFrame extends Frame<'message'> {
  group: string;
  /** null when the team's backend published without `from`. */
  from: string | null;
  data: Json;
  /** Absent only from servers older than message history. */
  seq?: number;
  ts?: number;
}

export interface SentReply extends Frame<'sent'> {
  group: string;
  /** Connections posted to. */
  delivered: number;
  /** The stored message's seq. */
  seq?: number;
}
export interface MembersReply extends Frame<'members'> {
  group: string;
  users: string[];
}
export interface SnapshotReply extends Frame<'snapshot'> {
  region: string;
  facilities: FacilityStatus[];
  interval_s: number;
}
export interface HistoryReply extends Frame<'history'> {
  group: string;
  /** Oldest first. */
  messages: StoredMessage[];
  /** false when retention already dropped some of the messages asked for. */
  complete: boolean;
  /** true when stored messages after the last one returned exist: ask again with its seq. */
  more: boolean;
}
export interface PresenceReply extends Frame<'presence'> {
  group: string;
  /** Sorted by user. */
  members: PresenceMember[];
}
export interface AuthedReply extends Frame<'authed'> {
  /** The token's expiry, seconds since the epoch. */
  exp: number;
}
export interface PongReply extends Frame<'pong'> {}
export interface ErrorFrame extends Frame<'error'> {
  code: string;
  message: string;
  action?: string;
}
export interface FacilityStatusFrame extends Frame<'facility.status'>, FacilityStatus {}
export interface FacilityStatusesFrame extends Frame<'facility.statuses'> {
  region: string;
  statuses: FacilityStatus[];
}
export interface ResyncFrame extends Frame<'resync'> {
  reason: string;
}

export type ServerFrame =
  | JoinedFrame
  | LeftFrame
  | MemberJoinedFrame
  | MemberLeftFrame
  | MemberOnlineFrame
  | MemberOfflineFrame
  | MessageFrame
  | SentReply
  | MembersReply
  | SnapshotReply
  | HistoryReply
  | PresenceReply
  | AuthedReply
  | PongReply
  | ErrorFrame
  | FacilityStatusFrame
  | FacilityStatusesFrame
  | ResyncFrame;

// ------------------------------------------------------------------ errors

/**
 * An error reply from the server, a timeout, or a request that could not be sent. `code` is
 * the server's (`not_member`, `bad_request`, `forbidden`, `banned`, `token_expired`,
 * `unauthorized`, ...) or the client's own: `not_connected`, `closed`, `timeout`, `bad_group`,
 * `bad_request`, `send_failed`.
 */
export declare class PresenceError extends Error {
  constructor(code: string, message: string, action?: string);
  readonly name: 'PresenceError';
  code: string;
  /** The action that failed. */
  action: string | undefined;
}

// ------------------------------------------------------------------ FacilityBoard

/** Facility statuses keyed by facility id, ordered by `version`. */
export declare class FacilityBoard {
  /** Applies one status if it is newer than what is held; true when applied. */
  apply(status: FacilityStatus): boolean;
  /** Applies every entry of a snapshot; returns the applied ones (copies). */
  applySnapshot(list: FacilityStatus[]): FacilityStatus[];
  /** A copy of the held status. */
  get(id: string): FacilityStatus | undefined;
  /** Replaces what is held with a resync snapshot, whatever its versions; returns what changed. */
  replace(list: FacilityStatus[]): FacilityStatus[];
  /** Copies of every held status. */
  all(): FacilityStatus[];
  readonly size: number;
  clear(): void;
}

// ------------------------------------------------------------------ helpers

export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  random?: () => number;
}

/** Full-jitter exponential backoff: a random whole delay in `[0, min(maxMs, baseMs * 2^attempt))`. */
export declare function backoffDelay(attempt: number, options?: BackoffOptions): number;
/** Parses an HTTP `Retry-After` header (seconds or a date): ms to wait, or null. */
export declare function parseRetryAfter(value: string | null | undefined, nowMs?: number): number | null;
/** A new session id (32 hex characters). */
export declare function newSessionId(cryptoObj?: Crypto): string;
/** Whether a group name is a chat group (`chat:NAME`) a client may join and leave. */
export declare function isChatGroup(group: unknown): group is `chat:${string}`;
/** Appends `key=value` to a URL that may already have a query. */
export declare function withQuery(url: string, key: string, value: string): string;
/** A JWT's payload, decoded without verification; null when not a JWT. */
export declare function decodeJwtPayload(token: string): Record<string, unknown> | null;
/** A JWT's `exp` (seconds since the epoch), read without verification; null when absent. */
export declare function tokenExpiry(token: string): number | null;
/**
 * Ms to wait before refreshing a token expiring at `expS`: 60 s before, or once 80 % of the
 * life it had at `sinceMs` (when received; default now) passed, whichever is sooner.
 */
export declare function tokenRefreshDelay(expS: number, nowMs?: number, sinceMs?: number): number;

// ------------------------------------------------------------------ PresenceClient

export type ConnectionState = 'connecting' | 'open' | 'closed';

/** Replacement browser APIs (tests). Each one defaults to the browser's. */
export interface PresenceClientEnv {
  WebSocket?: { new (url: string): WebSocket } | null;
  fetch?: typeof fetch | null;
  locks?: LockManager | null;
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
  BroadcastChannel?: { new (name: string): BroadcastChannel } | null;
  sendBeacon?: ((url: string, data?: BodyInit | null) => boolean) | null;
  /** Gets the `pagehide`/`pageshow`/`online` listeners (the window). */
  target?: EventTarget | null;
  /** `visibilityState`, and the `visibilitychange`/`resume` listeners. */
  document?: (EventTarget & { visibilityState?: DocumentVisibilityState | string }) | null;
  Worker?: { new (url: string | URL): Worker } | null;
  URL?: Pick<typeof URL, 'createObjectURL' | 'revokeObjectURL'> | null;
  Blob?: typeof Blob | null;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
  setInterval?: (fn: () => void, ms: number) => unknown;
  clearInterval?: (id: any) => void;
  /** The clock, ms since the epoch. */
  now?: () => number;
}

export interface PresenceClientOptions {
  /** The JWT (user, facility and region are its claims). */
  token: string;
  /** e.g. `ws://127.0.0.1:3001/local`; `?token=` is added. */
  websocketUrl: string;
  /** e.g. `/v1/heartbeats`. */
  heartbeatUrl: string;
  /** localStorage key of the browser-wide session id (`presence.session`). */
  sessionKey?: string;
  /** Web Locks name of the heartbeat leader (`presence-leader`). */
  lockName?: string;
  /** BroadcastChannel name used to count live tabs (`presence-tabs`). */
  tabsChannel?: string;
  /**
   * Fetches a fresh token for the same user: before the token expires (then sent on the open
   * socket as `auth`), at once on `token_expired`, after a heartbeat got 401, and before a
   * reconnect when the socket never opened or the token is due.
   */
  getToken?: (() => Promise<string>) | null;
  /** Groups besides the joined chat groups whose missed messages are recovered (see `track`). */
  historyGroups?: string[];
  backoff?: BackoffOptions;
  /** How long a request waits for its reply (10 000 ms). */
  requestTimeoutMs?: number;
  /** How long the page must stay hidden before the server is told (30 000 ms). */
  hiddenGraceMs?: number;
  env?: PresenceClientEnv;
}

/** `message` event detail: a live frame, or one recovered after a reconnect. */
export interface MessageDetail extends MessageFrame {
  /** true for a message recovered through `history` after a reconnect. */
  recovered?: true;
}

export interface RecoveredDetail {
  group: string;
  /** Messages delivered by this recovery (after dedupe). */
  count: number;
  /** false when retention had already dropped some of the missed messages. */
  complete: boolean;
  /** The seq the recovery asked history after. */
  after: number;
  /** The group's watermark once done (see `lastSeq`). */
  last_seq: number | null;
}

export interface SnapshotDetail {
  region: string;
  facilities: FacilityStatus[];
  /** The entries applied (with `resync`: every entry that changed). */
  applied: FacilityStatus[];
  resync: boolean;
}

export interface ConnectionDetail {
  state: ConnectionState;
  attempt: number;
  code?: number;
  reason?: string;
  retry_in_ms?: number;
}

export interface HeartbeatDetail {
  interval_s: number;
  via: 'socket' | 'http';
  timer: 'worker' | 'page' | null;
}

export interface ClientErrorDetail {
  source: 'heartbeat' | 'server' | 'websocket' | 'leader' | 'token';
  code?: string;
  message?: string;
  status?: number;
  action?: string;
  retry_in_ms?: number;
}

export interface TokenDetail {
  /** The token's expiry (seconds since the epoch), null if it has none. */
  exp: number | null;
}

export interface PresenceClientEventMap {
  status: CustomEvent<FacilityStatus>;
  snapshot: CustomEvent<SnapshotDetail>;
  message: CustomEvent<MessageDetail>;
  recovered: CustomEvent<RecoveredDetail>;
  joined: CustomEvent<JoinedFrame>;
  left: CustomEvent<LeftFrame>;
  'member.joined': CustomEvent<MemberJoinedFrame>;
  'member.left': CustomEvent<MemberLeftFrame>;
  'member.online': CustomEvent<MemberOnlineFrame>;
  'member.offline': CustomEvent<MemberOfflineFrame>;
  connection: CustomEvent<ConnectionDetail>;
  leader: CustomEvent<{ leader: boolean }>;
  heartbeat: CustomEvent<HeartbeatDetail>;
  visibility: CustomEvent<{ visible: boolean }>;
  token: CustomEvent<TokenDetail>;
  authed: CustomEvent<TokenDetail>;
  error: CustomEvent<ClientErrorDetail>;
}

export interface HistoryOptions {
  /** Only messages with a greater seq (>= 0); without it, the newest `limit`. */
  after?: number;
  /** 1..500 (server default 100). */
  limit?: number;
}

export interface SendOptions {
  /** Not back to this socket. */
  others?: boolean;
}

/** The real-time client: heartbeats (when this tab leads), a WebSocket, chat, and the facility board. */
export declare class PresenceClient extends EventTarget {
  constructor(options: PresenceClientOptions);

  /** Facility statuses of the user's region, version-ordered. */
  readonly board: FacilityBoard;

  /** Whether this tab sends the heartbeats. */
  readonly leader: boolean;
  readonly state: ConnectionState;
  /** Between start() and stop(). */
  readonly running: boolean;
  /** The browser-wide session id, once one exists. */
  readonly sessionId: string | null;
  /** The heartbeat interval last told by the server, in seconds. */
  readonly intervalS: number;
  readonly heartbeatVia: 'socket' | 'http' | null;
  readonly heartbeatTimer: 'worker' | 'page' | null;
  /** false once the server was told this page is hidden. */
  readonly reportedVisible: boolean;
  /** The chat groups this tab is in (or asked to join). */
  readonly groups: string[];
  /** Live tabs of this browser that run a client, this one included. */
  readonly tabCount: number;
  /** The current token's `exp` (seconds since the epoch), if it has one. */
  readonly tokenExp: number | null;
  /** The groups recovered after a reconnect: joined chat groups and declared ones. */
  readonly historyGroups: string[];

  start(): this;
  /** Stops for good (sign-out); says `ended` when this is the browser's last tab. */
  stop(): Promise<void>;

  join(group: string): Promise<JoinedFrame>;
  leave(group: string): Promise<LeftFrame>;
  send(group: string, data: unknown, options?: SendOptions): Promise<SentReply>;
  members(group: string): Promise<MembersReply>;
  snapshot(): Promise<SnapshotReply>;
  /** Stored messages: after a seq, or the newest `limit`. */
  history(group: string, options?: HistoryOptions): Promise<HistoryReply>;
  /** Who of the group's members is online, with their device counts. */
  presence(group: string): Promise<PresenceReply>;
  /** Uses a fresh token now (auth on the open socket); null when no socket is open. */
  setToken(token: string): Promise<AuthedReply | null>;
  /** Declares a group to recover after reconnects, optionally from `lastSeq`. */
  track(group: string, lastSeq?: number): void;
  untrack(group: string): void;
  /** The seq up to which the group's messages were all delivered, if known. */
  lastSeq(group: string): number | undefined;

  addEventListener<K extends keyof PresenceClientEventMap>(
    type: K,
    listener: (this: PresenceClient, event: PresenceClientEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof PresenceClientEventMap>(
    type: K,
    listener: (this: PresenceClient, event: PresenceClientEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
