/**
 * The DNS peers, each forwarding to the same stub as clawbox and logging every query (clawbox writes an audit
 * line per query, so both peers log too). Each runs as installed by default: dnsmasq is single-threaded, unbound
 * has num-threads 1, and clawbox runs its default of one worker per core (the table's notes say so), of which the
 * lead alone reads the DNS socket when its reads are batched (proxy/udp-batch.ts).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnChild } from '../lib/child.js';
import { writableLog } from '../lib/files.js';
import { DNS_STUB, DNS_ZONE } from '../lib/addresses.js';
import { waitForDns } from '../lib/dns-probe.js';
import { freePort } from '../lib/net.js';
import type { PeerContext, RunningPeer } from './types.js';

export async function startDnsmasq(ctx: PeerContext): Promise<RunningPeer> {
  const port = await freePort();
  const logFile = join(ctx.dir, 'dnsmasq.log');
  writableLog(logFile);
  const conf = join(ctx.dir, 'dnsmasq.conf');
  writeFileSync(
    conf,
    [
      `port=${port}`,
      'listen-address=127.0.0.1',
      'bind-interfaces',
      'no-resolv',
      'no-hosts',
      'no-poll',
      `server=${DNS_STUB.host}#${DNS_STUB.port}`,
      'cache-size=10000',
      'log-queries',
      `log-facility=${logFile}`,
      'log-async=100',
      `pid-file=${join(ctx.dir, 'dnsmasq.pid')}`,
      '',
    ].join('\n'),
  );
  const child = spawnChild('dnsmasq', 'dnsmasq', ['-k', `--conf-file=${conf}`]);
  await waitForDns('127.0.0.1', port, `probe.${DNS_ZONE}`, 10_000, child.exitReason);
  return { name: 'dnsmasq', child, dnsPort: port, logFile };
}

export async function startUnbound(ctx: PeerContext): Promise<RunningPeer> {
  const port = await freePort();
  const logFile = join(ctx.dir, 'unbound.log');
  writableLog(logFile);
  const conf = join(ctx.dir, 'unbound.conf');
  writeFileSync(
    conf,
    [
      'server:',
      `  interface: 127.0.0.1@${port}`,
      `  port: ${port}`,
      '  do-ip6: no',
      '  do-daemonize: no',
      '  chroot: ""',
      '  username: ""',
      `  directory: "${ctx.dir}"`,
      `  pidfile: "${join(ctx.dir, 'unbound.pid')}"`,
      `  logfile: "${logFile}"`,
      '  use-syslog: no',
      '  log-queries: yes',
      '  verbosity: 0',
      '  num-threads: 1',
      '  access-control: 127.0.0.0/8 allow',
      '  do-not-query-localhost: no',
      // No validator: the stub's zone is unsigned and there is no trust anchor offline.
      '  module-config: "iterator"',
      // .test is one of unbound's default always-NXDOMAIN zones; the bench names live there.
      '  local-zone: "test." nodefault',
      '  qname-minimisation: no',
      'remote-control:',
      '  control-enable: no',
      'forward-zone:',
      '  name: "."',
      `  forward-addr: ${DNS_STUB.host}@${DNS_STUB.port}`,
      '',
    ].join('\n'),
  );
  const child = spawnChild('unbound', 'unbound', ['-d', '-c', conf]);
  await waitForDns('127.0.0.1', port, `probe.${DNS_ZONE}`, 10_000, child.exitReason);
  return { name: 'unbound', child, dnsPort: port, logFile };
}
