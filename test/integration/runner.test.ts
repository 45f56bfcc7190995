/**
 * `clawbox run` on the real Docker engine: the gateway container, the internal network, per-sandbox policy, the
 * seed document's three isolation checks, time-outs, output caps, Ctrl-C and crash clean-up. Every refusal
 * asserted here comes from clawbox: denied names resolve (in our own DNS) to a live upstream on this machine.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import { runSandbox, type RunOptions, type RunResult } from '../../runner/sandbox.js';
import { ensureEnvironment, SANDBOX_NETWORK, type Environment } from '../../runner/environment.js';
import { LABEL_MANAGED, LABEL_OWNER_HOST, LABEL_OWNER_PID, labelFilter, labelsFor } from '../../runner/labels.js';
import { SANDBOX_IMAGE } from '../../runner/images.js';
import { ClawboxError } from '../../src/errors.js';
import type { DecisionEvent, RunEvent } from '../../src/audit/types.js';
import { TextCollector as Collected } from '../../runner/output.js';
import { crashLeftover } from '../fixtures/leftovers.js';
import { startSandboxWorld, UPSTREAM_IP, type SandboxWorld } from '../fixtures/sandbox-env.js';
import { hostname } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { missingGatewayFlags } from '../fixtures/node-argv.js';
import { assertHelperThreadsLowered } from '../fixtures/thread-nice.js';

// The installed executable (the package's bin): the CLI bundle, compiled from its code cache after the first run.
const CLI = join(import.meta.dirname, '../../bin/clawbox');
const docker = new Dockerode();
let world: SandboxWorld;

before(async () => {
  world = await startSandboxWorld();
});
after(async () => {
  await world?.close();
});

interface Ran {
  readonly result: RunResult;
  readonly stdout: string;
  readonly stderr: string;
  readonly warnings: string[];
}

async function run(command: string, options: Partial<RunOptions> & { yaml?: string; logging?: string } = {}): Promise<Ran> {
  const { config, text } = world.config(options.yaml, options.logging);
  const stdout = new Collected();
  const stderr = new Collected();
  const warnings: string[] = [];
  const result = await runSandbox({ config, configText: text, command: ['sh', '-c', command], stdout, stderr, onWarning: (w) => warnings.push(w), ...options });
  return { result, stdout: stdout.text, stderr: stderr.text, warnings };
}

async function sandboxContainers(): Promise<number> {
  return (await docker.listContainers({ all: true, filters: labelFilter('sandbox') })).length;
}

/** The environment (and so the gateway) the world's config gets, with `logging` lines added. */
const environmentOf = (logging?: string): Promise<Environment> => ensureEnvironment(docker, world.config(undefined, logging).config);
const gatewayDigestOf = async (env: Environment): Promise<string> =>
  (await docker.getContainer(env.gatewayContainer).inspect()).Config.Labels['dev.clawbox.gateway-digest'];

const decisionsOf = (sandbox: string): DecisionEvent[] =>
  world.auditLines().filter((e): e is DecisionEvent => e.event === 'decision' && e.sandbox === sandbox);

