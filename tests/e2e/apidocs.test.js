// The API documents, kept honest: docs/api/openapi.yaml (HTTP) and docs/api/asyncapi.yaml
// (WebSocket) against the real local stack.
//
// - Both documents are valid (OpenAPI 3.1, AsyncAPI 3.0) and every schema in them compiles.
// - Real HTTP requests: every answer's status must be documented for its operation, its body
//   must validate against the schema documented for that status, its required headers must be
//   there.
// - Real WebSockets: every frame the server sends must match exactly one documented server
//   message (by `type`) and validate against it; every frame the test sends must validate
//   against its documented client action (and the invalid ones must not).
//
// Schemas are closed (`additionalProperties: false`), so an undocumented field fails too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import AjvDraft7 from 'ajv';
import addFormats from 'ajv-formats';
import YAML from 'yaml';
import { Validator as OpenApiValidator } from '@seriousme/openapi-schema-validator';
import { launchBrowser, redisCommand, repo, startStack } from './support.js';

const require = createRequire(import.meta.url);
const OPENAPI_FILE = path.join(repo, 'docs', 'api', 'openapi.yaml');
const ASYNCAPI_FILE = path.join(repo, 'docs', 'api', 'asyncapi.yaml');
const openapi = YAML.parse(fs.readFileSync(OPENAPI_FILE, 'utf8'));
const asyncapi = YAML.parse(fs.readFileSync(ASYNCAPI_FILE, 'utf8'));

const REGION = 'apidocs';
const OTHER_REGION = 'apidocs-elsewhere';
const STATUS_REGION = 'apidocs-status';
const COALESCE_MS = 2_000;
const ADMIN_KEY = 'presence-local-admin-key';
const GRACE_S = 1;

// ---------------------------------------------------------------------------------------------
// Schemas: both documents' components, compiled by one strict Ajv (JSON Schema 2020-12).
// ---------------------------------------------------------------------------------------------

const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);

/** A deep copy of `value` with its `#/components/schemas/` refs pointing into `base`. */
function rebase(value, base) {
  return JSON.parse(JSON.stringify(value), (key, v) =>
    key === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')
      ? `${base}#/$defs/${v.slice('#/components/schemas/'.length)}`
      : v,
  );
}
ajv.addSchema({ $id: 'openapi', $defs: rebase(openapi.components.schemas, 'openapi') });
ajv.addSchema({ $id: 'asyncapi', $defs: rebase(asyncapi.components.schemas, 'asyncapi') });

/** Resolves a local `$ref` (`#/a/b`) of `doc`. */
function resolve(doc, node) {
  let seen = 0;
  while (node?.$ref && seen++ < 10) {
    node = node.$ref.slice(2).split('/').reduce((n, k) => n?.[k.replaceAll('~1', '/').replaceAll('~0', '~')], doc);
  }
  assert.ok(node, 'a $ref resolves');
  return node;
}

const compiled = new Map();
function compile(schema, base) {
  const key = `${base}:${JSON.stringify(schema)}`;
  if (!compiled.has(key)) compiled.set(key, ajv.compile(rebase(schema, base)));
  return compiled.get(key);
}

function errorsOf(validate) {
  return ajv.errorsText(validate.errors, { separator: '; ' });
}

// The documented server messages by `type`, client actions by `action`.
const channelMessages = Object.entries(asyncapi.channels.socket.messages).map(([key, m]) => {
  const message = resolve(asyncapi, m);
  return { key, message, payload: resolve(asyncapi, message.payload) };
});
const serverMessages = channelMessages.filter((m) => m.payload.properties?.type?.const);
const clientMessages = channelMessages.filter((m) => m.payload.properties?.action?.const);

// ---------------------------------------------------------------------------------------------
// What was validated (printed at the end).
// ---------------------------------------------------------------------------------------------

const counts = { requestBodies: 0, invalidRequestBodies: 0, httpResponses: 0, httpByStatus: {}, serverFrames: 0, framesByType: {}, clientFrames: 0, invalidClientFrames: 0, refusedUpgrades: 0 };
/** Frames that broke the contract, with why: asserted empty at the end of each test. */
const drift = [];

// ---------------------------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------------------------

/** Validates one server frame (raw text); returns it parsed. Drift is recorded, not thrown. */
function checkServerFrame(text) {
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    drift.push(`a server frame is not JSON: ${text.slice(0, 200)}`);
    return undefined;
  }
  const matches = serverMessages.filter((m) => m.payload.properties.type.const === frame?.type);
  if (matches.length !== 1) {
    drift.push(`server frame of type ${JSON.stringify(frame?.type)} matches ${matches.length} documented messages: ${text.slice(0, 300)}`);
    return frame;
  }
  const validate = compile(matches[0].payload, 'asyncapi');
  if (!validate(frame)) {
    drift.push(`server frame ${frame.type} does not match asyncapi message ${matches[0].key}: ${errorsOf(validate)}: ${text.slice(0, 300)}`);
  }
  counts.serverFrames += 1;
  counts.framesByType[frame.type] = (counts.framesByType[frame.type] ?? 0) + 1;
  return frame;
}

/** Asserts `frame` (an object) is a documented client action, or (`valid: false`) is not. */
function checkClientFrame(frame, valid = true) {
  const fits = clientMessages.filter((m) => compile(m.payload, 'asyncapi')(frame));
  if (valid) {
    const named = clientMessages.find((m) => m.payload.properties.action.const === frame.action);
    assert.ok(named, `client action ${JSON.stringify(frame.action)} is documented`);
    const validate = compile(named.payload, 'asyncapi');
    assert.ok(validate(frame), `client frame ${JSON.stringify(frame)} fits its documented action: ${errorsOf(validate)}`);
    assert.equal(fits.length, 1, `client frame ${JSON.stringify(frame)} fits exactly one documented action`);
    counts.clientFrames += 1;
  } else {
    assert.equal(fits.length, 0, `invalid client frame ${JSON.stringify(frame)} fits no documented action (fits ${fits.map((m) => m.key)})`);
    counts.invalidClientFrames += 1;
  }
}

function assertNoDrift() {
  const found = drift.splice(0);
  assert.deepEqual(found, [], `frames that do not match docs/api/asyncapi.yaml:\n${found.join('\n')}`);
}

// The documented HTTP operations by operationId.
const operations = {};
for (const [template, item] of Object.entries(openapi.paths)) {
  for (const [method, op] of Object.entries(item)) {
    if (op?.operationId) operations[op.operationId] = { template, method: method.toUpperCase(), op };
  }
}

