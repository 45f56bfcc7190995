/** proxy-chain (npm) as a plain forward proxy, with a synchronous log line per closed connection. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnChild } from '../lib/child.js';
import { freePort, waitForTcp } from '../lib/net.js';
import { NOFILE, type PeerContext, type RunningPeer } from './types.js';

// Written out at run time so it loads proxy-chain from bench/.peers, never from the project's dependencies.
const SCRIPT = `import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
const [entry, port, logPath] = process.argv.slice(2);
const { Server } = await import(pathToFileURL(entry).href);
const log = fs.openSync(logPath, 'a');
const server = new Server({ port: Number(port), host: '127.0.0.1', prepareRequestFunction: () => ({}) });
server.on('connectionClosed', ({ connectionId, stats }) => {
  fs.writeSync(log, JSON.stringify({ time: new Date().toISOString(), event: 'close', connectionId, stats }) + '\\n');
});
await server.listen(); // v3: a promise, no callback
console.log('proxy-chain listening on ' + port);
process.on('SIGTERM', () => void server.close(true).then(() => process.exit(0)));
`;

export async function startProxyChain(ctx: PeerContext): Promise<RunningPeer> {
  const dir = ctx.npmPeerDirs['proxy-chain'];
  if (dir === undefined) throw new Error('proxy-chain is not installed');
  const entry = join(dir, (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { main: string }).main);
  const port = await freePort();
  const logFile = join(ctx.dir, 'proxy-chain.log');
  const script = join(ctx.dir, 'proxy-chain-server.mjs');
  writeFileSync(script, SCRIPT);
  const child = spawnChild('proxy-chain', process.execPath, [script, entry, String(port), logFile], { nofile: NOFILE });
  await child.waitForOutput(/proxy-chain listening/, 15_000);
  await waitForTcp('127.0.0.1', port, 5000, child.exitReason);
  return { name: 'proxy-chain', child, http: `127.0.0.1:${port}`, logFile };
}
