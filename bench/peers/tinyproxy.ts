/** tinyproxy 1.11 in the foreground (-d), a thread per client, logging every connection (LogLevel Connect). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnChild } from '../lib/child.js';
import { writableLog } from '../lib/files.js';
import { ECHO, HTTP, SOURCE } from '../lib/addresses.js';
import { freePort, waitForTcp } from '../lib/net.js';
import { NOFILE, type PeerContext, type RunningPeer } from './types.js';

export async function startTinyproxy(ctx: PeerContext): Promise<RunningPeer> {
  const port = await freePort();
  const logFile = join(ctx.dir, 'tinyproxy.log');
  writableLog(logFile);
  const conf = join(ctx.dir, 'tinyproxy.conf');
  writeFileSync(
    conf,
    [
      'User nobody',
      'Group nogroup',
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 600',
      `LogFile "${logFile}"`,
      'LogLevel Connect',
      // Default 100 would cap the idle scenario; one thread per client, so this is the real limit.
      'MaxClients 10000',
      'Allow 127.0.0.1',
      ...[ECHO, SOURCE, HTTP].map((a) => `ConnectPort ${a.port}`),
      'DisableViaHeader Yes',
      `PidFile "${join(ctx.dir, 'tinyproxy.pid')}"`,
      '',
    ].join('\n'),
  );
  const child = spawnChild('tinyproxy', 'tinyproxy', ['-d', '-c', conf], { nofile: NOFILE });
  await waitForTcp('127.0.0.1', port, 10_000, child.exitReason);
  return { name: 'tinyproxy', child, http: `127.0.0.1:${port}`, logFile };
}
