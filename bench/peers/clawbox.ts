/** clawbox's gateway as `clawbox proxy`, from dist/ (build first), with its audit trail in a file. */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnChild } from '../lib/child.js';
import { DNS_STUB, DNS_ZONE, ECHO, HTTP, SOURCE, hostPort } from '../lib/addresses.js';
import { freePort, waitForTcp } from '../lib/net.js';
import { NOFILE, type PeerContext, type RunningPeer } from './types.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'src', 'cli', 'main.js');

export async function startClawbox(ctx: PeerContext): Promise<RunningPeer> {
  const [http, socks, dns] = [await freePort(), await freePort(), await freePort()];
  const logFile = join(ctx.dir, 'clawbox-audit.log');
  const config = join(ctx.dir, 'clawbox.yml');
  // The upstreams are on host addresses in 198.18/15: both rules need the exact IP in allowed_hosts.
  const allowed = [ECHO, SOURCE, HTTP].map((a) => `    - "${hostPort(a)}"`).concat(`    - "*.${DNS_ZONE}"`);
  writeFileSync(
    config,
    [
      'sandbox:',
      '  network_policy: deny-by-default',
      '  allowed_hosts:',
      ...allowed,
      '  logging:',
      '    level: info',
      `    audit_trail: ${logFile}`,
      '',
    ].join('\n'),
  );
  const nodeArgs = [...(ctx.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', ctx.cpuProfileDir] : []), ...(ctx.gcTrace ? ['--trace-gc-nvp'] : [])];
  // A profile must see the work: with workers the primary only idles, so the profiled run uses one process.
  // BENCH_CLAWBOX_WORKERS=N: another process model than the default, for comparisons (the table's notes say which).
  const workers = ctx.cpuProfileDir ? ['--workers', '1'] : clawboxWorkers() === null ? [] : ['--workers', String(clawboxWorkers())];
  const child = spawnChild(
    'clawbox',
    process.execPath,
    [...nodeArgs, MAIN, 'proxy', '--config', config, '--http', `127.0.0.1:${http}`, '--socks', `127.0.0.1:${socks}`,
      '--dns', `127.0.0.1:${dns}`, '--upstream-dns', hostPort(DNS_STUB), ...workers],
    { nofile: NOFILE, ...(ctx.gcTrace ? { onLine: ctx.gcTrace } : {}) },
  );
  await child.waitForOutput(/clawbox gateway listening/, 20_000);
  await waitForTcp('127.0.0.1', http, 5000, child.exitReason);
  return { name: 'clawbox', child, http: `127.0.0.1:${http}`, socks: `127.0.0.1:${socks}`, dnsPort: dns, logFile };
}

/** BENCH_CLAWBOX_WORKERS as a count, or null for clawbox's default (one worker per CPU); a bad value stops the run. */
export function clawboxWorkers(): number | null {
  const text = process.env.BENCH_CLAWBOX_WORKERS;
  if (text === undefined || text === '') return null;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`BENCH_CLAWBOX_WORKERS=${text}: expected a whole number from 1 to 64`);
  return n;
}
