/**
 * `clawbox proxy` as users run it: a separate process started from the built CLI with the seed document's
 * config (plus a gateway section and our .test/.example upstreams), its audit trail in a file, signals and all.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import { startTestDnsServer, type TestDnsServer } from '../fixtures/dns-upstream.js';
import { addLoopbackAlias, startHttpUpstream, type Upstream } from '../fixtures/upstreams.js';
import { connectTunnel, httpViaProxy, nextChunk, readAll, socks5Connect } from '../fixtures/clients.js';
import { waitUntil } from '../fixtures/wait.js';
import { GatewayControl } from '../../runner/gateway-control.js';
import { missingGatewayFlags } from '../fixtures/node-argv.js';
import { assertHelperThreadsLowered } from '../fixtures/thread-nice.js';

const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');
const SEED = readFileSync(join(import.meta.dirname, '../fixtures/seed-config.yml'), 'utf8');
const UPSTREAM_IP = '198.19.1.4';

/** The seed config with our upstream's address allowed exactly (it is an address of this host) and a trail file. */
function seedConfig(auditPath: string, extraAllowed: string[] = []): string {
  return SEED.replace(
    "    - 'data.example.com'\n",
    ["    - 'data.example.com'", `    - '${UPSTREAM_IP}'`, ...extraAllowed.map((h) => `    - '${h}'`), ''].join('\n'),
  ).replace("audit_trail: '/var/log/openclaw/sandbox-audit.log'", `audit_trail: '${auditPath}'`);
}

interface RunningCli {
  readonly child: ChildProcess;
  readonly http: AddressInfo;
  readonly socks: AddressInfo;
  readonly dns: AddressInfo;
  /** The listening line's `dns_io`. */
  readonly dnsIo: string;
  /** The listening line's `tcp_relay`. */
  readonly tcpRelay: string;
  readonly stderr: () => string;
}

async function startCli(
  configPath: string,
  dns: TestDnsServer,
  extraArgs: readonly string[] = [],
  ownGroup = false,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RunningCli> {
  const child = spawn(
    process.execPath,
    [CLI, 'proxy', '--config', configPath, '--http', '127.0.0.1:0', '--socks', '127.0.0.1:0', '--dns', '127.0.0.1:0', '--upstream-dns', `127.0.0.1:${dns.port}`, ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: ownGroup, env },
  );
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout.resume();
  for (let i = 0; i < 600 && !stderr.includes('clawbox gateway listening'); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const line = stderr.split('\n').find((l) => l.includes('clawbox gateway listening'));
  if (!line) {
    child.kill('SIGKILL');
    throw new Error(`clawbox proxy did not start: ${stderr}`);
  }
  const ready = JSON.parse(line) as { http: string; socks5: string; dns: string; dns_io: string; tcp_relay: string };
  const address = (text: string): AddressInfo => {
    const i = text.lastIndexOf(':');
    return { address: text.slice(0, i), port: Number(text.slice(i + 1)), family: 'IPv4' };
  };
  return { child, http: address(ready.http), socks: address(ready.socks5), dns: address(ready.dns), dnsIo: ready.dns_io, tcpRelay: ready.tcp_relay, stderr: () => stderr };
}

/** One client's DNS queries over UDP, one after the other, each answered NOERROR with the upstream's address. */
async function askDns(server: AddressInfo, n: number): Promise<void> {
  const socket = createSocket('udp4');
  try {
    for (let id = 1; id <= n; id++) {
      socket.send(dnsPacket.encode({ type: 'query', id, questions: [{ type: 'A', name: 'api.example.com' }] }), server.port, server.address);
      const [reply] = (await once(socket, 'message', { signal: AbortSignal.timeout(10_000) }).catch(() => {
        throw new Error(`no answer to DNS query ${id} of ${n} within 10 s (is any worker reading?)`);
      })) as [Buffer];
      const answer = dnsPacket.decode(reply);
      assert.equal(answer.id, id);
      assert.equal((answer as { rcode?: string }).rcode, 'NOERROR');
      assert.deepEqual((answer.answers ?? []).map((a) => (a.type === 'A' ? a.data : a.type)), [UPSTREAM_IP]);
    }
  } finally {
    socket.close();
  }
}

function auditLines(path: string): Array<Record<string, unknown>> {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

let dir: string;
let dns: TestDnsServer;
let upstream: Upstream;
let removeAlias: () => void;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'clawbox-cli-'));
  removeAlias = addLoopbackAlias(UPSTREAM_IP);
  upstream = await startHttpUpstream(UPSTREAM_IP, 80, 'seed-upstream');
  dns = await startTestDnsServer({
    'api.example.com': { A: [UPSTREAM_IP] },
    'data.example.com': { A: [UPSTREAM_IP] },
    'later.test': { A: [UPSTREAM_IP] },
    'evil.example': { A: [UPSTREAM_IP] },
  });
});

