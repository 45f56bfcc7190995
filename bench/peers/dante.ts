/** dante's sockd in the foreground: SOCKS5 without auth, pass rules for the test IPs only, connect/disconnect logs. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnChild } from '../lib/child.js';
import { writableLog } from '../lib/files.js';
import { ECHO, SOURCE } from '../lib/addresses.js';
import { freePort, waitForTcp } from '../lib/net.js';
import { NOFILE, type PeerContext, type RunningPeer } from './types.js';

export async function startDante(ctx: PeerContext): Promise<RunningPeer> {
  const port = await freePort();
  const logFile = join(ctx.dir, 'dante.log');
  writableLog(logFile);
  const conf = join(ctx.dir, 'sockd.conf');
  // One keyword per line: sockd's parser rejects 'log:' on the same line as 'from:/to:'.
  const rule = (a: { host: string; port: number }): string =>
    `socks pass {\n  from: 127.0.0.1/32 to: ${a.host}/32 port = ${a.port}\n  command: connect\n  log: connect disconnect\n}`;
  writeFileSync(
    conf,
    [
      `logoutput: ${logFile}`,
      `internal: 127.0.0.1 port = ${port}`,
      `external: ${ECHO.host}`,
      'clientmethod: none',
      'socksmethod: none',
      'user.privileged: root',
      'user.unprivileged: nobody',
      'timeout.negotiate: 30',
      'timeout.io: 0',
      'client pass {\n  from: 127.0.0.1/32 to: 0.0.0.0/0\n  log: connect disconnect\n}',
      rule(ECHO),
      rule(SOURCE),
      '',
    ].join('\n'),
  );
  const child = spawnChild('dante', 'danted', ['-f', conf, '-p', join(ctx.dir, 'sockd.pid')], { nofile: NOFILE });
  try {
    await waitForTcp('127.0.0.1', port, 10_000, child.exitReason);
  } catch (err) {
    // sockd reports config errors only in its log, not on stderr.
    const last = readFileSync(logFile, 'utf8').trim().split('\n').at(-2) ?? '';
    throw new Error(`${err instanceof Error ? err.message : String(err)} ${last.replace(/^.*?danted\[\d+\]: /, '')}`.trim(), { cause: err });
  }
  return { name: 'dante', child, socks: `127.0.0.1:${port}`, logFile };
}
