/** Per-sandbox policy through the gateway's control socket, as the runner uses it. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type Server } from 'node:net';
import { once } from 'node:events';
import { startTestDnsServer, type TestDnsServer } from '../fixtures/dns-upstream.js';
import { startTestGateway, type TestGateway } from '../fixtures/gateway.js';
import { addLoopbackAlias, startEchoServer, type Upstream } from '../fixtures/upstreams.js';
import { connectTunnel, nextChunk, readAll } from '../fixtures/clients.js';
import { GatewayControl } from '../../runner/gateway-control.js';
import type { DecisionEvent } from '../../src/audit/types.js';
import { waitUntil } from '../fixtures/wait.js';
import pino from 'pino';
import { createControlServer, unusedExit } from '../../proxy/control-server.js';

const UPSTREAM_IP = '198.19.1.5';

let dir: string;
let dns: TestDnsServer;
let gw: TestGateway;
let echo: Upstream;
let control: GatewayControl;
let removeAlias: () => void;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'clawbox-control-'));
  removeAlias = addLoopbackAlias(UPSTREAM_IP);
  echo = await startEchoServer(UPSTREAM_IP, 443);
  dns = await startTestDnsServer({ 'base.test': { A: [UPSTREAM_IP] }, 'extra.test': { A: [UPSTREAM_IP] } });
  gw = await startTestGateway(`allowed_hosts: [base.test, '${UPSTREAM_IP}']`, dns, { controlSocket: join(dir, 'control.sock') });
  control = await GatewayControl.open(join(dir, 'control.sock'));
});

after(async () => {
  control?.close();
  await gw?.close();
  await dns?.close();
  await echo?.close();
  removeAlias?.();
  rmSync(dir, { recursive: true, force: true });
});

describe('the control socket', () => {
  it('is private to its owner', () => {
    assert.equal(statSync(join(dir, 'control.sock')).mode & 0o777, 0o600);
  });

  it('gives one client its own extra hosts, names the sandbox in audit lines, and counts its traffic', async () => {
    assert.equal((await connectTunnel(gw.gateway.addresses.http, 'extra.test:443')).status, 403);
    await control.register({ client: '127.0.0.1', sandbox: 'c0ffee', tool: 'fetcher', allowed_hosts: ['extra.test'], denied_hosts: ['base.test'] });

    const tunnel = await connectTunnel(gw.gateway.addresses.http, 'extra.test:443');
    assert.equal(tunnel.status, 200);
    tunnel.socket.write('hello');
    assert.equal((await nextChunk(tunnel.socket))?.toString(), 'hello');
    tunnel.socket.end();
    await readAll(tunnel.socket);
    const denied = await connectTunnel(gw.gateway.addresses.http, 'base.test:443');
    assert.equal(denied.status, 403, 'the sandbox\'s own denied_hosts apply');

    const decision = gw.decisions().find((e) => e.host === 'extra.test' && e.decision === 'allow');
    assert.equal(decision?.sandbox, 'c0ffee');
    assert.equal(decision?.tool, 'fetcher');
    await gw.waitFor((e): e is typeof e => e.event === 'close' && e.conn === decision?.conn, 'close line');

    const traffic = await control.unregister('127.0.0.1');
    assert.deepEqual(traffic, { allowed: 1, denied: 1, bytes_up: 5, bytes_down: 5, not_allowed: [] });
    assert.equal((await connectTunnel(gw.gateway.addresses.http, 'extra.test:443')).status, 403, 'gone after unregister');
    assert.equal((await connectTunnel(gw.gateway.addresses.http, 'base.test:443')).status, 200);
  });

  it('refuses bad registrations with a reason and keeps serving', async () => {
    await assert.rejects(control.register({ client: 'not-an-ip', sandbox: 'x', allowed_hosts: [], denied_hosts: [] }), /not an IP address/);
    await assert.rejects(control.register({ client: '127.0.0.9', sandbox: 'x', allowed_hosts: ['*'], denied_hosts: [] }), /allowed_hosts\[2\] "\*" is invalid/);
    const raw = connect(join(dir, 'control.sock'));
    await once(raw, 'connect');
    raw.write('this is not json\n');
    const [reply] = (await once(raw, 'data')) as [Buffer];
    assert.match(reply.toString(), /not JSON/);
    raw.destroy();
    await control.ping();
  });
});

describe('a gateway that restarts under its runner', () => {
  it('is told the sandboxes and host addresses again, and their traffic is allowed as before', async () => {
    const path = join(dir, 'control.sock');
    await control.setHostAddresses(['192.0.2.77']);
    await control.register({ client: '127.0.0.1', sandbox: 'c0meback', allowed_hosts: ['extra.test'], denied_hosts: [] });
    assert.equal((await connectTunnel(gw.gateway.addresses.http, 'extra.test:443')).status, 200);
    const restartsBefore = control.restarts;
    // The gateway process goes away and a new one comes up on the same control socket, knowing nothing.
    await gw.close();
    gw = await startTestGateway(`allowed_hosts: [base.test, '${UPSTREAM_IP}']`, dns, { controlSocket: path });
    await waitUntil(() => control.restarts !== restartsBefore, 'the control connection to come back', 2000);
    assert.equal(control.restarts, restartsBefore + 1);

    const tunnel = await connectTunnel(gw.gateway.addresses.http, 'extra.test:443');
    assert.equal(tunnel.status, 200, 'the new gateway process was told the sandbox');
    tunnel.socket.destroy();
    const decision = await gw.waitFor((e): e is DecisionEvent => e.event === 'decision' && e.host === 'extra.test', 'decision');
    assert.equal(decision.sandbox, 'c0meback');
    // The host addresses were told again too: one of them is refused as the host's own.
    const own = await connectTunnel(gw.gateway.addresses.http, '192.0.2.77:443');
    assert.equal(own.status, 403);
    assert.match(own.headers['x-clawbox-rule'] ?? '', /host/);
    const traffic = await control.unregister('127.0.0.1');
    assert.equal(traffic.allowed, 1, 'the totals count from the new registration');
  });

  it('an unregistered sandbox is not told again', async () => {
    const path = join(dir, 'control.sock');
    await control.register({ client: '127.0.0.1', sandbox: 'g0ne', allowed_hosts: ['extra.test'], denied_hosts: [] });
    await control.unregister('127.0.0.1');
    const restartsBefore = control.restarts;
    await gw.close();
    gw = await startTestGateway(`allowed_hosts: [base.test, '${UPSTREAM_IP}']`, dns, { controlSocket: path });
    await waitUntil(() => control.restarts !== restartsBefore, 'the control connection to come back', 2000);
    assert.equal(control.restarts, restartsBefore + 1);
    assert.equal((await connectTunnel(gw.gateway.addresses.http, 'extra.test:443')).status, 403);
  });

  /** A control socket whose gateway answers `answered` requests, then dies on the next one before answering it. */
  async function gatewayDyingAfter(path: string, answered: number): Promise<Server> {
    const dying = createServer((socket) => {
      let seen = 0;
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        for (const line of chunk.split('\n').filter(Boolean)) {
          if (seen++ < answered) {
            socket.write(`${JSON.stringify({ id: (JSON.parse(line) as { id: number }).id, ok: true })}\n`);
            continue;
          }
          socket.destroy();
          dying.close();
          return;
        }
      });
    });
    await new Promise<void>((resolve) => dying.listen(path, resolve));
    return dying;
  }

  it('sends a register cut off by the restart again, to the gateway that comes back', async () => {
    const path = join(dir, 'cut-register.sock');
    const dying = await gatewayDyingAfter(path, 0);
    const cut = await GatewayControl.open(path);
    const registering = cut.register({ client: '127.0.0.1', sandbox: 'cutreg', allowed_hosts: ['extra.test'], denied_hosts: [] });
    await once(dying, 'close');
    const back = await startTestGateway(`allowed_hosts: [base.test, '${UPSTREAM_IP}']`, dns, { controlSocket: path });
    try {
      await registering;
      assert.equal(cut.restarts, 1);
      assert.equal((await connectTunnel(back.gateway.addresses.http, 'extra.test:443')).status, 200, 'the gateway that came back has it');
      assert.equal((await cut.unregister('127.0.0.1')).allowed, 1);
    } finally {
      cut.close();
      await back.close();
    }
  });

  it('an unregister cut off by the restart gets the new gateway\'s zeros, not an error', async () => {
    const path = join(dir, 'cut-unregister.sock');
    const dying = await gatewayDyingAfter(path, 1);
    const cut = await GatewayControl.open(path);
    await cut.register({ client: '127.0.0.1', sandbox: 'cutunreg', allowed_hosts: ['extra.test'], denied_hosts: [] });
    const unregistering = cut.unregister('127.0.0.1');
    await once(dying, 'close');
    const back = await startTestGateway(`allowed_hosts: [base.test, '${UPSTREAM_IP}']`, dns, { controlSocket: path });
    try {
      assert.deepEqual(await unregistering, { allowed: 0, denied: 0, bytes_up: 0, bytes_down: 0, not_allowed: [] });
      assert.equal(cut.restarts, 1);
      assert.equal((await connectTunnel(back.gateway.addresses.http, 'extra.test:443')).status, 403, 'not told again: it was being unregistered');
    } finally {
      cut.close();
      await back.close();
    }
  });

  it('gives up on a gateway that does not come back, and every call then fails at once, naming why', async () => {
    const path = join(dir, 'lonely.sock');
    const lonely = await startTestGateway(`allowed_hosts: [base.test]`, dns, { controlSocket: path });
    const short = await GatewayControl.open(path, { reconnectWithinMs: 300 });
    await short.register({ client: '127.0.0.9', sandbox: 'l0st', allowed_hosts: [], denied_hosts: [] });
    await lonely.close();
    await waitUntil(() => !short.connected, 'the control connection to see the close', 1000);
    assert.equal(short.connected, false);
    await assert.rejects(short.unregister('127.0.0.9'), /closed its control connection .* and was not back within 0\.3 s/);
    await assert.rejects(short.ping(), /was not back within 0\.3 s/);
  });

  it('keeps a connection that close() was asked to end until its registered sandboxes are unregistered', async () => {
    const path = join(dir, 'control.sock');
    const held = await GatewayControl.open(path);
    await held.register({ client: '127.0.0.1', sandbox: 'l0ng', allowed_hosts: ['extra.test'], denied_hosts: [] });
    held.close(); // an environment replaced while this run still goes on
    assert.equal((await connectTunnel(gw.gateway.addresses.http, 'extra.test:443')).status, 200);
    const traffic = await held.unregister('127.0.0.1');
    assert.equal(traffic.allowed, 1, 'the run got its totals');
    await assert.rejects(held.ping(), /closed by this process/);
  });
});