after(async () => {
  await upstream?.close();
  await dns?.close();
  removeAlias?.();
  if (!process.env.KEEP_TMP) rmSync(dir, { recursive: true, force: true });
});

describe('clawbox proxy with the seed config', () => {
  let cli: RunningCli;
  let auditPath: string;
  let configPath: string;

  before(async () => {
    auditPath = join(dir, 'audit', 'sandbox-audit.log');
    configPath = join(dir, 'config.yml');
    writeFileSync(configPath, seedConfig(auditPath));
    cli = await startCli(configPath, dns);
  });

  after(() => {
    cli?.child.kill('SIGKILL');
  });

  it('serves an allowed name over CONNECT, absolute-URI and SOCKS5, and refuses the rest with the rule named', async () => {
    const connect = await connectTunnel(cli.http, 'api.example.com:80');
    assert.equal(connect.status, 200);
    connect.socket.end('GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n');
    assert.match((await readAll(connect.socket)).toString(), /seed-upstream/);

    const absolute = await httpViaProxy(cli.http, 'http://data.example.com/x');
    assert.equal(absolute.status, 200);
    assert.match(absolute.body, /seed-upstream/);

    const socks = await socks5Connect(cli.socks, 'api.example.com', 80);
    assert.equal(socks.reply, 0);
    socks.socket.end('GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n');
    assert.match((await readAll(socks.socket)).toString(), /seed-upstream/);

    const denied = await httpViaProxy(cli.http, 'http://evil.example/');
    assert.equal(denied.status, 403);
    assert.equal(denied.headers['x-clawbox-rule'], 'network_policy');
    const metadata = await connectTunnel(cli.http, '0251.0376.0251.0376:80');
    assert.equal(metadata.status, 403);
    assert.equal(metadata.headers['x-clawbox-rule'], 'builtin.cloud-metadata');
    const loop = await socks5Connect(cli.socks, '127.1', 80);
    assert.equal(loop.reply, 0x02);
    loop.socket.destroy();
  });

  it('writes schema-versioned decision and close lines to logging.audit_trail', () => {
    const lines = auditLines(auditPath);
    const evil = lines.find((l) => l.host === 'evil.example');
    assert.equal(evil?.v, 1);
    assert.equal(evil?.decision, 'deny');
    assert.equal(evil?.rule, 'network_policy');
    assert.equal(evil?.channel, 'http');
    assert.equal(evil?.client, '127.0.0.1');
    assert.ok(typeof evil?.time === 'string');
    const allowed = lines.find((l) => l.host === 'api.example.com' && l.channel === 'socks5' && l.event === 'decision');
    assert.equal(allowed?.dialed, UPSTREAM_IP);
    const closed = lines.find((l) => l.event === 'close' && l.conn === allowed?.conn);
    assert.ok(typeof closed?.bytes_up === 'number' && closed.bytes_up > 0);
    assert.ok(typeof closed?.bytes_down === 'number' && closed.bytes_down > 0);
  });

  it('reloads the policy on SIGHUP and keeps the old one when the new file is bad', async () => {
    assert.equal((await httpViaProxy(cli.http, 'http://later.test/')).status, 403);
    writeFileSync(configPath, seedConfig(auditPath, ['later.test']));
    cli.child.kill('SIGHUP');
    await waitUntil(() => cli.stderr().includes('policy reloaded'), 'reload message');
    assert.equal((await httpViaProxy(cli.http, 'http://later.test/')).status, 200);

    writeFileSync(configPath, `${seedConfig(auditPath)}\n  bogus_key: 1\n`);
    cli.child.kill('SIGHUP');
    await waitUntil(() => cli.stderr().includes('reload failed'), 'reload failure message');
    assert.match(cli.stderr(), /sandbox\.bogus_key \(line \d+\): unknown key/);
    assert.equal((await httpViaProxy(cli.http, 'http://later.test/')).status, 200, 'old policy kept');
  });

  it('loses no audit line when killed with SIGKILL right after a request', async () => {
    const reply = await httpViaProxy(cli.http, 'http://evil.example/last-words');
    assert.equal(reply.status, 403);
    cli.child.kill('SIGKILL');
    await once(cli.child, 'exit');
    const lines = auditLines(auditPath);
    const last = lines.filter((l) => l.host === 'evil.example');
    assert.equal(last.length, 2, 'both denials of evil.example are in the file');
  });
});

