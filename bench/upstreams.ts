/** Starts the C upstreams (echo, byte source, HTTP, DNS stub) on their loopback aliases. */
import { UPSTREAMS } from './build.js';
import { spawnChild, type Child } from './lib/child.js';
import { ALIASES, DNS_STUB, DNS_ZONE, ECHO, HTTP, PAYLOAD, SOURCE, hostPort } from './lib/addresses.js';
import { waitForDns } from './lib/dns-probe.js';
import { loopbackAlias, waitForTcp } from './lib/net.js';

export interface Upstreams {
  readonly echo: Child;
  readonly source: Child;
  readonly http: Child;
  readonly dns: Child;
}

export async function startUpstreams(): Promise<Upstreams> {
  for (const ip of ALIASES) loopbackAlias(ip);
  const nofile = 20000;
  const echo = spawnChild('echo upstream', UPSTREAMS, ['echo', hostPort(ECHO), String(PAYLOAD)], { nofile });
  const source = spawnChild('source upstream', UPSTREAMS, ['source', hostPort(SOURCE)], { nofile });
  const http = spawnChild('http upstream', UPSTREAMS, ['http', hostPort(HTTP)], { nofile });
  const dns = spawnChild('dns stub', UPSTREAMS, ['dns', hostPort(DNS_STUB)]);
  await waitForTcp(ECHO.host, ECHO.port, 5000, echo.exitReason);
  await waitForTcp(SOURCE.host, SOURCE.port, 5000, source.exitReason);
  await waitForTcp(HTTP.host, HTTP.port, 5000, http.exitReason);
  await waitForDns(DNS_STUB.host, DNS_STUB.port, `probe.${DNS_ZONE}`, 5000, dns.exitReason);
  return { echo, source, http, dns };
}