describe('the control socket with exit_when_unused', () => {
  // Long enough that a runner connecting right after the listen is always in time, even on a loaded machine.
  const LIMIT_MS = 1000;
  let unusedDir: string;
  let server: Server | null = null;
  let calls = 0;

  before(() => {
    unusedDir = mkdtempSync(join(tmpdir(), 'clawbox-unused-'));
  });

  after(() => {
    server?.close();
    rmSync(unusedDir, { recursive: true, force: true });
  });

  const handlers = { register: () => undefined, unregister: () => ({ allowed: 0, denied: 0, bytes_up: 0, bytes_down: 0, not_allowed: [] }), setHostAddresses: () => undefined };

  it('calls onUnused once no runner has been connected for the limit, never while one is', async () => {
    const path = join(unusedDir, 'control.sock');
    server = await createControlServer(path, handlers, pino({ level: 'silent' }), { afterMs: LIMIT_MS, onUnused: () => (calls += 1) });
    // A runner connects before the limit and stays for twice as long: no call.
    const runner = await GatewayControl.open(path);
    await runner.ping();
    await new Promise((r) => setTimeout(r, 2 * LIMIT_MS));
    assert.equal(calls, 0, 'a connected runner keeps the gateway');
    // A second runner comes and goes while the first stays: still none.
    const other = await GatewayControl.open(path);
    await other.ping();
    other.close();
    await new Promise((r) => setTimeout(r, 1.5 * LIMIT_MS));
    assert.equal(calls, 0, 'one runner leaving while another stays is not unused');
    runner.close();
    await waitUntil(() => calls === 1, 'onUnused after the last runner left');
  });

  it('is not armed without a limit', () => {
    assert.equal(unusedExit(undefined, () => undefined), undefined);
    assert.equal(unusedExit(0, () => undefined), undefined, "0 is 'off'");
    assert.equal(unusedExit(1000, undefined), undefined);
    assert.deepEqual(unusedExit(1000, () => undefined)?.afterMs, 1000);
  });
});