describe('clawbox proxy --workers 2', () => {
  let cli: RunningCli;
  let auditPath: string;
  let configPath: string;
  let controlPath: string;

  before(async () => {
    auditPath = join(dir, 'workers', 'audit.log');
    configPath = join(dir, 'workers.yml');
    controlPath = join(dir, 'workers-control.sock');
    writeFileSync(configPath, seedConfig(auditPath));
    // Configured ports, as deployments have them (the tests of who accepts below use port 0, which the primary picks).
    cli = await startCli(configPath, dns, ['--workers', '2', '--control', controlPath, ...(await fixedPorts())]);
  });

  after(() => {
    cli?.child.kill('SIGKILL');
  });

  /** Many requests at once, so that both workers take some (the lead hands some over, then both accept). */
  const burst = (url: string, n = 24): Promise<number[]> =>
    Promise.all(Array.from({ length: n }, () => httpViaProxy(cli.http, url).then((r) => r.status)));

  it('runs two worker processes behind one listening line', () => {
    const lines = cli.stderr().split('\n').filter((l) => l.includes('clawbox gateway listening'));
    assert.equal(lines.length, 1);
    assert.equal((JSON.parse(lines[0]) as { workers: number }).workers, 2);
    assert.equal(cli.dnsIo, 'batched', 'DNS read and answered in batches');
    assert.equal(cli.tcpRelay, 'native', 'tunnels dialed and relayed natively');
    assert.equal(workerPids(cli.child.pid!).length, 2);
  });

  it("starts every worker with the gateway's command-line V8 flags", () => {
    for (const pid of workerPids(cli.child.pid!)) assertGatewayFlags(pid);
  });

  it("runs the primary's and every worker's helper threads below their event loops, and says so", () => {
    for (const pid of [cli.child.pid!, ...workerPids(cli.child.pid!)]) assertHelperThreadsLowered(pid);
    assert.match(cli.stderr(), /"helper_threads":"nice 5 \(\d+ threads\)".*"clawbox gateway listening"/);
  });

  it('applies a registration in every worker and sums its traffic from all of them', async () => {
    assert.deepEqual(new Set(await burst('http://later.test/')), new Set([403]));
    const control = await GatewayControl.open(controlPath);
    try {
      await control.register({ client: '127.0.0.1', sandbox: 'w0rk3r', tool: 'multi', allowed_hosts: ['later.test'], denied_hosts: [] });
      assert.deepEqual(new Set(await burst('http://later.test/', 32)), new Set([200]));
      const traffic = await control.unregister('127.0.0.1');
      assert.equal(traffic.allowed, 32, 'allowed connections of every worker are counted');
      assert.ok(traffic.bytes_down > 0);
      assert.deepEqual(new Set(await burst('http://later.test/')), new Set([403]), 'unregistered in every worker');
    } finally {
      control.close();
    }
    const tagged = auditLines(auditPath).filter((l) => l.sandbox === 'w0rk3r' && l.event === 'decision');
    assert.equal(tagged.length, 32);
    assert.ok(tagged.every((l) => l.tool === 'multi' && l.decision === 'allow'));
    const conns = auditLines(auditPath).map((l) => String(l.conn));
    const decisions = auditLines(auditPath).filter((l) => l.event === 'decision').map((l) => String(l.conn));
    assert.equal(new Set(decisions).size, decisions.length, 'conn ids are unique across workers');
    assert.ok(conns.length > 0);
  });

  it('reloads every worker on SIGHUP', async () => {
    writeFileSync(configPath, seedConfig(auditPath, ['later.test']));
    cli.child.kill('SIGHUP');
    await waitUntil(() => cli.stderr().includes('policy reloaded'), 'reload message');
    assert.deepEqual(new Set(await burst('http://later.test/', 32)), new Set([200]));
    assert.equal(workerPids(cli.child.pid!).length, 2, 'SIGHUP kills no worker');
  });

  it('replaces a worker that dies, with the registrations in force', async () => {
    const control = await GatewayControl.open(controlPath);
    try {
      await control.register({ client: '127.0.0.1', sandbox: 'r3born', allowed_hosts: [], denied_hosts: ['later.test'] });
      const [victim] = workerPids(cli.child.pid!);
      process.kill(victim, 'SIGKILL');
      await waitUntil(() => cli.stderr().includes('replacement gateway worker listening'), 'replacement worker');
      assert.equal(workerPids(cli.child.pid!).length, 2);
      for (const pid of workerPids(cli.child.pid!)) {
        assertGatewayFlags(pid);
        assertHelperThreadsLowered(pid);
      }
      assert.deepEqual(new Set(await burst('http://later.test/', 32)), new Set([403]), 'the new worker knows the sandbox');
      await control.unregister('127.0.0.1');
    } finally {
      control.close();
    }
  });

  it('loses no audit line from any worker when the primary is SIGKILLed, and the workers exit', async () => {
    const statuses = await burst('http://evil.example/last-words', 16);
    assert.deepEqual(new Set(statuses), new Set([403]));
    const pids = workerPids(cli.child.pid!);
    cli.child.kill('SIGKILL');
    await once(cli.child, 'exit');
    const last = auditLines(auditPath).filter((l) => l.host === 'evil.example' && l.event === 'decision');
    assert.equal(last.length, 16, 'every denial of every worker is in the file');
    await waitUntil(() => pids.every((pid) => !alive(pid)), 'workers to exit after their primary');
  });
});