describe('egress through the gateway', () => {
  it('lets an allowed .test name through HTTP, CONNECT (https) and SOCKS5, and records the run', async () => {
    const { result, stdout } = await run(
      [
        'curl -sS -m 10 http://allowed.test/http && echo',
        'curl -sS -m 10 --cacert /certs/cert.pem https://allowed.test/https && echo',
        'curl -sS -m 10 --proxytunnel http://allowed.test/connect && echo',
        'curl -sS -m 10 -x "$ALL_PROXY" http://allowed.test/socks',
      ].join(' && '),
      { yaml: `mounts:\n  - source: ${world.certDir}\n    target: /certs\n    mode: ro` },
    );
    assert.equal(result.exit_code, 0, stdout);
    assert.equal(stdout.match(/allowed-upstream/g)?.length, 4);
    assert.match(stdout, /allowed-upstream over tls/, 'curl https://allowed.test/ went through the gateway, TLS end to end');
    const channels = new Set(decisionsOf(result.sandbox).filter((e) => e.decision === 'allow').map((e) => e.channel));
    assert.deepEqual(channels, new Set(['http', 'connect', 'socks5']));
    assert.ok(decisionsOf(result.sandbox).every((e) => e.dialed === UPSTREAM_IP || e.decision !== 'allow'));
    const record = world.auditLines().find((e): e is RunEvent & { v: number } => e.event === 'run' && e.sandbox === result.sandbox);
    assert.ok(record);
    assert.equal(record.exit_code, 0);
    assert.equal(record.connections_allowed, 4);
    assert.ok(record.bytes_down > 0 && record.bytes_up > 0);
    assert.equal(record.image, SANDBOX_IMAGE);
    assert.match(record.config_digest, /^[0-9a-f]{16}$/);
    assert.equal(record.timed_out, false);
  });

  it('refuses a name not allowed, metadata, and the host\'s addresses, each with its rule, and explains the denial', async () => {
    const { result, stdout } = await run(
      [
        'curl -s -m 10 -o /dev/null -w "denied=%{http_code}\\n" http://denied.test/',
        'curl -s -m 10 -o /dev/null -w "metadata=%{http_code}\\n" http://169.254.169.254/latest/meta-data/',
        'curl -s -m 10 -o /dev/null -w "rebind=%{http_code}\\n" http://rebind.test/',
        'curl -s -m 10 -o /dev/null -w "bridge=%{http_code}\\n" http://10.213.0.1/',
        'curl -s -m 10 -o /dev/null -w "loopback=%{http_code}\\n" http://127.0.0.1:22/',
      ].join('; '),
      { allowHosts: ['rebind.test'] },
    );
    assert.match(stdout, /denied=403/);
    assert.match(stdout, /metadata=403/);
    assert.match(stdout, /rebind=403/);
    assert.match(stdout, /bridge=403/);
    assert.match(stdout, /loopback=000/, 'NO_PROXY keeps loopback inside the sandbox, where nothing listens');
    const rules = new Map(decisionsOf(result.sandbox).map((e) => [e.host, e.rule]));
    assert.equal(rules.get('denied.test'), 'network_policy');
    assert.equal(rules.get('169.254.169.254'), 'builtin.cloud-metadata');
    assert.equal(rules.get('rebind.test'), 'builtin.cloud-metadata');
    assert.match(rules.get('10.213.0.1') ?? '', /^builtin\.(private|host-address)$/);
    assert.match(result.explanation ?? '', /denied\.test is not in sandbox\.allowed_hosts/);
  });

  it('answers DNS in batches, relays tunnels natively and shares its workers\' loads inside the gateway image: every native part loads there, no worker fell back', async () => {
    const { gatewayContainer } = await environmentOf();
    const probe = ['udp-batch', 'tcp-relay', 'shared-cells'].map((part) => `typeof require('/opt/clawbox/dist/native/${part}.node')`).join(', ');
    assert.equal(
      execFileSync('docker', ['exec', gatewayContainer, '/usr/local/bin/node', '-e', `console.log(${probe})`], { encoding: 'utf8' }).trim(),
      'object object object',
    );
    const logs = spawnSync('docker', ['logs', gatewayContainer], { encoding: 'utf8' });
    assert.equal(logs.status, 0);
    assert.match(logs.stdout + logs.stderr, /"dns_io":"batched","tcp_relay":"native".*"clawbox gateway listening"/);
    assert.doesNotMatch(logs.stdout + logs.stderr, /one datagram at a time|relayed through node:net|cannot share their loads/);
  });

  it("runs the gateway container's primary and workers with the gateway's command-line V8 flags, their helper threads below their event loops", async () => {
    const { gatewayContainer } = await environmentOf();
    const top = (await docker.getContainer(gatewayContainer).top()) as { Titles: string[]; Processes: string[][] };
    const cmd = top.Titles.indexOf('CMD');
    const pid = top.Titles.indexOf('PID');
    // The node processes: the container's init (docker-init) shows the same command line after its own name.
    const gateways = top.Processes.filter((row) => row[cmd].split(' ')[0].endsWith('/node') && row[cmd].includes('/main.js'));
    assert.ok(gateways.length >= 2, `a primary and its workers, got ${JSON.stringify(top.Processes)}`);
    for (const row of gateways) {
      assert.deepEqual(missingGatewayFlags(row[cmd].split(' ')), [], `missing from ${row[cmd]}`);
      // docker top gives host pids, so the test reads the container's threads from the host's /proc.
      assertHelperThreadsLowered(Number(row[pid]));
    }
  });

  it('has no way out that skips the proxy: raw TCP, UDP and DNS to anywhere but the gateway fail', async () => {
    // A live service on every host address: only clawbox's firewall keeps the sandbox from it.
    const hostService = createServer((socket) => socket.end('HTTP/1.0 200 OK\r\n\r\nhost\n'));
    await new Promise<void>((resolve) => hostService.listen(0, '0.0.0.0', resolve));
    const hostPort = (hostService.address() as AddressInfo).port;
    const { stdout, result } = await run(
      [
        `curl -sS -m 3 --noproxy '*' http://${UPSTREAM_IP}/ >/dev/null 2>&1; echo direct=$?`,
        `curl -sS -m 3 --noproxy '*' http://10.213.0.1:${hostPort}/ >/dev/null 2>&1; echo host=$?`,
        `curl -sS -m 3 --noproxy '*' http://${UPSTREAM_IP}:${hostPort}/ >/dev/null 2>&1; echo hostalias=$?`,
        `python3 -c "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(2);s.sendto(b'x',('${UPSTREAM_IP}',53));s.recvfrom(10)" >/dev/null 2>&1; echo udp=$?`,
        'nc -zv -w 3 google.com 443 >/dev/null 2>&1; echo nc=$?',
        'wget -q -T 5 -O /dev/null http://external-service.io/; echo wget=$?',
        'curl -sS -m 5 https://api.example.com/ >/dev/null 2>&1; echo curl=$?',
      ].join('; '),
    );
    hostService.close();
    for (const probe of ['direct', 'host', 'hostalias', 'udp', 'nc', 'wget', 'curl']) {
      const code = new RegExp(`${probe}=(\\d+)`).exec(stdout)?.[1];
      assert.ok(code !== undefined && code !== '0', `${probe} should fail: ${stdout}`);
    }
    // The attempts that skipped the gateway are in the audit trail too, from the firewall's log.
    const direct = decisionsOf(result.sandbox).filter((e) => e.channel === 'direct');
    const targets = new Set(direct.map((e) => `${e.host}:${e.port}`));
    for (const target of [`${UPSTREAM_IP}:80`, `10.213.0.1:${hostPort}`, `${UPSTREAM_IP}:${hostPort}`, `${UPSTREAM_IP}:53`]) {
      assert.ok(targets.has(target), `${target} in ${JSON.stringify([...targets])}`);
    }
    assert.ok(direct.every((e) => e.decision === 'deny' && e.rule === 'builtin.direct-connection'));
    assert.ok(result.connections_denied >= direct.length);
  });

  it('gives each sandbox its own hosts: --allow-host and the tool\'s entry apply to that sandbox only', async () => {
    const [withHost, without, tool] = await Promise.all([
      run('curl -s -m 10 -o /dev/null -w "%{http_code}" http://extra.test/', { allowHosts: ['extra.test'] }),
      run('curl -s -m 10 -o /dev/null -w "%{http_code}" http://extra.test/'),
      run('curl -s -m 10 -o /dev/null -w "%{http_code}" http://tool.test/', { tool: 'fetcher', yaml: 'tools:\n  fetcher:\n    allowed_hosts: [tool.test]' }),
    ]);
    assert.equal(withHost.stdout, '200');
    assert.equal(without.stdout, '403');
    assert.equal(tool.stdout, '200');
    const toolLine = decisionsOf(tool.result.sandbox).find((e) => e.host === 'tool.test');
    assert.equal(toolLine?.tool, 'fetcher');
  });

  it('keeps sandboxes apart: one cannot reach a server in another', async () => {
    const serverRun = run('python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 & sleep 1; curl -s -m 3 --noproxy "*" -o /dev/null -w "self=%{http_code}" http://$(hostname -i):8000/; sleep 6');
    let peer = '';
    for (let i = 0; i < 50 && !peer; i++) {
      const list = await docker.listContainers({ filters: labelFilter('sandbox') });
      const first = list[0];
      peer = first ? (first.NetworkSettings.Networks[SANDBOX_NETWORK]?.IPAddress ?? '') : '';
      if (!peer) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(peer, 'the server sandbox is running');
    const probe = await run(`sleep 2; curl -sS -m 3 --noproxy '*' http://${peer}:8000/ >/dev/null 2>&1; echo peer=$?`);
    const server = await serverRun;
    assert.equal(server.stdout, 'self=200', 'the server works from inside its own sandbox');
    assert.match(probe.stdout, /peer=(7|28)/, probe.stdout);
  });
});

describe('the seed document\'s sandbox checks', () => {
  it('filesystem: the host\'s /root, /etc/passwd, $HOME and /var/log are not reachable', async () => {
    const marker = `clawbox-marker-${process.pid}`;
    const places = ['/root', '/var/log', process.env.HOME ?? '/root'];
    for (const place of places) writeFileSync(join(place, marker), 'host secret');
    try {
      const { stdout } = await run(`ls -a /root /var/log "$HOME" 2>&1; cat /etc/passwd; echo; find / -name '${marker}' 2>/dev/null | head -1; echo end`);
      assert.doesNotMatch(stdout, new RegExp(marker));
      assert.doesNotMatch(stdout, /host secret/);
      const hostPasswd = readFileSync('/etc/passwd', 'utf8');
      assert.ok(!stdout.includes(hostPasswd), 'the sandbox sees its image\'s passwd, not the host\'s');
    } finally {
      for (const place of places) rmSync(join(place, marker), { force: true });
    }
  });

  it('process: ps aux shows only the sandbox\'s own processes', async () => {
    const { stdout } = await run('ps -eo pid,comm --no-headers');
    const commands = stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[1]);
    assert.ok(commands.length <= 4, stdout);
    for (const hostOnly of ['dockerd', 'containerd', 'sshd', 'systemd', 'node']) assert.ok(!commands.includes(hostOnly), stdout);
    assert.match(stdout, /^\s*1\s+(docker-init|tini)/m, 'PID 1 is an init that reaps zombies');
  });
});

