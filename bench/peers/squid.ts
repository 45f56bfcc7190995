/** squid 5 in the foreground (-N: one process, no kids), no cache, one access_log line per request/tunnel. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnChild } from '../lib/child.js';
import { writableLog } from '../lib/files.js';
import { DNS_STUB, ECHO, HTTP, SOURCE } from '../lib/addresses.js';
import { freePort, waitForTcp } from '../lib/net.js';
import { NOFILE, type PeerContext, type RunningPeer } from './types.js';

export async function startSquid(ctx: PeerContext): Promise<RunningPeer> {
  const port = await freePort();
  const logFile = writableLog(join(ctx.dir, 'squid-access.log'));
  writableLog(join(ctx.dir, 'squid-cache.log'));
  const conf = join(ctx.dir, 'squid.conf');
  writeFileSync(
    conf,
    [
      `http_port 127.0.0.1:${port}`,
      `acl bench_dst dst ${ECHO.host}/32 ${SOURCE.host}/32 ${HTTP.host}/32`,
      `acl bench_ports port ${ECHO.port} ${SOURCE.port} ${HTTP.port}`,
      'acl bench_src src 127.0.0.1/32',
      'http_access allow bench_src bench_dst bench_ports',
      'http_access deny all',
      `access_log stdio:${logFile}`,
      `cache_log ${join(ctx.dir, 'squid-cache.log')}`,
      'cache_store_log none',
      `pid_filename ${join(ctx.dir, 'squid.pid')}`,
      `coredump_dir ${ctx.dir}`,
      'cache deny all',
      'cache_mem 8 MB',
      `max_filedescriptors ${NOFILE}`,
      'visible_hostname clawbox-bench',
      // Targets are IP literals, so squid never asks; if it did, only our stub would hear it.
      `dns_nameservers ${DNS_STUB.host}`,
      'shutdown_lifetime 1 seconds',
      'logfile_rotate 0',
      'via off',
      'forwarded_for delete',
      '',
    ].join('\n'),
  );
  const child = spawnChild('squid', 'squid', ['-N', '-f', conf], { nofile: NOFILE });
  await waitForTcp('127.0.0.1', port, 20_000, child.exitReason);
  return { name: 'squid', child, http: `127.0.0.1:${port}`, logFile };
}