/**
 * That two workers served `total` connections between them, within a fifth of the total of each other: the
 * balance by load lets them differ by a sixteenth before it hands one over (`handOverByLoad`), and the race of two
 * workers accepting at once by a few more.
 */
function assertEven(byWorker: ReadonlyMap<string, number>, total: number, when = 'a burst'): void {
  const counts = [...byWorker.values()];
  const seen = `${when}: accepted by ${JSON.stringify([...byWorker])}`;
  assert.equal(counts.reduce((a, b) => a + b, 0), total, seen);
  assert.equal(counts.length, 2, seen);
  assert.ok(Math.abs(counts[0] - counts[1]) <= total / 5, seen);
}

describe('clawbox proxy --workers 2: who accepts', () => {
  let cli: RunningCli;
  let auditPath: string;

  before(async () => {
    auditPath = join(dir, 'steering', 'audit.log');
    const configPath = join(dir, 'steering.yml');
    writeFileSync(configPath, seedConfig(auditPath));
    cli = await startCli(configPath, dns, ['--workers', '2']);
  });

  after(() => {
    cli?.child.kill('SIGKILL');
  });

  /** The worker prefixes (`<process>-<n>`) of the decisions written while `work` ran. */
  async function acceptedBy(work: () => Promise<void>): Promise<Map<string, number>> {
    const before = auditLines(auditPath).length;
    await work();
    const byWorker = new Map<string, number>();
    for (const line of auditLines(auditPath).slice(before)) {
      if (line.event !== 'decision') continue;
      const worker = String(line.conn).split('-')[0];
      byWorker.set(worker, (byWorker.get(worker) ?? 0) + 1);
    }
    return byWorker;
  }

  /** One client's tunnels, one after the other, each closed before the next. */
  async function sequential(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const tunnel = i % 2 === 0 ? await connectTunnel(cli.http, 'api.example.com:80') : await socks5Connect(cli.socks, 'api.example.com', 80);
      tunnel.socket.end('GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n');
      assert.match((await readAll(tunnel.socket)).toString(), /seed-upstream/);
    }
  }

  /**
   * `n` CONNECT clients at once, all dialled in one tick with their heads written before they connect (faster
   * than the standbys can start listening, so the lead must hand some over), and a few SOCKS5 clients. Each holds
   * its tunnel until all are up, then uses it. A handed-over connection has already sent its CONNECT head or
   * SOCKS greeting: a byte lost on the way would hang here.
   */
  async function burst(n: number): Promise<void> {
    const head = 'CONNECT data.example.com:80 HTTP/1.1\r\nHost: data.example.com:80\r\n\r\n';
    const dialled = Array.from({ length: n }, () => netConnect(cli.http.port, cli.http.address).setNoDelay(true));
    for (const socket of dialled) socket.write(head);
    const tunnels = await Promise.all([
      ...dialled.map(async (socket) => {
        const reply = await nextChunk(socket);
        assert.match(String(reply), /^HTTP\/1\.1 200 /);
        return socket;
      }),
      ...Array.from({ length: Math.ceil(n / 4) }, async () => {
        const t = await socks5Connect(cli.socks, 'data.example.com', 80);
        assert.equal(t.reply, 0);
        return t.socket;
      }),
    ]);
    const bodies = await Promise.all(
      tunnels.map(async (socket, i) => {
        socket.end(`GET /${i} HTTP/1.1\r\nHost: data.example.com\r\nConnection: close\r\n\r\n`);
        return (await readAll(socket)).toString();
      }),
    );
    assert.ok(bodies.every((b) => /seed-upstream/.test(b)));
  }

  /** Waits for the standbys to go (2 s without overlapping connections), checking with one client's tunnels. */
  /** Worker processes holding a front's listening socket (the primary holds it too, and is left out). */
  function listeningWorkers(port: number): number {
    const line = execFileSync('ss', ['-ltnpH', `sport = :${port}`]).toString();
    return [...line.matchAll(/pid=(\d+)/g)].filter((m) => Number(m[1]) !== cli.child.pid).length;
  }

  /**
   * Waits until the standbys have stopped listening (seen in the kernel's socket table: one worker holds each front's
   * listening socket), then returns who took 20 sequential tunnels. Sequential tunnels landing on one worker alone
   * do not prove it: the lead, awake and warm, can win every accept while a standby still listens.
   */
  async function untilOneWorkerAccepts(): Promise<Map<string, number>> {
    let last = new Map<string, number>();
    for (let attempt = 0; attempt < 20; attempt++) {
      await new Promise((r) => setTimeout(r, 500));
      if (listeningWorkers(cli.http.port) !== 1 || listeningWorkers(cli.socks.port) !== 1) continue;
      last = await acceptedBy(() => sequential(20));
      if (last.size === 1) return last;
    }
    return last;
  }

  it('takes one client\'s sequential tunnels on one worker (each taken by another process costs more)', async () => {
    const byWorker = await acceptedBy(() => sequential(40));
    assert.equal([...byWorker.values()].reduce((a, b) => a + b, 0), 40);
    assert.equal(byWorker.size, 1, `accepted by ${JSON.stringify([...byWorker])}`);
  });

  it('spreads a burst of held connections over both workers, with no byte lost on the way', { timeout: 30_000 }, async () => {
    const byWorker = await acceptedBy(() => burst(32));
    assert.equal([...byWorker.values()].reduce((a, b) => a + b, 0), 40);
    assert.equal(byWorker.size, 2, `accepted by ${JSON.stringify([...byWorker])}`);
  });

  it('balances a burst that calls the standbys: each worker serves about half, whichever the kernel woke first', { timeout: 30_000 }, async () => {
    const alone = await untilOneWorkerAccepts();
    assert.equal(alone.size, 1, `still accepted by ${JSON.stringify([...alone])}`);
    // Unbalanced, splits of 42/24 and 56/10 were seen here: the worker running when a burst arrives takes what it can.
    const byWorker = await acceptedBy(() => burst(64));
    assertEven(byWorker, 80);
  });

  it('goes back to one worker after a quiet spell, and spreads the next burst again', { timeout: 30_000 }, async () => {
    const alone = await untilOneWorkerAccepts();
    assert.equal(alone.size, 1, `still accepted by ${JSON.stringify([...alone])}`);
    const byWorker = await acceptedBy(() => burst(32));
    assert.equal(byWorker.size, 2, `accepted by ${JSON.stringify([...byWorker])}`);
  });

  it('takes sequential tunnels on one worker while idle tunnels are held open (idle ones are not overlap)', { timeout: 60_000 }, async () => {
    // Four held tunnels overlap as they open (the standbys join); once they sit still they no longer count.
    const held = await Promise.all(Array.from({ length: 4 }, () => connectTunnel(cli.http, 'api.example.com:80')));
    try {
      const alone = await untilOneWorkerAccepts();
      assert.equal(alone.size, 1, `with ${held.length} idle tunnels held: accepted by ${JSON.stringify([...alone])}`);
      const byWorker = await acceptedBy(() => sequential(40));
      assert.equal(byWorker.size, 1, `with ${held.length} idle tunnels held: accepted by ${JSON.stringify([...byWorker])}`);
      // Still open, and still working: they were idle, not gone.
      const bodies = await Promise.all(
        held.map(async ({ socket }) => {
          socket.end('GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n');
          return (await readAll(socket)).toString();
        }),
      );
      assert.ok(bodies.every((b) => /seed-upstream/.test(b)));
    } finally {
      for (const { socket } of held) socket.destroy();
    }
  });

  it('reads DNS over UDP in one worker, the lead (batched reads: one reader costs less per query than two)', async () => {
    const alone = await untilOneWorkerAccepts();
    assert.equal(alone.size, 1, `accepted by ${JSON.stringify([...alone])}`);
    const answeredBy = await acceptedBy(() => askDns(cli.dns, 40));
    assert.deepEqual([...answeredBy.keys()], [...alone.keys()], `DNS answered by ${JSON.stringify([...answeredBy])}`);
  });

  it('keeps steering when a worker dies: the other takes over alone (tunnels and DNS), the replacement joins bursts', { timeout: 60_000 }, async () => {
    // After a reload too: a replacement listens where the others do, not on a port 0 of its own.
    cli.child.kill('SIGHUP');
    await waitUntil(() => cli.stderr().includes('policy reloaded'), 'reload message');
    // The second victim is the lead whatever the first was: it took over from the first, or was the lead already.
    for (const victim of workerPids(cli.child.pid!)) {
      const replaced = cli.stderr().split('replacement gateway worker listening').length;
      process.kill(victim, 'SIGKILL');
      await waitUntil(() => cli.stderr().split('replacement gateway worker listening').length > replaced, 'a replacement worker', 10_000);
      const alone = await untilOneWorkerAccepts();
      assert.equal(alone.size, 1, `after worker ${victim} died: accepted by ${JSON.stringify([...alone])}`);
      const answeredBy = await acceptedBy(() => askDns(cli.dns, 20));
      assert.deepEqual([...answeredBy.keys()], [...alone.keys()], `after worker ${victim} died: DNS answered by ${JSON.stringify([...answeredBy])}`);
      const byWorker = await acceptedBy(() => burst(64));
      assertEven(byWorker, 80, `after worker ${victim} died`);
      const announced = new Set([cli.http.port, cli.socks.port, cli.dns.port]);
      assert.deepEqual(listeningPorts([cli.child.pid!, ...workerPids(cli.child.pid!)]).filter((p) => !announced.has(p)), []);
    }
  });
});

