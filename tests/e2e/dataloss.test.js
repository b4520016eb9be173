// End-to-end: Redis loses its data before the rollup persisted a flip. The facility is then in
// neither Redis nor DynamoDB, so no status event will ever take it offline: the rollup asks
// every socket to `resync` when the partition's hold ends, and every watching page takes a
// fresh snapshot and converges to the truth by itself, within hold + rollup period + 2 s.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, redisCommand, signIn, startStack, tileStatus } from './support.js';

const TTL_S = 3;
const HOLD_S = 3;
const ROLLUP_S = 5;

let stack;
let browser;

before(async () => {
  stack = await startStack({
    SESSION_TTL_SECONDS: String(TTL_S),
    HEARTBEAT_INTERVAL_SECONDS: '1',
    LOSS_HOLD_SECONDS: String(HOLD_S),
    ROLLUP_SCHEDULE_SECONDS: String(ROLLUP_S),
    EXPIRY_SCHEDULE_SECONDS: '30',
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  stack?.child.kill('SIGINT');
});

async function heartbeat(token, sessionId) {
  const r = await fetch(`${stack.url}/v1/heartbeats`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ session_id: sessionId, state: 'active' }),
  });
  assert.equal(r.status, 202);
}

test('after a Redis data loss every watching page shows a facility whose session never came back offline', async () => {
  const contexts = [await browser.newContext(), await browser.newContext()];
  try {
    const watchers = [await signIn(stack.url, contexts[0], 'nurse-ann'), await signIn(stack.url, contexts[1], 'lab-dee')];
    // A browser at st-olav-er heartbeats twice, then vanishes (no close, no "ended").
    const { token } = await (await fetch(`${stack.url}/dev/token?user=doctor-bo`)).json();
    await heartbeat(token, 'vanishing-tab');
    for (const page of watchers) await tileStatus(page, 'st-olav-er', 'online', 5_000);

    // Redis loses everything inside the rollup period; the session never comes back.
    const lost = Date.now();
    assert.equal(await redisCommand(stack.redisUrl, 'FLUSHALL'), '+OK');
    const bound = (HOLD_S + ROLLUP_S + 2) * 1_000;
    for (const page of watchers) {
      const offline = await tileStatus(page, 'st-olav-er', 'offline', bound + 1_000);
      const ms = offline - lost;
      console.log(`offline shown ${ms} ms after the data loss`);
      assert.ok(ms <= bound, `offline after ${ms} ms (bound ${bound} ms)`);
    }
    // The watchers' own facilities came back with their heartbeats.
    for (const [page, own] of [[watchers[0], 'st-olav-icu'], [watchers[1], 'st-olav-lab']]) {
      await tileStatus(page, own, 'online', 5_000);
    }
  } finally {
    for (const c of contexts) await c.close();
  }
});