/**
 * Calls a documented operation and validates the answer: the status is documented for it, the
 * body validates against that status's schema, the documented required headers are there.
 * Resolves with `{status, body, headers}`.
 */
async function call(operationId, { params = {}, query, headers = {}, body, rawBody, invalidRequest = false } = {}) {
  const found = operations[operationId];
  assert.ok(found, `operation ${operationId} is documented`);
  const { template, method, op } = found;
  const requestSchema = op.requestBody && resolve(openapi, op.requestBody).content['application/json']?.schema;
  if (body !== undefined && requestSchema) {
    // the body sent fits the documented request body (or, sent invalid on purpose, does not)
    const validate = compile(requestSchema, 'openapi');
    assert.equal(validate(body), !invalidRequest, `${operationId} request ${JSON.stringify(body).slice(0, 80)}: ${invalidRequest ? 'fits the documented body' : errorsOf(validate)}`);
    counts[invalidRequest ? 'invalidRequestBodies' : 'requestBodies'] += 1;
  }
  let url = baseUrl + template.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(params[name]));
  if (query) url += `?${new URLSearchParams(query)}`;
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] ??= 'application/json';
  }
  if (rawBody !== undefined) init.body = rawBody;
  const res = await fetch(url, init);
  const text = await res.text();
  const label = `${method} ${template} → ${res.status}`;
  const documented = op.responses[String(res.status)];
  assert.ok(documented, `${label} is not documented in openapi.yaml (documented: ${Object.keys(op.responses)}): ${text.slice(0, 300)}`);
  const response = resolve(openapi, documented);
  for (const [name, h] of Object.entries(response.headers ?? {})) {
    const header = resolve(openapi, h);
    const value = res.headers.get(name);
    if (header.required) assert.ok(value !== null, `${label}: header ${name} is documented as required`);
    if (value !== null) {
      const validate = compile(header.schema, 'openapi');
      assert.ok(validate(value), `${label}: header ${name}: ${value}: ${errorsOf(validate)}`);
    }
  }
  const content = response.content ?? {};
  let parsed;
  if (Object.keys(content).length > 0) {
    const type = (res.headers.get('content-type') ?? '').split(';')[0].trim();
    assert.ok(content[type], `${label}: content-type ${type} is documented (${Object.keys(content)})`);
    parsed = JSON.parse(text);
    const validate = compile(content[type].schema, 'openapi');
    assert.ok(validate(parsed), `${label}: the body does not match openapi.yaml: ${errorsOf(validate)}: ${text.slice(0, 400)}`);
  } else {
    assert.equal(text, '', `${label}: a body where none is documented`);
  }
  counts.httpResponses += 1;
  counts.httpByStatus[`${operationId} ${res.status}`] = (counts.httpByStatus[`${operationId} ${res.status}`] ?? 0) + 1;
  return { status: res.status, body: parsed, headers: res.headers };
}

// ---------------------------------------------------------------------------------------------
// WebSockets: Node's own WebSocket where it has one (Node 22+), else one in headless Chromium.
// ---------------------------------------------------------------------------------------------

let browserPage;
let browser;
const chromiumSockets = new Map();

async function chromiumPage() {
  if (browserPage) return browserPage;
  browser = await launchBrowser();
  browserPage = await browser.newPage();
  await browserPage.exposeFunction('__apidocsEvent', (id, kind, data) => chromiumSockets.get(id)?.[kind](data));
  return browserPage;
}

let socketIds = 0;

/** One WebSocket: every frame it receives is validated on arrival. */
class Socket {
  #queue = [];
  #waiters = [];
  #refs = 0;
  closed;
  #onClose;

  static async open(url) {
    const s = new Socket();
    s.closed = new Promise((r) => (s.#onClose = r));
    await s.#connect(url);
    return s;
  }

  async #connect(url) {
    if (typeof globalThis.WebSocket === 'function') {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      this.sendText = (t) => ws.send(t);
      this.sendBurst = (t, n) => {
        for (let i = 0; i < n; i += 1) ws.send(t);
      };
      this.sendBinary = (bytes) => ws.send(bytes);
      this.close = () => ws.close();
      ws.addEventListener('message', (e) => this.#arrived(typeof e.data === 'string' ? e.data : '<binary frame>'));
      ws.addEventListener('close', (e) => this.#onClose(e.code));
      await new Promise((resolve, reject) => {
        ws.addEventListener('open', resolve, { once: true });
        ws.addEventListener('error', () => reject(new Error(`WebSocket ${url} failed`)), { once: true });
      });
      return;
    }
    const page = await chromiumPage();
    const id = ++socketIds;
    chromiumSockets.set(id, { message: (d) => this.#arrived(d), close: (code) => this.#onClose(code) });
    this.sendText = (t) => page.evaluate(([i, t]) => window.__sockets[i].send(t), [id, t]);
    this.sendBurst = (t, n) => page.evaluate(([i, t, n]) => {
      for (let k = 0; k < n; k += 1) window.__sockets[i].send(t);
    }, [id, t, n]);
    this.sendBinary = (bytes) => page.evaluate(([i, b]) => window.__sockets[i].send(new Uint8Array(b)), [id, [...bytes]]);
    this.close = () => page.evaluate((i) => window.__sockets[i].close(), id);
    await page.evaluate(
      ([i, u]) =>
        new Promise((resolve, reject) => {
          window.__sockets ??= {};
          const ws = new WebSocket(u);
          window.__sockets[i] = ws;
          ws.onopen = () => resolve();
          ws.onerror = () => reject(new Error(`WebSocket ${u} failed`));
          ws.onmessage = (e) => window.__apidocsEvent(i, 'message', typeof e.data === 'string' ? e.data : '<binary frame>');
          ws.onclose = (e) => window.__apidocsEvent(i, 'close', e.code);
        }),
      [id, url],
    );
  }

  #arrived(text) {
    const frame = checkServerFrame(text);
    if (frame === undefined) return;
    const i = this.#waiters.findIndex((w) => w.pred(frame));
    if (i >= 0) {
      const [w] = this.#waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(frame);
    } else {
      this.#queue.push(frame);
    }
  }

  /** Sends `frame` (validated as a documented client action unless told otherwise). */
  send(frame, { validateClient = true } = {}) {
    if (validateClient) checkClientFrame(frame);
    return this.sendText(JSON.stringify(frame));
  }

  /** The next frame matching `pred` (one already received and not taken, or the next to come). */
  next(pred, timeoutMs = 5_000, what = pred.toString()) {
    const i = this.#queue.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.#queue.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        reject(new Error(`no frame ${what} within ${timeoutMs} ms (unclaimed: ${JSON.stringify(this.#queue)})`));
      }, timeoutMs);
      this.#waiters.push(w);
    });
  }

