/**
 * sandbox-runtime (npm @anthropic-ai/sandbox-runtime): its HTTP proxy (CONNECT and absolute-URI) and its SOCKS5
 * proxy, the two that filter a sandboxed process's traffic by host, in one process as its SandboxManager runs them.
 * Their `filter` hook is the host allowlist: here it allows the bench's upstreams and writes one line per decision,
 * synchronously, as clawbox's decision line. The SOCKS5 server has no listener of its own in this version (its
 * front end hands it accepted sockets), so a plain net.Server does that.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnChild } from '../lib/child.js';
import { ECHO, HTTP, SOURCE, hostPort } from '../lib/addresses.js';
import { freePort, waitForTcp } from '../lib/net.js';
import { NOFILE, type PeerContext, type RunningPeer } from './types.js';

// Written out at run time so it loads sandbox-runtime from bench/.peers, never from the project's dependencies.
const SCRIPT = `import fs from 'node:fs';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
const [dir, httpPort, socksPort, logPath, allowedList] = process.argv.slice(2);
const load = (file) => import(pathToFileURL(dir + '/dist/sandbox/' + file).href);
const { createHttpProxyServer } = await load('http-proxy.js');
const { createSocksProxyServer } = await load('socks-proxy.js');
const allowed = new Set(allowedList.split(','));
const log = fs.openSync(logPath, 'a');
const filterFor = (channel) => (port, host) => {
  const allow = allowed.has(host + ':' + port);
  fs.writeSync(log, JSON.stringify({ time: new Date().toISOString(), event: 'decision', channel, host, port, decision: allow ? 'allow' : 'deny' }) + '\\n');
  return allow;
};
const http = createHttpProxyServer({ filter: filterFor('http') });
const socks = createSocksProxyServer({ filter: filterFor('socks') });
const socksFront = net.createServer((socket) => socks.handleConnection(socket));
await new Promise((resolve) => http.listen(Number(httpPort), '127.0.0.1', resolve));
await new Promise((resolve) => socksFront.listen(Number(socksPort), '127.0.0.1', resolve));
console.log('sandbox-runtime listening on ' + httpPort + ' and ' + socksPort);
process.on('SIGTERM', () => process.exit(0));
`;

export async function startSandboxRuntime(ctx: PeerContext): Promise<RunningPeer> {
  const dir = ctx.npmPeerDirs['@anthropic-ai/sandbox-runtime'];
  if (dir === undefined) throw new Error('@anthropic-ai/sandbox-runtime is not installed');
  const [http, socks] = [await freePort(), await freePort()];
  const logFile = join(ctx.dir, 'sandbox-runtime.log');
  const script = join(ctx.dir, 'sandbox-runtime-proxies.mjs');
  writeFileSync(script, SCRIPT);
  const allowed = [ECHO, SOURCE, HTTP].map(hostPort).join(',');
  const child = spawnChild('sandbox-runtime', process.execPath, [script, dir, String(http), String(socks), logFile, allowed], { nofile: NOFILE });
  await child.waitForOutput(/sandbox-runtime listening/, 15_000);
  await waitForTcp('127.0.0.1', http, 5000, child.exitReason);
  await waitForTcp('127.0.0.1', socks, 5000, child.exitReason);
  return { name: 'sandbox-runtime', child, http: `127.0.0.1:${http}`, socks: `127.0.0.1:${socks}`, logFile };
}
