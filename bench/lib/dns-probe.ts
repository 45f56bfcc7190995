/** Readiness check for a DNS server: an A query for a bench name must get any answer back over UDP. */
import { createSocket } from 'node:dgram';
import { sleep } from './net.js';

function query(name: string): Buffer {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l, 'ascii')]);
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

function once(host: string, port: number, name: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const done = (answered: boolean): void => {
      clearTimeout(timer);
      socket.close();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('message', () => done(true));
    socket.once('error', () => done(false));
    socket.send(query(name), port, host);
  });
}

export async function waitForDns(host: string, port: number, name: string, timeoutMs: number, alive: () => string | null): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await once(host, port, name, 300))) {
    const dead = alive();
    if (dead !== null) throw new Error(dead);
    if (Date.now() > until) throw new Error(`no DNS answer from ${host}:${port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}