  /** Sends `frame` with a fresh `ref` and resolves with the reply that echoes it. */
  async request(frame, opts) {
    const ref = `r${++this.#refs}`;
    await this.send({ ...frame, ref }, opts);
    return this.next((f) => f.ref === ref, 5_000, `with ref ${ref}`);
  }

  /** Sends raw text (for frames that are invalid on purpose) and resolves with the reply. */
  async requestRaw(text, pred = (f) => f.type === 'error') {
    await this.sendText(text);
    return this.next(pred, 5_000, `answering ${text.slice(0, 60)}`);
  }

  /** Frames received and not taken, emptied. */
  drain() {
    return this.#queue.splice(0);
  }

  /** Asserts nothing matching `pred` arrives within `ms`. */
  async nothing(pred, ms = 600) {
    await new Promise((r) => setTimeout(r, ms));
    const got = this.#queue.filter(pred);
    assert.deepEqual(got, [], 'no frame expected');
  }
}

// ---------------------------------------------------------------------------------------------
// The stack.
// ---------------------------------------------------------------------------------------------

let stack;
let baseUrl;
let wsUrl;
const sockets = [];

before(async () => {
  stack = await startStack({
    SESSION_TTL_SECONDS: '30',
    HEARTBEAT_INTERVAL_SECONDS: '2',
    DISCONNECT_GRACE_SECONDS: String(GRACE_S),
    LOSS_HOLD_SECONDS: '1',
    ROLLUP_SCHEDULE_SECONDS: '1',
    EXPIRY_SCHEDULE_SECONDS: '2',
    TOKEN_EXPIRY_GRACE_SECONDS: '30',
    ADMIN_API_KEY: ADMIN_KEY,
    STATUS_COALESCE_MS: String(COALESCE_MS),
  });
  baseUrl = stack.url;
  wsUrl = (await (await fetch(`${baseUrl}/dev/config`)).json()).websocket_url;
  console.log(`WebSocket client: ${typeof globalThis.WebSocket === 'function' ? "Node's own" : 'headless Chromium'}`);
  assertNoDrift();
});

after(async () => {
  for (const s of sockets) await Promise.resolve(s.close()).catch(() => {});
  await browser?.close();
  stack?.child.kill('SIGINT');
  console.log(`validated against docs/api: ${JSON.stringify(counts, null, 1)}`);
});

/** A token of `user` at `facility` in `region` from the local stack (`/dev/token`). */
async function token(user, facility, region = REGION, extra = {}) {
  const q = new URLSearchParams({ user, facility, region, ...extra });
  const r = await fetch(`${baseUrl}/dev/token?${q}`);
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()).token;
}

/** An open socket of `user` (at `facility`), optionally carrying `sessionId`. */
async function connect(user, facility, { sessionId, region = REGION, tokenParams } = {}) {
  const q = new URLSearchParams({ token: await token(user, facility, region, tokenParams) });
  if (sessionId) q.set('session_id', sessionId);
  const s = await Socket.open(`${wsUrl}?${q}`);
  sockets.push(s);
  return s;
}