describe('clawbox proxy --workers 2 stopped as a process group', () => {
  // `timeout`, service managers and a terminal's Ctrl-C signal the whole group: the workers exit while the
  // primary is telling them to stop. Whether a message then meets a closed channel is a race (it did in about
  // one stop in three here), so the stop is repeated.
  it('exits cleanly on SIGTERM to the whole group', async () => {
    const configPath = join(dir, 'group.yml');
    writeFileSync(configPath, seedConfig(join(dir, 'group', 'audit.log')));
    for (let attempt = 0; attempt < 8; attempt++) {
      const cli = await startCli(configPath, dns, ['--workers', '2'], true);
      await waitUntil(() => workerPids(cli.child.pid!).length === 2, 'two workers');
      const exited = once(cli.child, 'exit') as Promise<[number | null, string | null]>;
      process.kill(-cli.child.pid!, 'SIGTERM');
      const [code, signal] = await exited;
      assert.doesNotMatch(cli.stderr(), /Unhandled|EPIPE|at .*node:internal/, `attempt ${attempt + 1}`);
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, cli.stderr());
    }
  });
});

describe('clawbox proxy --control with sandbox.gateway.exit_when_unused', () => {
  const unusedConfig = (name: string): string => {
    const path = join(dir, `${name}.yml`);
    writeFileSync(path, `${seedConfig(join(dir, name, 'audit.log'))}  gateway:\n    exit_when_unused: 2s\n`);
    return path;
  };

  it('exits cleanly once no runner has been connected for that long, and not while one is', { timeout: 30_000 }, async () => {
    const controlPath = join(dir, 'unused.sock');
    const cli = await startCli(unusedConfig('unused'), dns, ['--workers', '2', '--control', controlPath]);
    const exited = once(cli.child, 'exit') as Promise<[number | null, string | null]>;
    const runner = await GatewayControl.open(controlPath);
    await runner.ping();
    // Twice the limit with a runner connected: still serving.
    await new Promise((r) => setTimeout(r, 4000));
    assert.equal(cli.child.exitCode, null, 'a connected runner keeps the gateway');
    const tunnel = await connectTunnel(cli.http, 'api.example.com:80');
    assert.equal(tunnel.status, 200);
    tunnel.socket.destroy();
    const workers = workerPids(cli.child.pid!);
    assert.equal(workers.length, 2);
    runner.close();
    const [code, signal] = await exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, cli.stderr());
    assert.match(cli.stderr(), /no runner connected for sandbox\.gateway\.exit_when_unused: exiting/);
    await waitUntil(() => workers.every((pid) => !alive(pid)), 'the workers to exit with their primary');
  });

  it('is refused without --control, naming the key, and listens on nothing', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [CLI, 'proxy', '--config', unusedConfig('no-control'), '--http', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 2, stderr);
    assert.match(stderr, /sandbox\.gateway\.exit_when_unused \(2000 ms\) needs --control/);
    assert.equal(await isListening(port), false);
  });
});

