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
  const nodeArgs = ctx.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', ctx.cpuProfileDir] : [];
  // A profile must see the work: with workers the primary only idles, so the profiled run uses one process.
  const workers = ctx.cpuProfileDir ? ['--workers', '1'] : [];
  const child = spawnChild(
    'clawbox',
    process.execPath,
    [...nodeArgs, MAIN, 'proxy', '--config', config, '--http', `127.0.0.1:${http}`, '--socks', `127.0.0.1:${socks}`,
      '--dns', `127.0.0.1:${dns}`, '--upstream-dns', hostPort(DNS_STUB), ...workers],
    { nofile: NOFILE },
  );
  await child.waitForOutput(/clawbox gateway listening/, 20_000);
  await waitForTcp('127.0.0.1', http, 5000, child.exitReason);
  return { name: 'clawbox', child, http: `127.0.0.1:${http}`, socks: `127.0.0.1:${socks}`, dnsPort: dns, logFile };
}