/** A WebSocket upgrade by hand: the refused `$connect`'s status and body. */
function upgrade(query) {
  const u = new URL(`${wsUrl}?${query}`);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': crypto.randomBytes(16).toString('base64'),
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body, type: res.headers['content-type'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Date.now();

/** Polls `f` until it returns a truthy value (bounded). */
async function eventually(f, what, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

// ---------------------------------------------------------------------------------------------
// The documents themselves.
// ---------------------------------------------------------------------------------------------

test('the documents are valid OpenAPI 3.1 and AsyncAPI 3.0, and every schema compiles', async () => {
  const oas = await new OpenApiValidator().validate(OPENAPI_FILE);
  assert.deepEqual(oas.errors ?? [], [], 'openapi.yaml is valid OpenAPI 3.1');
  assert.equal(oas.valid, true);

  const meta = new AjvDraft7({ strict: false, allErrors: true, validateSchema: false, addUsedSchema: false, logger: false });
  addFormats(meta);
  const validAsyncApi = meta.compile(require('@asyncapi/specs/schemas/3.0.0-without-$id.json'));
  assert.ok(validAsyncApi(asyncapi), `asyncapi.yaml is valid AsyncAPI 3.0: ${meta.errorsText(validAsyncApi.errors)}`);

  // every schema compiles under strict Ajv (an unknown keyword or type is an error)
  for (const name of Object.keys(openapi.components.schemas)) compile({ $ref: `#/components/schemas/${name}` }, 'openapi');
  for (const name of Object.keys(asyncapi.components.schemas)) compile({ $ref: `#/components/schemas/${name}` }, 'asyncapi');
  for (const { op } of Object.values(operations)) {
    for (const r of Object.values(op.responses)) {
      for (const c of Object.values(resolve(openapi, r).content ?? {})) compile(c.schema, 'openapi');
    }
  }

  // one documented message per server `type`, one per client `action`
  const types = serverMessages.map((m) => m.payload.properties.type.const);
  assert.equal(new Set(types).size, types.length, `server message types are unique: ${types}`);
  const actions = clientMessages.map((m) => m.payload.properties.action.const);
  assert.equal(new Set(actions).size, actions.length, `client actions are unique: ${actions}`);
  assert.equal(serverMessages.length + clientMessages.length, channelMessages.length, 'every message is a client action or a server frame');

  // every channel message is used by an operation, and every client action has a receive operation
  const used = new Map();
  for (const [name, op] of Object.entries(asyncapi.operations)) {
    for (const m of [...op.messages, ...(op.reply?.messages ?? [])]) {
      const key = m.$ref.split('/').pop();
      assert.ok(asyncapi.channels.socket.messages[key], `operation ${name} refers to channel message ${key}`);
      used.set(key, [...(used.get(key) ?? []), op.action]);
    }
  }
  for (const { key, payload } of channelMessages) {
    assert.ok(used.has(key), `channel message ${key} is used by an operation`);
    if (payload.properties.action) assert.ok(used.get(key).includes('receive'), `${key} is received by the server`);
  }
});

// ---------------------------------------------------------------------------------------------
// HTTP: heartbeats.
// ---------------------------------------------------------------------------------------------

test('POST /v1/heartbeats: 202, 400, 401, 413 and 429 answers are documented', async () => {
  const bearer = { authorization: `Bearer ${await token('hb-user', 'apidocs-hb', OTHER_REGION)}` };
  let r = await call('postHeartbeat', { headers: bearer, body: { session_id: 'apidocs-hb-1', state: 'active' } });
  assert.equal(r.status, 202);
  // a beacon: ?token= and text/plain
  r = await call('postHeartbeat', {
    query: { token: await token('hb-user', 'apidocs-hb', OTHER_REGION) },
    headers: { 'content-type': 'text/plain;charset=UTF-8' },
    rawBody: JSON.stringify({ session_id: 'apidocs-hb-1', state: 'ended' }),
  });
  assert.equal(r.status, 202);

  for (const rawBody of ['', 'not json', '{"session_id":"apidocs-hb-1","extra":1}', '{"session_id":"a b"}', '{"session_id":"x","state":"asleep"}']) {
    r = await call('postHeartbeat', { headers: { ...bearer, 'content-type': 'application/json' }, rawBody });
    assert.equal(r.status, 400, rawBody);
  }
  r = await call('postHeartbeat', { body: { session_id: 'apidocs-hb-1' } });
  assert.equal(r.status, 401, 'no token');
  r = await call('postHeartbeat', { headers: { authorization: 'Bearer not.a.token' }, body: { session_id: 'apidocs-hb-1' } });
  assert.equal(r.status, 401, 'a malformed token');
  r = await call('postHeartbeat', { headers: bearer, rawBody: JSON.stringify({ session_id: 'apidocs-hb-1', pad: 'x'.repeat(2000) }) });
  assert.equal(r.status, 413);

  // burst 10 per session, then 429 with Retry-After
  let limited;
  for (let i = 0; i < 30 && !limited; i += 1) {
    r = await call('postHeartbeat', { headers: bearer, body: { session_id: 'apidocs-hb-flood' } });
    if (r.status === 429) limited = r;
  }
  assert.ok(limited, 'the per-session limit answered 429');
  assert.equal(limited.headers.get('retry-after'), '1');
});

// ---------------------------------------------------------------------------------------------
// HTTP: the history read API.
// ---------------------------------------------------------------------------------------------

test('the history read API: every route answers 200 and its errors as documented', async () => {
  const user = 'reader-ann';
  const bearer = { authorization: `Bearer ${await token(user, 'apidocs-hist')}` };
  const elsewhere = { authorization: `Bearer ${await token('reader-bo', 'apidocs-far', OTHER_REGION)}` };
  const start = nowMs();
  // a session that starts and ends at apidocs-hist: two flips and one finished segment
  let r = await call('postHeartbeat', { headers: bearer, body: { session_id: 'apidocs-hist-1' } });
  assert.equal(r.status, 202);
  await sleep(300);
  r = await call('postHeartbeat', { headers: bearer, body: { session_id: 'apidocs-hist-1', state: 'ended' } });
  assert.equal(r.status, 202);
  const mid = start + 150;
  // the rollup (every second here) persists the flips and the segment
  const range = { from: String(start - 60_000), to: String(nowMs() + 60_000) };
  await eventually(async () => {
    const h = await call('getFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: bearer, query: range });
    return h.status === 200 && h.body.flips.length >= 2;
  }, 'the flips of apidocs-hist to be persisted');

  r = await call('getRegionFacilities', { params: { region: REGION }, headers: bearer });
  assert.equal(r.status, 200);
  assert.ok(r.body.facilities.some((f) => f.facility_id === 'apidocs-hist'));
  assert.equal((await call('getRegionFacilities', { params: { region: REGION }, headers: bearer, query: { page: '2' } })).status, 400);
  assert.equal((await call('getRegionFacilities', { params: { region: 'not a region' }, headers: bearer })).status, 400);
  assert.equal((await call('getRegionFacilities', { params: { region: REGION } })).status, 401);
  assert.equal((await call('getRegionFacilities', { params: { region: REGION }, headers: { authorization: 'Bearer x' } })).status, 401);
  assert.equal((await call('getRegionFacilities', { params: { region: OTHER_REGION }, headers: bearer })).status, 403);

  // history, a page at a time
  const pages = [];
  let cursor;
  do {
    r = await call('getFacilityHistory', {
      params: { facility: 'apidocs-hist' },
      headers: bearer,
      query: { ...range, limit: '1', ...(cursor ? { cursor } : {}) },
    });
    assert.equal(r.status, 200);
    pages.push(r.body);
    cursor = r.body.cursor;
  } while (cursor && pages.length < 5);
  assert.ok(pages.length >= 2, 'a limit of 1 gave several pages');
  assert.equal((await call('getFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: bearer, query: { from: range.to, to: range.from } })).status, 400);
  assert.equal((await call('getFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: bearer, query: { ...range, limit: '0' } })).status, 400);
  assert.equal((await call('getFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: bearer, query: { ...range, cursor: '%%%' } })).status, 400);
  assert.equal((await call('getFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: bearer, query: { from: range.from } })).status, 400);
  assert.equal((await call('getFacilityHistory', { params: { facility: 'apidocs-hist' }, query: range })).status, 401);
  assert.equal((await call('getFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: elsewhere, query: range })).status, 403);
  assert.equal((await call('getFacilityHistory', { params: { facility: 'apidocs-never-seen' }, headers: bearer, query: range })).status, 404);

  // who was online
  const sessions = await eventually(async () => {
    const s = await call('getFacilitySessions', { params: { facility: 'apidocs-hist' }, headers: bearer, query: { at: String(mid) } });
    return s.status === 200 && s.body.sessions.length > 0 && s;
  }, 'the finished segment of apidocs-hist-1');
  assert.equal(sessions.body.sessions[0].session_id, 'apidocs-hist-1');
  assert.equal((await call('getFacilitySessions', { params: { facility: 'apidocs-hist' }, headers: bearer })).status, 400);
  assert.equal((await call('getFacilitySessions', { params: { facility: 'apidocs-hist' }, headers: bearer, query: { at: '17' } })).status, 400);
  assert.equal((await call('getFacilitySessions', { params: { facility: 'apidocs-hist' }, headers: elsewhere, query: { at: String(mid) } })).status, 403);
  assert.equal((await call('getFacilitySessions', { params: { facility: 'apidocs-never-seen' }, headers: bearer, query: { at: String(mid) } })).status, 404);
  assert.equal((await call('getFacilitySessions', { params: { facility: 'apidocs-hist' }, query: { at: String(mid) } })).status, 401);

  // availability
  r = await call('getFacilityAvailability', { params: { facility: 'apidocs-hist' }, headers: bearer, query: range });
  assert.equal(r.status, 200);
  assert.ok(r.body.flips >= 2);
  const month = { from: range.from, to: String(Number(range.from) + 32 * 86_400_000) };
  assert.equal((await call('getFacilityAvailability', { params: { facility: 'apidocs-hist' }, headers: bearer, query: month })).status, 400);
  assert.equal((await call('getFacilityAvailability', { params: { facility: 'apidocs-hist' }, headers: bearer, query: { ...range, limit: '5' } })).status, 400);
  assert.equal((await call('getFacilityAvailability', { params: { facility: 'apidocs-hist' }, headers: elsewhere, query: range })).status, 403);
  assert.equal((await call('getFacilityAvailability', { params: { facility: 'apidocs-never-seen' }, headers: bearer, query: range })).status, 404);
  assert.equal((await call('getFacilityAvailability', { params: { facility: 'apidocs-hist' }, query: range })).status, 401);

  // the backend's reads under /v1/admin/ (IAM in AWS; the admin key stands in for it here):
  // the same answers, for any region, the one the `elsewhere` token may not read included
  const key = { 'x-presence-admin-key': ADMIN_KEY };
  r = await call('adminGetRegionFacilities', { params: { region: REGION }, headers: key });
  assert.equal(r.status, 200);
  const hist = (body) => body.facilities.find((f) => f.facility_id === 'apidocs-hist');
  assert.deepEqual(hist(r.body), hist((await call('getRegionFacilities', { params: { region: REGION }, headers: bearer })).body));
  r = await call('adminGetRegionFacilities', { params: { region: OTHER_REGION }, headers: key });
  assert.equal(r.status, 200);
  assert.equal(r.body.region, OTHER_REGION);
  r = await call('adminGetFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: key, query: { ...range, limit: '1' } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, pages[0]);
  r = await call('adminGetFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: key, query: { ...range, limit: '1', cursor: r.body.cursor } });
  assert.deepEqual(r.body, pages[1]);
  r = await call('adminGetFacilitySessions', { params: { facility: 'apidocs-hist' }, headers: key, query: { at: String(mid) } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, sessions.body);
  r = await call('adminGetFacilityAvailability', { params: { facility: 'apidocs-hist' }, headers: key, query: range });
  assert.equal(r.status, 200);
  assert.ok(r.body.flips >= 2);
  // the same validation
  assert.equal((await call('adminGetRegionFacilities', { params: { region: REGION }, headers: key, query: { page: '2' } })).status, 400);
  assert.equal((await call('adminGetRegionFacilities', { params: { region: 'not a region' }, headers: key })).status, 400);
  assert.equal((await call('adminGetFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: key, query: { from: range.to, to: range.from } })).status, 400);
  assert.equal((await call('adminGetFacilityHistory', { params: { facility: 'apidocs-hist' }, headers: key, query: { ...range, cursor: '%%%' } })).status, 400);
  assert.equal((await call('adminGetFacilitySessions', { params: { facility: 'apidocs-hist' }, headers: key })).status, 400);
  assert.equal((await call('adminGetFacilityAvailability', { params: { facility: 'apidocs-hist' }, headers: key, query: month })).status, 400);
  assert.equal((await call('adminGetFacilityHistory', { params: { facility: 'apidocs-never-seen' }, headers: key, query: range })).status, 404);
  assert.equal((await call('adminGetFacilitySessions', { params: { facility: 'apidocs-never-seen' }, headers: key, query: { at: String(mid) } })).status, 404);
  assert.equal((await call('adminGetFacilityAvailability', { params: { facility: 'apidocs-never-seen' }, headers: key, query: range })).status, 404);
  // without the key, with a wrong one, or with only a user's token: 401
  for (const headers of [{}, { 'x-presence-admin-key': 'wrong-admin-key' }, bearer, elsewhere]) {
    r = await call('adminGetFacilityHistory', { params: { facility: 'apidocs-hist' }, headers, query: range });
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.equal(r.body.error.code, 'unauthorized');
  }
  assert.equal((await call('adminGetRegionFacilities', { params: { region: REGION }, headers: bearer })).status, 401);
  assert.equal((await call('adminGetFacilitySessions', { params: { facility: 'apidocs-hist' }, headers: elsewhere, query: { at: String(mid) } })).status, 401);
  assert.equal((await call('adminGetFacilityAvailability', { params: { facility: 'apidocs-hist' }, query: range })).status, 401);
  // and the key opens nothing on the user routes
  assert.equal((await call('getRegionFacilities', { params: { region: REGION }, headers: key })).status, 401);
  assertNoDrift();
});

// ---------------------------------------------------------------------------------------------
// WebSocket: $connect.
// ---------------------------------------------------------------------------------------------

test('$connect: a refused upgrade answers a documented status and body', async () => {
  const refusals = asyncapi.channels.socket['x-connect-refusals'];
  const cases = [
    ['', 401],
    [`token=${encodeURIComponent('not.a.jwt')}`, 401],
    [`token=${await token('conn-ann', 'apidocs-conn')}&session_id=${encodeURIComponent('a b')}`, 400],
  ];
  for (const [query, expected] of cases) {
    const r = await upgrade(query);
    assert.equal(r.status, expected, `?${query.slice(0, 40)}: ${r.body}`);
    const documented = refusals[String(r.status)];
    assert.ok(documented, `a refused $connect answered ${r.status}, not documented in x-connect-refusals`);
    assert.match(r.type ?? '', /^application\/json/);
    const validate = compile(documented.payload, 'asyncapi');
    assert.ok(validate(JSON.parse(r.body)), `refused $connect ${r.status}: ${errorsOf(validate)}: ${r.body}`);
    counts.refusedUpgrades += 1;
  }
  // the documented query binding
  const query = compile(asyncapi.channels.socket.bindings.ws.query, 'asyncapi');
  assert.ok(query({ token: 't', session_id: 'apidocs-s' }));
  assert.ok(!query({ session_id: 'apidocs-s' }), 'token is required');
  const ok = await upgrade(`token=${await token('conn-ann', 'apidocs-conn')}&session_id=apidocs-conn-1`);
  assert.equal(ok.status, 101);
});

// ---------------------------------------------------------------------------------------------
// WebSocket: every client action, its replies and the events it causes.
// ---------------------------------------------------------------------------------------------

test('every client action is answered with documented frames', async () => {
  const annA = await connect('ws-ann', 'apidocs-wa', { sessionId: 'apidocs-ws-ann' });
  const annB = await connect('ws-ann', 'apidocs-wa');
  const bo = await connect('ws-bo', 'apidocs-wb');
  const group = 'chat:apidocs-room';

  let r = await annA.request({ action: 'ping' });
  assert.equal(r.type, 'pong');
  await annA.send({ action: 'ping', ref: 7 });
  assert.equal((await annA.next((f) => f.type === 'pong' && f.ref === 7)).ref, 7);
  await annA.send({ action: 'ping' });
  assert.deepEqual(await annA.next((f) => f.type === 'pong' && !('ref' in f)), { type: 'pong' });

  r = await annA.request({ action: 'snapshot' });
  assert.equal(r.type, 'snapshot');
  assert.equal(r.region, REGION);
  r = await annA.request({ action: 'snapshot', region: REGION });
  assert.equal(r.type, 'snapshot');

  r = await annA.request({ action: 'join', group });
  assert.equal(r.type, 'joined');
  await annB.next((f) => f.type === 'joined' && f.group === group && !('ref' in f));
  r = await bo.request({ action: 'join', group });
  assert.equal(r.type, 'joined');
  await annA.next((f) => f.type === 'member.joined' && f.user === 'ws-bo');
  await annB.next((f) => f.type === 'member.joined' && f.user === 'ws-bo');

  r = await annA.request({ action: 'members', group });
  assert.deepEqual(r.users, ['ws-ann', 'ws-bo']);
  r = await annA.request({ action: 'members', group: 'facility:apidocs-wa' });
  assert.equal(r.type, 'members');
  r = await annA.request({ action: 'members', group: 'user:ws-ann' });
  assert.equal(r.type, 'members');
  r = await annA.request({ action: 'members', group: `region:${REGION}` });
  assert.equal(r.type, 'members');

  r = await annA.request({ action: 'send', group, data: { text: 'hello', n: [1, 2] } });
  assert.equal(r.type, 'sent');
  for (const s of [annA, annB, bo]) await s.next((f) => f.type === 'message' && f.data?.text === 'hello');
  r = await bo.request({ action: 'send', group, data: 'just the others', others: true });
  assert.equal(r.type, 'sent');
  for (const s of [annA, annB]) await s.next((f) => f.type === 'message' && f.data === 'just the others');
  await bo.nothing((f) => f.type === 'message' && f.data === 'just the others', 300);
  r = await annA.request({ action: 'send', group: 'user:ws-ann', data: null });
  assert.equal(r.type, 'sent');

  // one-way: nothing comes back
  await annA.send({ action: 'heartbeat' });
  await annA.send({ action: 'heartbeat', session_id: 'apidocs-ws-ann', state: 'active' });
  await annA.send({ action: 'visibility', visible: false });
  await annA.send({ action: 'visibility', visible: true });
  await annA.send({ action: 'heartbeat', ref: 'hb', session_id: 'apidocs-ws-ann' });
  await annA.nothing((f) => ['error', 'pong'].includes(f.type) || f.ref === 'hb');

  r = await bo.request({ action: 'leave', group });
  assert.equal(r.type, 'left');
  await annA.next((f) => f.type === 'member.left' && f.user === 'ws-bo');
  r = await annB.request({ action: 'leave', group });
  assert.equal(r.type, 'left');
  await annA.next((f) => f.type === 'left' && f.group === group && !('ref' in f));
  r = await annA.request({ action: 'leave', group: 'chat:apidocs-never-joined' });
  assert.equal(r.type, 'left');

  // one-way, ended: the session goes offline
  await annA.send({ action: 'heartbeat', state: 'ended' });
  await annA.nothing((f) => f.type === 'error');
  assertNoDrift();
});

test('invalid frames are answered with documented errors, and the documents refuse them too', async () => {
  const s = await connect('bad-ann', 'apidocs-bad');
  const other = await connect('bad-bo', 'apidocs-bad2');
  await other.request({ action: 'join', group: 'chat:apidocs-private' });
  const invalid = async (frame, code, { action } = {}) => {
    checkClientFrame(frame, false);
    const ref = `bad${counts.invalidClientFrames}`;
    const r = await s.requestRaw(JSON.stringify({ ...frame, ref }), (f) => f.ref === ref);
    assert.equal(r.type, 'error', JSON.stringify(frame));
    assert.equal(r.code, code, `${JSON.stringify(frame)}: ${r.message}`);
    if (action) assert.equal(r.action, action);
    return r;
  };
  const unknown = await invalid({ action: 'dance' }, 'unknown_action', { action: 'dance' });
  await invalid({ action: 'x'.repeat(40) }, 'unknown_action', { action: 'x'.repeat(32) });
  await invalid({ action: 'join' }, 'bad_request', { action: 'join' });
  await invalid({ action: 'join', group: 'admin:x' }, 'bad_request', { action: 'join' });
  await invalid({ action: 'join', group: 'facility:apidocs-bad' }, 'forbidden', { action: 'join' });
  await invalid({ action: 'leave', group: 'user:bad-ann' }, 'forbidden', { action: 'leave' });
  await invalid({ action: 'send', group: 'chat:apidocs-private' }, 'bad_request', { action: 'send' });
  await invalid({ action: 'send', group: 'chat:apidocs-private', data: 1, others: 'yes' }, 'bad_request', { action: 'send' });
  await invalid({ action: 'snapshot', region: OTHER_REGION, extra: true }, 'forbidden', { action: 'snapshot' });
  await invalid({ action: 7 }, 'bad_request');
  await invalid({}, 'bad_request');

  // well-formed frames the server refuses
  let r = await s.request({ action: 'send', group: 'chat:apidocs-private', data: 'hi' });
  assert.equal(r.code, 'not_member');
  r = await s.request({ action: 'members', group: 'chat:apidocs-private' });
  assert.equal(r.code, 'not_member');
  r = await s.request({ action: 'members', group: 'facility:somewhere-else' });
  assert.equal(r.code, 'not_member');
  r = await s.request({ action: 'snapshot', region: OTHER_REGION });
  assert.equal(r.code, 'forbidden');

  // not even a frame
  for (const text of ['not json', '[1]', '"ping"', '{"action":"ping","ref":{"a":1}}', `{"action":"ping","ref":"${'x'.repeat(129)}"}`]) {
    r = await s.requestRaw(text);
    assert.equal(r.code, 'bad_request', text);
  }
  await s.sendBinary(new Uint8Array([1, 2, 3]));
  r = await s.next((f) => f.type === 'error', 5_000, 'answering a binary frame');
  assert.equal(r.code, 'bad_request');

  // one-way frames: the error is posted
  const lonely = await connect('bad-cy', 'apidocs-bad3');
  checkClientFrame({ action: 'heartbeat', ref: 'h1' });
  await lonely.sendText(JSON.stringify({ action: 'heartbeat', ref: 'h1' }));
  r = await lonely.next((f) => f.type === 'error');
  assert.equal(r.code, 'bad_request', 'a heartbeat without a session on a socket that carries none');
  checkClientFrame({ action: 'visibility', visible: 'no' }, false);
  await lonely.sendText(JSON.stringify({ action: 'visibility', visible: 'no' }));
  r = await lonely.next((f) => f.type === 'error');
  assert.equal(r.code, 'bad_request');

  // rate limit: burst 20 frames, then 10/s
  const flood = await connect('bad-dee', 'apidocs-bad4');
  await flood.sendBurst('{"action":"ping"}', 40);
  r = await flood.next((f) => f.type === 'error' && f.code === 'rate_limited');
  assert.equal(r.code, 'rate_limited');

  // the documented actions are the ones the server knows (its unknown_action message lists them)
  const listed = unknown.message.match(/expected one of (.+)$/)?.[1]?.split(', ');
  if (listed) {
    const documented = clientMessages.map((m) => m.payload.properties.action.const);
    assert.deepEqual([...listed].sort(), [...documented].sort(), 'the server knows the documented actions');
  }
  assertNoDrift();
});

// ---------------------------------------------------------------------------------------------
// WebSocket: status events.
// ---------------------------------------------------------------------------------------------

test('status events (facility.status, facility.statuses) are documented frames', async () => {
  // a region of its own: quiet, so its first status goes out at once
  const watcher = await connect('status-ann', 'apidocs-sa', { region: STATUS_REGION });
  await watcher.request({ action: 'snapshot' });
  const beat = async (facility, state = 'active') => {
    const auth = { authorization: `Bearer ${await token(`status-${facility}`, facility, STATUS_REGION)}` };
    return call('postHeartbeat', { headers: auth, body: { session_id: `apidocs-${facility}`, state } });
  };
  await beat('apidocs-s1');
  const one = await watcher.next((f) => f.type === 'facility.status' && f.facility_id === 'apidocs-s1');
  assert.equal(one.status, 'online');
  // two more within the coalescing window: gathered into one facility.statuses
  await Promise.all([beat('apidocs-s2'), beat('apidocs-s3')]);
  const many = await watcher.next(
    (f) => f.type === 'facility.statuses' || (f.type === 'facility.status' && f.facility_id !== 'apidocs-s1'),
    COALESCE_MS + 5_000,
  );
  assert.equal(many.type, 'facility.statuses', `coalesced: ${JSON.stringify(many)}`);
  // ending them: more status frames, validated on arrival
  for (const f of ['apidocs-s1', 'apidocs-s2', 'apidocs-s3']) await beat(f, 'ended');
  await watcher.next((f) => f.type.startsWith('facility.') && JSON.stringify(f).includes('"offline"'), COALESCE_MS + 5_000);
  assertNoDrift();
});

// ---------------------------------------------------------------------------------------------
// Messaging: stored messages, history, presence, tokens, the admin API.
// ---------------------------------------------------------------------------------------------

test('send stores messages: message {seq, ts} and sent {seq}', async (t) => {
  const a = await connect('seq-ann', 'apidocs-q1');
  const b = await connect('seq-bo', 'apidocs-q2');
  const group = 'chat:apidocs-seq';
  await a.request({ action: 'join', group });
  await b.request({ action: 'join', group });
  const first = await a.request({ action: 'send', group, data: 1 });
  const second = await a.request({ action: 'send', group, data: 2 });
  assert.equal(second.seq, first.seq + 1);
  const m = await b.next((f) => f.type === 'message' && f.data === 2);
  assert.equal(m.seq, second.seq);
  assert.equal(m.from, 'seq-ann');
  // data over 30 KiB as JSON, in a frame under API Gateway's 32 KiB
  const big = await a.request({ action: 'send', group, data: 'x'.repeat(31_000) });
  assert.equal(big.code, 'bad_request');
  assertNoDrift();
});

test('history: stored messages, a page at a time', async (t) => {
  const a = await connect('hist-ann', 'apidocs-h1');
  const group = 'chat:apidocs-history';
  await a.request({ action: 'join', group });
  for (const n of [1, 2, 3]) await a.request({ action: 'send', group, data: { n } });
  let r = await a.request({ action: 'history', group });
  assert.equal(r.type, 'history');
  assert.deepEqual(r.messages.map((m) => m.data.n), [1, 2, 3]);
  r = await a.request({ action: 'history', group, after: 0, limit: 2 });
  assert.equal(r.messages.length, 2);
  assert.equal(r.more, true);
  r = await a.request({ action: 'history', group, after: r.messages[1].seq, limit: 2 });
  assert.equal(r.more, false);
  r = await a.request({ action: 'history', group: 'chat:apidocs-not-mine' });
  assert.equal(r.code, 'not_member');
  for (const frame of [{ action: 'history', group, limit: 0 }, { action: 'history', group, limit: 501 }, { action: 'history', group, after: -1 }]) {
    checkClientFrame(frame, false);
    r = await a.requestRaw(JSON.stringify({ ...frame, ref: 'bad-history' }), (f) => f.ref === 'bad-history');
    assert.equal(r.code, 'bad_request', JSON.stringify(frame));
  }
  assertNoDrift();
});

test('presence, member.online and member.offline', async (t) => {
  const group = 'chat:apidocs-presence';
  const ann = await connect('pres-ann', 'apidocs-p1');
  await ann.request({ action: 'join', group });
  let bo = await connect('pres-bo', 'apidocs-p2');
  await bo.request({ action: 'join', group });
  const bo2 = await connect('pres-bo', 'apidocs-p2');
  let r = await ann.request({ action: 'presence', group });
  assert.equal(r.type, 'presence');
  assert.deepEqual(r.members, [{ user: 'pres-ann', devices: 1 }, { user: 'pres-bo', devices: 2 }]);
  r = await ann.request({ action: 'presence', group: 'chat:apidocs-not-mine' });
  assert.equal(r.code, 'not_member');
  await bo.close();
  await bo2.close();
  await ann.next((f) => f.type === 'member.offline' && f.user === 'pres-bo', (GRACE_S + 15) * 1_000);
  bo = await connect('pres-bo', 'apidocs-p2');
  await ann.next((f) => f.type === 'member.online' && f.user === 'pres-bo', 10_000);
  assertNoDrift();
});

test('auth: a fresh token, a bad one, another user\'s; token_expired after exp', async (t) => {
  const s = await connect('auth-ann', 'apidocs-a1');
  let r = await s.request({ action: 'auth', token: await token('auth-ann', 'apidocs-a1') });
  assert.equal(r.type, 'authed');
  r = await s.request({ action: 'auth', token: 'not.a.token' });
  assert.equal(r.code, 'unauthorized');
  r = await s.request({ action: 'auth', token: await token('auth-bo', 'apidocs-a1') });
  assert.equal(r.code, 'forbidden');

  const short = await connect('auth-cy', 'apidocs-a2', { tokenParams: { exp_s: '1' } });
  r = await eventually(async () => {
    const reply = await short.request({ action: 'ping' });
    return reply.type === 'error' && reply;
  }, 'token_expired', 45_000);
  assert.equal(r.code, 'token_expired');
  r = await short.request({ action: 'auth', token: await token('auth-cy', 'apidocs-a2') });
  assert.equal(r.type, 'authed');
  assert.equal((await short.request({ action: 'ping' })).type, 'pong');
  assertNoDrift();
});

test('the admin API answers as documented', async (t) => {
  const key = { 'x-presence-admin-key': ADMIN_KEY };
  const group = 'chat:apidocs-admin';
  const ann = await connect('adm-ann', 'apidocs-m1');
  await ann.request({ action: 'join', group });
  const bo = await connect('adm-bo', 'apidocs-m2');
  await bo.request({ action: 'join', group });
  await ann.next((f) => f.type === 'member.joined' && f.user === 'adm-bo');

  // the key stands in for IAM locally
  assert.equal((await call('adminPublish', { body: { group, data: 1 } })).status, 401);
  assert.equal((await call('adminPublish', { headers: { 'x-presence-admin-key': 'wrong' }, body: { group, data: 1 } })).status, 401);
  assert.equal((await call('adminGroupPresence', { params: { group } })).status, 401);

  // publish to a group, with and without a sender, and to a user
  let r = await call('adminPublish', { headers: key, body: { group, data: { by: 'backend' } } });
  assert.equal(r.status, 202);
  const m = await ann.next((f) => f.type === 'message' && f.data?.by === 'backend');
  assert.equal(m.from, null);
  assert.equal(m.seq, r.body.seq);
  r = await call('adminPublish', { headers: key, body: { group, data: 2, from: 'adm-ann' } });
  assert.equal(r.status, 202);
  assert.equal((await bo.next((f) => f.type === 'message' && f.data === 2)).from, 'adm-ann');
  r = await call('adminPublish', { headers: key, body: { user: 'adm-ann', data: 'to you' } });
  assert.equal(r.status, 202);
  await ann.next((f) => f.type === 'message' && f.group === 'user:adm-ann');
  for (const body of [{ group }, { group: 'nope', data: 1 }, { group, user: 'adm-ann', data: 1 }, { group, data: 1, extra: true }]) {
    assert.equal((await call('adminPublish', { headers: key, body, invalidRequest: true })).status, 400, JSON.stringify(body));
  }
  // data over 30 KiB as JSON (a size the schema does not express)
  assert.equal((await call('adminPublish', { headers: key, body: { group, data: 'x'.repeat(31_000) } })).status, 400);
  assert.equal((await call('adminPublish', { headers: key, rawBody: 'not json' })).status, 400);
  assert.equal((await call('adminPublish', { headers: key, body: { group, data: 'x'.repeat(70_000) } })).status, 413);

  // presence
  r = await call('adminGroupPresence', { params: { group }, headers: key });
  assert.deepEqual(r.body.members, [{ user: 'adm-ann', devices: 1 }, { user: 'adm-bo', devices: 1 }]);
  assert.equal((await call('adminGroupPresence', { params: { group: 'nope' }, headers: key })).status, 400);

  // remove, ban, lift
  r = await call('adminRemoveMember', { params: { group }, headers: key, body: { user: 'adm-bo' } });
  assert.deepEqual(r.body, { removed: true });
  await bo.next((f) => f.type === 'left' && f.group === group);
  await ann.next((f) => f.type === 'member.left' && f.user === 'adm-bo');
  r = await call('adminRemoveMember', { params: { group }, headers: key, body: { user: 'adm-bo' } });
  assert.deepEqual(r.body, { removed: false });
  assert.equal((await call('adminRemoveMember', { params: { group: 'facility:apidocs-m1' }, headers: key, body: { user: 'adm-bo' } })).status, 400);
  assert.equal((await call('adminRemoveMember', { params: { group }, headers: key, body: {}, invalidRequest: true })).status, 400);
  r = await call('adminBanMember', { params: { group }, headers: key, body: { user: 'adm-bo', seconds: 60 } });
  assert.equal(typeof r.body.banned_until_ms, 'number');
  r = await bo.request({ action: 'join', group });
  assert.equal(r.code, 'banned');
  r = await call('adminLiftBan', { params: { group, user: 'adm-bo' }, headers: key });
  assert.deepEqual(r.body, { lifted: true });
  r = await call('adminLiftBan', { params: { group, user: 'adm-bo' }, headers: key });
  assert.deepEqual(r.body, { lifted: false });
  r = await call('adminBanMember', { params: { group }, headers: key, body: { user: 'adm-bo' } });
  assert.deepEqual(r.body, { banned_until_ms: null });
  for (const body of [{}, { user: 'adm-bo', seconds: 0 }, { user: 'adm-bo', seconds: 'long' }]) {
    assert.equal((await call('adminBanMember', { params: { group }, headers: key, body, invalidRequest: true })).status, 400, JSON.stringify(body));
  }

  // disconnect
  r = await call('adminDisconnectUser', { params: { user: 'adm-bo' }, headers: key });
  assert.deepEqual(r.body, { connections: 1 });
  await bo.closed;
  r = await call('adminDisconnectUser', { params: { user: 'adm-bo' }, headers: key });
  assert.deepEqual(r.body, { connections: 0 });
  assert.equal((await call('adminDisconnectUser', { params: { user: 'a b' }, headers: key })).status, 400);

  // an unknown admin route
  const unknown = await fetch(`${baseUrl}/v1/admin/nothing`, { headers: key });
  assert.equal(unknown.status, 404);
  const validate = compile(resolve(openapi, { $ref: '#/components/responses/NotFound' }).content['application/json'].schema, 'openapi');
  assert.ok(validate(await unknown.json()), errorsOf(validate));
  assertNoDrift();
});

// ---------------------------------------------------------------------------------------------
// Last: a Redis data loss makes the server ask every socket to resync.
// ---------------------------------------------------------------------------------------------

test('resync after a Redis data loss is a documented frame', async () => {
  const s = await connect('resync-ann', 'apidocs-r1', { sessionId: 'apidocs-resync' });
  assert.equal(await redisCommand(stack.redisUrl, 'FLUSHALL'), '+OK');
  const r = await s.next((f) => f.type === 'resync', 20_000);
  assert.equal(r.reason, 'data_loss');
  await sleep(500);
  assertNoDrift();
});