/** TCP ports the given processes listen on (`ss`). */
function listeningPorts(pids: readonly number[]): number[] {
  const lines = execFileSync('ss', ['-Hltnp'], { encoding: 'utf8' }).split('\n');
  const ours = lines.filter((line) => pids.some((pid) => line.includes(`pid=${pid},`)));
  return ours.map((line) => Number(line.trim().split(/\s+/)[3].split(':').pop()));
}

/** A gateway worker's node arguments (before its script) include every flag V8 only reads from the command line. */
function assertGatewayFlags(pid: number): void {
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  assert.deepEqual(missingGatewayFlags(argv), [], `worker ${pid} runs as ${JSON.stringify(argv)}`);
}

function workerPids(parent: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(parent)], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('clawbox proxy whose audit trail cannot be written', () => {
  let cli: RunningCli;

  before(async () => {
    const configPath = join(dir, 'full-disk.yml');
    // /dev/full fails every write with ENOSPC, as a full disk does. One process, so a crash cannot hide behind a
    // replaced worker.
    writeFileSync(configPath, seedConfig('/dev/full'));
    cli = await startCli(configPath, dns, ['--workers', '1']);
  });

  after(() => {
    cli?.child.kill('SIGKILL');
  });

  it('refuses every connection it cannot audit (fail closed), says why, and keeps serving', async () => {
    for (let i = 0; i < 2; i++) {
      const connect = await connectTunnel(cli.http, 'api.example.com:80');
      assert.equal(connect.status, 503);
      assert.equal(connect.headers['x-clawbox-error'], 'audit');
      assert.match(String(connect.headers['x-clawbox-reason']), /audit trail write failed \(ENOSPC\)/);
      connect.socket.destroy();
    }
    const absolute = await httpViaProxy(cli.http, 'http://data.example.com/x');
    assert.equal(absolute.status, 503);
    const socks = await socks5Connect(cli.socks, 'api.example.com', 80);
    assert.equal(socks.reply, 0x01, 'general SOCKS server failure');
    socks.socket.destroy();
    // A refusal that needs no gate (a malformed request) is still answered.
    const malformed = await connectTunnel(cli.http, 'bad host:80');
    assert.equal(malformed.status, 400);
    malformed.socket.destroy();
    assert.equal(cli.child.exitCode, null, 'the gateway is still running');
    assert.match(cli.stderr(), /audit trail write failed; connections are refused until it works/);
  });
});