describe('limits and lifecycle', () => {
  it('kills the tool at sandbox.timeout with exit code 124, and no process of it survives', async () => {
    const { result } = await run('sleep 4242 & sleep 4243', { yaml: 'timeout: 2' });
    assert.equal(result.exit_code, 124);
    assert.equal(result.timed_out, true);
    assert.match(result.explanation ?? '', /sandbox\.timeout/);
    assert.equal(await sandboxContainers(), 0);
    const survivors = execFileSync('sh', ['-c', 'pgrep -f "sleep 424[23]" || true']).toString().trim();
    assert.equal(survivors, '', 'no sleep of the tool is left on the host');
  });

  it('caps each output stream with a visible marker while the tool keeps running', async () => {
    const { result, stdout, stderr } = await run('head -c 5000 /dev/zero | tr "\\0" a; echo; echo still-running >&2', { logging: 'max_output_size: 1k' });
    assert.equal(result.exit_code, 0);
    assert.equal(result.output_truncated, true);
    assert.ok(stdout.startsWith('a'.repeat(1024)));
    assert.match(stdout, /\[clawbox: stdout truncated at 1kb/);
    assert.ok(stdout.length < 1300);
    assert.match(stderr, /still-running/);
  });

  it('drops an output stream when its capture is off, and the tool still runs', async () => {
    const { result, stdout, stderr } = await run('echo to-stdout; echo to-stderr >&2', { logging: 'capture_stdout: false' });
    assert.equal(result.exit_code, 0);
    assert.equal(stdout, '');
    assert.equal(stderr, 'to-stderr\n');
    const other = await run('echo to-stdout; echo to-stderr >&2', { logging: 'capture_stderr: false' });
    assert.equal(other.stdout, 'to-stdout\n');
    assert.equal(other.stderr, '');
  });

  it('reports an OOM kill with the key to raise', async () => {
    const { result } = await run('python3 -c "x = bytearray(200 * 1024 * 1024); print(len(x))"', { yaml: 'resource_limits:\n  memory: 64m' });
    assert.equal(result.oom_killed, true);
    assert.notEqual(result.exit_code, 0);
    assert.match(result.explanation ?? '', /out of memory at 64m; raise sandbox\.resource_limits\.memory/);
  });

  it('passes the tool\'s exit code through the CLI, and --json prints the run record', async () => {
    const { path } = world.config();
    const child = spawn(CLI, ['run', '--config', path, '--json', '--', 'sh', '-c', 'echo out; exit 3'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 3);
    const record = JSON.parse(stdout) as RunEvent;
    assert.equal(record.exit_code, 3);
    assert.deepEqual(record.command, ['sh', '-c', 'echo out; exit 3']);
  });

  it("reuses an earlier run's environment check for a while, but never another gateway's", async () => {
    const { path } = world.config();
    const cli = async (): Promise<string> => {
      const child = spawn(CLI, ['run', '--config', path, '--', 'sh', '-c', 'curl -s -m 10 -o /dev/null -w "%{http_code}" http://allowed.test/'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      await once(child, 'exit');
      return stdout;
    };
    const recordOf = (digest: string): { checkedAt: number } | undefined =>
      readdirSync('/run/clawbox/gateway')
        .filter((f) => /^checked-[0-9a-f]{16}\.json$/.test(f))
        .map((f) => JSON.parse(readFileSync(join('/run/clawbox/gateway', f), 'utf8')) as { digest: string; checkedAt: number })
        .find((r) => r.digest === digest);

    // Another config's gateway settings: that run gets a gateway of its own and a record of its own.
    await run('true', { logging: 'level: debug' });
    const theirs = await gatewayDigestOf(await environmentOf('level: debug'));
    assert.equal(await cli(), '200');
    const ours = await gatewayDigestOf(await environmentOf());
    assert.notEqual(ours, theirs);
    const record = recordOf(ours);
    assert.ok(record, 'the check is recorded with the gateway it checked');
    // A full check writes the gateway's config file each time; the next run within RECHECK_MS does not.
    const gatewayConfig = `/run/clawbox/gateway/${ours}/config.yml`;
    const written = statSync(gatewayConfig).mtimeMs;
    assert.equal(await cli(), '200');
    assert.equal(statSync(gatewayConfig).mtimeMs, written, "the second run reused the first one's check");
    assert.equal(recordOf(ours)?.checkedAt, record.checkedAt);
  });

  it('gives runs with other gateway settings a gateway each: overlapping runs do not disturb each other', async () => {
    const ours = await environmentOf();
    const started = (await docker.getContainer(ours.gatewayContainer).inspect()).State.StartedAt;
    const stdout = new Collected();
    const first = run('echo started; sleep 2; curl -s -m 10 -o /dev/null -w "%{http_code}" http://allowed.test/', { stdout });
    while (!stdout.text.includes('started')) await new Promise((resolve) => setTimeout(resolve, 50));
    // While the first run works, runs at two other levels come and go, each through a gateway of its own.
    for (const level of ['debug', 'warn']) {
      const other = await run('curl -s -m 10 -o /dev/null -w "%{http_code}" http://allowed.test/', { logging: `level: ${level}` });
      assert.equal(other.stdout, '200', `the ${level}-level run`);
    }
    const { result } = await first;
    assert.equal(result.exit_code, 0);
    assert.match(stdout.text, /started\n200$/);
    assert.equal(result.connections_allowed, 1, "the first run's traffic totals were kept");
    assert.equal((await docker.getContainer(ours.gatewayContainer).inspect()).State.StartedAt, started, 'its gateway was never restarted');
    const gateways = new Set([ours, await environmentOf('level: debug'), await environmentOf('level: warn')].map((e) => e.network.gatewayIp));
    assert.equal(gateways.size, 3, 'three settings, three gateway addresses');
  });

  it('gc removes gateways that serve nobody, and only those', async () => {
    const idle = await environmentOf('level: error');
    const busy = await environmentOf('level: fatal');
    const longAgo = new Date(Date.now() - 5 * 60_000);
    const backdate = async (env: Environment): Promise<void> => utimesSync(`/run/clawbox/gateway/${await gatewayDigestOf(env)}/used`, longAgo, longAgo);
    const stdout = new Collected();
    const running = run('echo started; sleep 3', { logging: 'level: fatal', stdout });
    while (!stdout.text.includes('started')) await new Promise((resolve) => setTimeout(resolve, 50));
    await backdate(idle);
    await backdate(busy); // asked for long ago, but a sandbox still uses it
    const out = execFileSync(CLI, ['gc']).toString();
    assert.match(out, new RegExp(`gateways removed: .*${idle.gatewayContainer}`));
    assert.doesNotMatch(out, new RegExp(busy.gatewayContainer));
    assert.equal(await docker.getContainer(idle.gatewayContainer).inspect().catch(() => null), null);
    assert.equal((await docker.getContainer(busy.gatewayContainer).inspect()).State.Running, true);
    assert.equal((await running).result.exit_code, 0, 'the busy gateway served its run to the end');
  });

  it('stops and removes the sandbox on Ctrl-C', async () => {
    const { path } = world.config();
    const child = spawn(CLI, ['run', '--config', path, '--', 'sleep', '4244'], { stdio: ['ignore', 'pipe', 'pipe'] });
    for (let i = 0; i < 100 && (await sandboxContainers()) === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await sandboxContainers(), 1);
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGINT');
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 130);
    assert.equal(await sandboxContainers(), 0);
  });

  it('stopped before its tool started: the sandbox is removed and the error is ABORTED (the CLI exits 130)', async () => {
    const before = await sandboxContainers();
    // Aborted from the start: the run still goes as far as its sandbox, whose tool must then never get its command.
    const stopped = run('echo ran', { signal: AbortSignal.abort() });
    await assert.rejects(stopped, (err: unknown) => err instanceof ClawboxError && err.code === 'ABORTED' && /before the tool started/.test(err.message));
    assert.equal(await sandboxContainers(), before, 'the sandbox was removed');
  });

  it('gc removes what a crashed runner left (a run sweeps it too: pool.test.ts)', async () => {
    const { container: leftover, deadPid } = await crashLeftover(docker);
    const out = execFileSync(CLI, ['gc']).toString();
    assert.match(out, new RegExp(`sandboxes removed: ${leftover.id.slice(0, 12)}`));
    assert.equal((await docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=1`, `${LABEL_OWNER_PID}=${deadPid}`] } })).length, 0);
  });

  it('leaves sandboxes with no network at all while the gateway is down', async () => {
    const env = await environmentOf();
    await docker.getContainer(env.gatewayContainer).stop({ t: 0 });
    const probe = await docker.createContainer({
      Image: SANDBOX_IMAGE,
      Cmd: ['sh', '-c', `curl -sS -m 3 -x http://${env.network.gatewayIp}:3128 http://allowed.test/ >/dev/null 2>&1; echo proxy=$?; curl -sS -m 3 http://${UPSTREAM_IP}/ >/dev/null 2>&1; echo direct=$?`],
      Labels: { ...labelsFor('sandbox'), [LABEL_OWNER_PID]: String(process.pid), [LABEL_OWNER_HOST]: hostname() },
      HostConfig: { NetworkMode: SANDBOX_NETWORK },
    });
    try {
      await probe.start();
      await probe.wait();
      const logs = (await probe.logs({ stdout: true, stderr: true })).toString();
      assert.match(logs, /proxy=[1-9]/);
      assert.match(logs, /direct=[1-9]/);
    } finally {
      await probe.remove({ force: true });
    }
    // The next run brings the gateway back.
    const { stdout } = await run('curl -s -m 10 -o /dev/null -w "%{http_code}" http://allowed.test/');
    assert.equal(stdout, '200');
  });

  it('with all six gateway addresses held, a new gateway takes the address of one that serves nobody, or the run fails saying so', async () => {
    for (const gateway of await docker.listContainers({ all: true, filters: labelFilter('gateway') })) {
      await docker.getContainer(gateway.Id).remove({ force: true });
    }
    const levels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
    const held: Environment[] = [];
    for (const level of levels) held.push(await environmentOf(`level: ${level}`));
    assert.equal(new Set(held.map((e) => e.network.gatewayIp)).size, 6);
    // A seventh set of settings while every gateway was asked for just now.
    const seventh = (): Promise<Environment> => ensureEnvironment(docker, world.config(undefined, undefined, 'connect_timeout: 7s').config);
    await assert.rejects(seventh(), (err: unknown) => {
      assert.ok(err instanceof ClawboxError, String(err));
      assert.equal(err.code, 'SANDBOX_FAILED');
      assert.match(err.message, /all 6 gateway addresses are held by gateways that are in use/);
      return true;
    });
    const longAgo = new Date(Date.now() - 5 * 60_000);
    utimesSync(`/run/clawbox/gateway/${await gatewayDigestOf(held[0])}/used`, longAgo, longAgo);
    const env = await seventh();
    assert.equal(env.network.gatewayIp, held[0].network.gatewayIp, 'the address of the gateway nobody had asked for lately');
    assert.equal(await docker.getContainer(held[0].gatewayContainer).inspect().catch(() => null), null);
    for (const other of held.slice(1)) assert.equal((await docker.getContainer(other.gatewayContainer).inspect()).State.Running, true);
  });

  it('carries a run through a restart of its gateway: registered again, its later requests allowed, the restart reported', async () => {
    const before = await sandboxContainers();
    const stdout = new Collected();
    const warnings: string[] = [];
    const { config, text } = world.config();
    const running = runSandbox({
      config,
      configText: text,
      // Asks until the gateway fails it (the restart), then until it is allowed again: no guess at how long the
      // restart takes. Both loops are bounded.
      command: [
        'sh',
        '-c',
        [
          'echo started',
          'ask() { curl -s -m 3 -o /dev/null -w "%{http_code}" http://allowed.test/; }',
          'i=0; while [ $i -lt 200 ]; do c=$(ask); [ "$c" != 200 ] && break; i=$((i+1)); sleep 0.05; done; echo gap=$c',
          'i=0; while [ $i -lt 100 ]; do c=$(ask); [ "$c" = 200 ] && break; i=$((i+1)); sleep 0.2; done; echo after=$c',
        ].join('\n'),
      ],
      stdout,
      onWarning: (w) => warnings.push(w),
    });
    running.catch(() => undefined); // asserted below
    while (!stdout.text.includes('started')) await new Promise((resolve) => setTimeout(resolve, 50));
    // A gateway that crashed and was restarted by its restart policy: the process that held this sandbox is gone.
    const gateway = docker.getContainer((await environmentOf()).gatewayContainer);
    const startedAt = (await gateway.inspect()).State.StartedAt;
    await gateway.restart({ t: 0 });
    assert.notEqual((await gateway.inspect()).State.StartedAt, startedAt, 'the gateway process was replaced');
    const result = await running;
    assert.equal(result.exit_code, 0);
    assert.match(stdout.text, /gap=(000|403)/, 'refused while the gateway was away or did not know the sandbox yet');
    assert.match(stdout.text, /after=200/, 'allowed again once the gateway was told the sandbox');
    assert.equal(result.connections_allowed, 1, 'the totals count from the new registration: its one allowed request');
    assert.equal(warnings.filter((w) => /restarted during the run and was told about this sandbox again/.test(w)).length, 1, warnings.join('\n'));
    assert.ok(result.warnings.some((w) => /restarted during the run/.test(w)), 'the run record carries the warning');
    // A gateway's own policy allows nothing: the 200 after the gap came from the registration told again, and its
    // audit line names the sandbox.
    assert.equal(decisionsOf(result.sandbox).filter((d) => d.host === 'allowed.test').at(-1)?.decision, 'allow');
    assert.equal(await sandboxContainers(), before, 'the sandbox was removed');
  });
});

describe('refusals before anything starts', () => {
  async function refusedWithoutContainer(yaml: string, code: string, pattern: RegExp): Promise<void> {
    const before = (await docker.listContainers({ all: true })).length;
    await assert.rejects(run('true', { yaml }), (err: unknown) => {
      assert.ok(err instanceof ClawboxError, String(err));
      assert.equal(err.code, code);
      assert.ok([err.message, ...err.details].some((d) => pattern.test(d)), `${pattern} in ${JSON.stringify(err.details)}`);
      return true;
    });
    assert.equal((await docker.listContainers({ all: true })).length, before);
  }

  it('refuses to run when sandbox.enabled is false', async () => {
    await refusedWithoutContainer('enabled: false', 'CONFIG_INVALID', /sandbox\.enabled is false/);
  });

  it('refuses a mount of a blocked path', async () => {
    const dir = join(world.dir, 'ssh-holder');
    mkdirSync(join(dir, '.ssh'), { recursive: true });
    await refusedWithoutContainer(`mounts:\n  - source: ${dir}\n    target: /data`, 'MOUNT_BLOCKED', /\.ssh/);
    await refusedWithoutContainer('mounts:\n  - source: /var/run/docker.sock\n    target: /sock', 'MOUNT_BLOCKED', /docker/i);
  });

  it('refuses what this host cannot enforce (AppArmor, SELinux, disk quota) unless accepted as degraded', async () => {
    await refusedWithoutContainer("apparmor_profile: 'docker-default'", 'LIMIT_UNENFORCEABLE', /sandbox\.apparmor_profile/);
    await refusedWithoutContainer("selinux_label: 'system_u:system_r:container_t:s0'", 'LIMIT_UNENFORCEABLE', /sandbox\.selinux_label/);
    await refusedWithoutContainer("resource_limits:\n  disk: '5gb'", 'LIMIT_UNENFORCEABLE', /sandbox\.resource_limits\.disk/);
    const accepted = await run('true', { yaml: "apparmor_profile: 'docker-default'\naccept_degraded: [apparmor_profile]" });
    assert.equal(accepted.result.exit_code, 0);
    assert.ok(accepted.warnings.some((w) => /apparmor/i.test(w)));
  });
});

describe('clawbox verify', () => {
  it('runs the seed\'s checks in a sandbox and passes them all on this host', async () => {
    const { path } = world.config();
    const child = spawn(CLI, ['verify', '--config', path, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    const results = JSON.parse(stdout) as Array<{ group: string; check: string; passed: boolean; detail: string }>;
    assert.deepEqual(results.filter((r) => !r.passed), []);
    assert.deepEqual(new Set(results.map((r) => r.group)), new Set(['network', 'filesystem', 'process']));
    assert.equal(code, 0);
  });
});
