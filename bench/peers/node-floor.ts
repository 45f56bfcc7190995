/**
 * node-floor: a reference, not a product. The least a Node.js CONNECT proxy can do per connection (node:net, a
 * stream pipe each way, one log line per closed connection, one worker per core as clawbox runs) with no policy,
 * no audit before the dial, no time-outs and no SNI check. The gap between it and clawbox is what clawbox's own
 * work costs; the gap between it and squid is what Node's per-socket machinery costs.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { spawnChild } from '../lib/child.js';
import { freePort, waitForTcp } from '../lib/net.js';
import { NOFILE, type PeerContext, type RunningPeer } from './types.js';

const SCRIPT = `import cluster from 'node:cluster';
import fs from 'node:fs';
import net from 'node:net';
const [port, logPath, workers] = process.argv.slice(2);
cluster.schedulingPolicy = cluster.SCHED_NONE;
if (cluster.isPrimary) {
  for (let i = 0; i < Number(workers); i++) cluster.fork();
  let up = 0;
  cluster.on('listening', () => { if (++up === Number(workers)) console.log('node-floor listening on ' + port); });
  process.on('SIGTERM', () => { for (const w of Object.values(cluster.workers)) w.kill(); process.exit(0); });
} else {
  const log = fs.openSync(logPath, 'a');
  net.createServer({ noDelay: true }, (client) => {
    client.on('error', () => client.destroy());
    client.once('data', (head) => {
      const m = /^CONNECT ([^ :]+):([0-9]+) HTTP\\/1\\.[01]\\r\\n/.exec(head.toString('latin1'));
      if (!m) return void client.destroy();
      const upstream = net.connect({ host: m[1], port: Number(m[2]), noDelay: true }, () => {
        client.write('HTTP/1.1 200 Connection Established\\r\\n\\r\\n');
        client.pipe(upstream);
        upstream.pipe(client);
      });
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        client.destroy();
        upstream.destroy();
        fs.writeSync(log, JSON.stringify({ time: new Date().toISOString(), event: 'close', host: m[1], port: m[2], up: upstream.bytesWritten, down: upstream.bytesRead }) + '\\n');
      };
      upstream.on('error', close);
      upstream.on('close', close);
      client.on('close', close);
    });
  }).listen(Number(port), '127.0.0.1');
}
`;

export async function startNodeFloor(ctx: PeerContext): Promise<RunningPeer> {
  const port = await freePort();
  const logFile = join(ctx.dir, 'node-floor.log');
  const script = join(ctx.dir, 'node-floor.mjs');
  writeFileSync(script, SCRIPT);
  const child = spawnChild('node-floor', process.execPath, [script, String(port), logFile, String(cpus().length)], { nofile: NOFILE });
  await child.waitForOutput(/node-floor listening/, 15_000);
  await waitForTcp('127.0.0.1', port, 5000, child.exitReason);
  return { name: 'node-floor', child, http: `127.0.0.1:${port}`, logFile };
}