/** `clawbox proxy` with `variable=value` in its environment exits 2 with `message`, listening on nothing. */
async function refusesSetting(variable: string, value: string, message: RegExp): Promise<void> {
  const port = await freePort();
  const configPath = join(dir, `${variable}.yml`);
  writeFileSync(configPath, seedConfig(join(dir, variable, 'audit.log')));
  const child = spawn(process.execPath, [CLI, 'proxy', '--config', configPath, '--http', `127.0.0.1:${port}`, '--dns', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, [variable]: value },
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, 'exit')) as [number];
  assert.equal(code, 2);
  assert.match(stderr, message);
  assert.equal(await isListening(port), false);
}

describe('clawbox proxy with CLAWBOX_DNS_IO', () => {
  it('dgram: says so in its listening line, and answers DNS through node:dgram in every worker', async () => {
    const configPath = join(dir, 'dgram.yml');
    writeFileSync(configPath, seedConfig(join(dir, 'dgram', 'audit.log')));
    const cli = await startCli(configPath, dns, ['--workers', '2'], false, { ...process.env, CLAWBOX_DNS_IO: 'dgram' });
    try {
      assert.equal(cli.dnsIo, 'dgram');
      await askDns(cli.dns, 20);
    } finally {
      cli.child.kill('SIGKILL');
    }
  });

  it('refuses any other value by name (exit 2), listening on nothing', () =>
    refusesSetting('CLAWBOX_DNS_IO', 'fast', /CLAWBOX_DNS_IO must be "batched" or "dgram", not "fast"/));
});

