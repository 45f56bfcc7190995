/** Loopback aliases, free ports and readiness checks. Nothing here ever addresses anything off this machine. */
import { createServer, connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { addLoopbackAlias } from '../../test/fixtures/upstreams.js';
import { onCleanup } from './cleanup.js';
import { progress, run } from './exec.js';

/** Adds ip/32 to lo and registers its removal (also on Ctrl-C and errors). Only 198.18.0.0/15 is accepted. */
export function loopbackAlias(ip: string): void {
  if (!/^198\.1[89]\.\d{1,3}\.\d{1,3}$/.test(ip)) throw new Error(`refusing to alias ${ip}: the bench only uses 198.18.0.0/15`);
  // Someone else's alias (a test running alongside) stays theirs: we use it, and leave it in place at the end.
  const present = run('ip', ['-o', 'addr', 'show', 'dev', 'lo'], { timeoutMs: 5000 }).stdout.includes(` ${ip}/32 `);
  if (present) {
    progress(`alias ${ip} already on lo (not ours): using it, will not remove it`);
    return;
  }
  const remove = addLoopbackAlias(ip);
  onCleanup(`alias ${ip}`, remove);
}

function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
  });
}

let nextPort = 39100;

/** A port free for TCP and UDP on 127.0.0.1, from a range nobody else in this project uses. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 500; tries += 1) {
    const port = nextPort;
    nextPort += 1;
    if ((await tcpFree(port)) && (await udpFree(port))) return port;
  }
  throw new Error('no free port in 39100-39600');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
export { sleep };

/** Resolves when host:port accepts a TCP connection, rejects after timeoutMs. */
export async function waitForTcp(host: string, port: number, timeoutMs: number, alive: () => string | null = () => null): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    const dead = alive();
    if (dead !== null) throw new Error(dead);
    if (Date.now() > until) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}
