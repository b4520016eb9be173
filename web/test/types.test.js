// The declarations in presence-client.d.ts cover the whole public API of presence-client.js:
// every export, and every public member of its classes, is declared (and nothing more).
// Whether the declared types are right is checked by `cd web && npx tsc --noEmit -p tsconfig.json`
// (types/usage.ts); this test needs no packages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as client from '../presence-client.js';

const dts = readFileSync(new URL('../presence-client.d.ts', import.meta.url), 'utf8');

/** Member names declared in `export declare class NAME ... { ... }`. */
function declaredMembers(name) {
  const start = dts.indexOf(`export declare class ${name} `);
  assert.ok(start >= 0, `class ${name} is declared`);
  const body = dts.slice(dts.indexOf('{', start) + 1, dts.indexOf('\n}', start));
  const names = new Set();
  for (const line of body.split('\n')) {
    const m = line.match(/^ {2}(?:readonly )?([A-Za-z_$][\w$]*)\??[(:<]/);
    if (m && !['constructor', 'addEventListener', 'removeEventListener'].includes(m[1])) names.add(m[1]);
  }
  return [...names].sort();
}

/** Public members of a class: its prototype's, and the instance fields of `instance`. */
function actualMembers(cls, instance, inherited = []) {
  const names = new Set(Object.getOwnPropertyNames(cls.prototype).filter((n) => n !== 'constructor'));
  for (const n of Object.keys(instance)) names.add(n);
  for (const n of inherited) names.delete(n);
  return [...names].sort();
}

test('every export is declared, and every declaration exported', () => {
  const declared = [...dts.matchAll(/^export declare (?:const|function|class) ([A-Za-z_$][\w$]*)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, Object.keys(client).sort());
});

test('the members of PresenceClient, FacilityBoard and PresenceError are declared', () => {
  const instance = new client.PresenceClient({ token: 't', websocketUrl: 'ws://x/', heartbeatUrl: '/h' });
  assert.deepEqual(declaredMembers('PresenceClient'), actualMembers(client.PresenceClient, instance));
  assert.deepEqual(declaredMembers('FacilityBoard'), actualMembers(client.FacilityBoard, new client.FacilityBoard()));
  const error = new client.PresenceError('c', 'm', 'a');
  assert.deepEqual(declaredMembers('PresenceError'), [...new Set(['name', ...actualMembers(client.PresenceError, error)])].sort());
});

test('every event the client dispatches has a typed detail in PresenceClientEventMap', () => {
  const source = readFileSync(new URL('../presence-client.js', import.meta.url), 'utf8');
  const emitted = new Set([...source.matchAll(/#emit\('([\w.]+)'/g)].map((m) => m[1]));
  // Server frames forwarded as events by their own type.
  for (const type of ['member.joined', 'member.left', 'member.online', 'member.offline']) emitted.add(type);
  const map = dts.slice(dts.indexOf('export interface PresenceClientEventMap {'));
  const declared = new Set([...map.slice(0, map.indexOf('\n}')).matchAll(/^ {2}'?([\w.]+)'?: CustomEvent</gm)].map((m) => m[1]));
  assert.deepEqual([...emitted].sort(), [...declared].sort());
});