describe('clawbox proxy with CLAWBOX_TCP_RELAY', () => {
  it('node: says so in its listening line, and tunnels through node:net in every worker', async () => {
    const configPath = join(dir, 'tcp-node.yml');
    writeFileSync(configPath, seedConfig(join(dir, 'tcp-node', 'audit.log')));
    const cli = await startCli(configPath, dns, ['--workers', '2'], false, { ...process.env, CLAWBOX_TCP_RELAY: 'node' });
    try {
      assert.equal(cli.tcpRelay, 'node');
      for (let i = 0; i < 4; i += 1) {
        const tunnel = i % 2 === 0 ? await connectTunnel(cli.http, 'api.example.com:80') : await socks5Connect(cli.socks, 'api.example.com', 80);
        tunnel.socket.end('GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n');
        assert.match((await readAll(tunnel.socket)).toString(), /seed-upstream/);
      }
    } finally {
      cli.child.kill('SIGKILL');
    }
  });

  it('refuses any other value by name (exit 2), listening on nothing', () =>
    refusesSetting('CLAWBOX_TCP_RELAY', 'splice', /CLAWBOX_TCP_RELAY must be "native" or "node", not "splice"/));
});

describe('clawbox proxy with a bad config', () => {
  it('refuses a typo and a wrong type with key path and line, and listens on nothing', async () => {
    const port = await freePort();
    const configPath = join(dir, 'bad.yml');
    writeFileSync(configPath, 'sandbox:\n  netwrk_policy: deny-by-default\n  resource_limits:\n    memory: lots\n');
    const child = spawn(process.execPath, [CLI, 'proxy', '--config', configPath, '--http', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 2);
    assert.match(stderr, /sandbox\.netwrk_policy \(line 2\): unknown key; did you mean 'network_policy'\?/);
    assert.match(stderr, /sandbox\.resource_limits\.memory \(line 4\): expected a size like '2gb'.*got 'lots'/);
    assert.equal(await isListening(port), false);
  });

  it('refuses a bad flag and an unknown option with a usage error', async () => {
    for (const args of [['proxy', '--http', 'not an address'], ['proxy', '--bogus'], ['nonsense']]) {
      const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CLAWBOX_CONFIG: join(dir, 'absent.yml') } });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const [code] = (await once(child, 'exit')) as [number];
      assert.equal(code, 2, `clawbox ${args.join(' ')}`);
      assert.match(stderr, /clawbox/);
    }
  });
});

/** `--http` and `--socks` on free ports of their own (not 0). */
async function fixedPorts(): Promise<string[]> {
  return ['--http', `127.0.0.1:${await freePort()}`, '--socks', `127.0.0.1:${await freePort()}`];
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

async function isListening(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
