// Shared by the end-to-end tests: the local stack as a child process, and headless Chromium.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
const bin = process.env.PRESENCE_LOCAL_BIN ?? path.join(repo, 'target', 'debug', 'presence-local');

/**
 * Starts `presence-local` on free ports with a private redis-server and `env` on top of the
 * process environment. Resolves with `{child, url, redisUrl}` once its banner is printed.
 */
export function startStack(env) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['--http-port', '0', '--ws-port', '0', '--web-dir', path.join(repo, 'web')], {
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', REDIS_URL: '', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`local stack did not start: ${out}`)), 60_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/dashboard:\s+(http:\/\/\S+?)\/\s/);
      const r = out.match(/redis:\s+(redis:\/\/\S+)\s/);
      if (m && r) {
        clearTimeout(timer);
        resolve({ child, url: m[1], redisUrl: r[1] });
      }
    });
    child.on('exit', (code) => reject(new Error(`local stack exited with ${code}: ${out}`)));
  });
}

/** Headless Debian Chromium, with the flags this machine's closed network needs. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-quic', '--disable-sync',
    ],
  });
}

/** Signs `user` in to the dashboard in `context`; resolves once its socket is open. */
export async function signIn(baseUrl, context, user) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${user}] page error:`, e.message));
  await page.goto(`${baseUrl}/?user=${user}`);
  await page.waitForSelector('#connection[data-state="open"]', { timeout: 10_000 });
  return page;
}

/** Resolves when the facility's tile shows `status`; returns the time it did. */
export async function tileStatus(page, facility, status, timeoutMs) {
  await page.waitForFunction(
    ([f, s]) => document.querySelector(`[data-facility="${f}"]`)?.dataset.status === s,
    [facility, status],
    { timeout: timeoutMs, polling: 'raf' },
  );
  return Date.now();
}

/** Sends one command to Redis (RESP over a plain socket) and resolves with the raw reply. */
export function redisCommand(redisUrl, ...args) {
  const { hostname, port } = new URL(redisUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let reply = '';
    socket.on('data', (d) => {
      reply += d;
      if (reply.endsWith('\r\n')) {
        socket.end();
        resolve(reply.trim());
      }
    });
    socket.on('error', reject);
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}
