import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { parseConfig } from '../../src/config/load.js';
import { ClawboxError } from '../../src/errors.js';
import { createContainer, dockerClient } from '../../runner/docker-client.js';
import { runSandbox } from '../../runner/sandbox.js';

/**
 * A stand-in engine on a Unix socket of its own (no Docker needed): it answers the ping, and /info with a host
 * that has no seccomp, so a run that gets as far as the host probe stops there (LIMIT_UNENFORCEABLE) before it
 * asks for anything else. It counts requests and connections.
 */
interface FakeEngine {
  readonly socket: string;
  readonly paths: string[];
  /** Each create's request target and body, as sent. */
  readonly creates: Array<{ readonly url: string; readonly body: string }>;
  connections: number;
  close(): Promise<void>;
}

async function startFakeEngine(dir: string): Promise<FakeEngine> {
  const socket = join(dir, 'engine.sock');
  const paths: string[] = [];
  const creates: Array<{ url: string; body: string }> = [];
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').replace(/^\/v[0-9.]+/, '').split('?')[0] ?? '';
    paths.push(path);
    if (path === '/_ping') res.end('OK');
    else if (path === '/containers/create') {
      let body = '';
      req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        creates.push({ url: req.url ?? '', body });
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ Id: 'c0ffee', Warnings: [] }));
      });
    }
    else if (path === '/info') res.setHeader('content-type', 'application/json').end(JSON.stringify({ MemoryLimit: false, SecurityOptions: [] }));
    else res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ message: `the fake engine has no ${path}` }));
  });
  const engine: FakeEngine = {
    socket,
    paths,
    creates,
    connections: 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  server.on('connection', () => (engine.connections += 1));
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return engine;
}

describe('the Docker engine client', () => {
  let dir: string;
  let engine: FakeEngine;
  const savedHost = process.env.DOCKER_HOST;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'clawbox-engine-'));
    engine = await startFakeEngine(dir);
  });
  after(async () => {
    if (savedHost === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = savedHost;
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps its connection to the engine between requests, and formats its agent as a name', async () => {
    process.env.DOCKER_HOST = `unix://${engine.socket}`;
    const docker = dockerClient();
    const connectionsBefore = engine.connections;
    await docker.ping();
    await docker.ping();
    assert.equal(engine.connections - connectionsBefore, 1);
    // docker-modem formats every request's options, agent included, for its debug log.
    assert.equal(inspect((docker.modem as unknown as { agent: unknown }).agent, { showHidden: true, depth: null }), 'EngineAgent');
  });

  it('sends a container\'s spec once, as the body: the request line carries none of it', async () => {
    process.env.DOCKER_HOST = `unix://${engine.socket}`;
    const spec = { Image: 'openclaw-sandbox:latest', Labels: { 'dev.clawbox.test': 'x'.repeat(2000) }, HostConfig: { SecurityOpt: [`seccomp=${'{}'.padEnd(4000)}`] } };
    const container = await createContainer(dockerClient(), spec);
    assert.equal(container.id, 'c0ffee');
    const sent = engine.creates.at(-1);
    // dockerode alone would also put every option in the query string, the objects as JSON (over 6 KB here).
    assert.match(sent?.url ?? '', /^(\/v[0-9.]+)?\/containers\/create\??$/);
    assert.deepEqual(JSON.parse(sent?.body ?? 'null'), spec);
  });

  it('leaves an engine reached over TLS to docker-modem\'s own agent', () => {
    const certs = join(dir, 'certs');
    mkdirSync(certs, { recursive: true });
    // Read as text only (docker-modem checks the PEM markers); nothing is ever verified with them.
    for (const file of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(certs, file), '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n');
    const saved = { DOCKER_CERT_PATH: process.env.DOCKER_CERT_PATH, DOCKER_TLS_VERIFY: process.env.DOCKER_TLS_VERIFY };
    try {
      // Nothing is sent: the client is only made. 192.0.2.1 is TEST-NET-1.
      process.env.DOCKER_HOST = 'tcp://192.0.2.1:2376';
      process.env.DOCKER_CERT_PATH = certs;
      process.env.DOCKER_TLS_VERIFY = '1';
      const modem = dockerClient().modem as unknown as { protocol: string; agent?: unknown };
      assert.equal(modem.protocol, 'https');
      assert.equal(modem.agent, undefined);
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });

  it('fails a run with DOCKER_UNAVAILABLE when the engine does not answer, then asks a reachable engine afresh', async () => {
    const config = parseConfig('sandbox: {}\n').sandbox;
    const stateDir = join(dir, 'state');
    const missing = join(dir, 'no-engine.sock');
    process.env.DOCKER_HOST = `unix://${missing}`;
    // The run's first requests go out beside the ping: whichever fails first, the engine's error is the one told.
    await assert.rejects(runSandbox({ config, command: ['true'], stateDir }), (err: unknown) => {
      assert.ok(err instanceof ClawboxError);
      assert.equal(err.code, 'DOCKER_UNAVAILABLE');
      assert.match(err.message, /cannot reach the Docker engine .*no-engine\.sock/);
      return true;
    });
    // The failed host probe was not kept: with an engine that answers, the run asks it (and stops at its answer).
    process.env.DOCKER_HOST = `unix://${engine.socket}`;
    engine.paths.length = 0;
    await assert.rejects(runSandbox({ config, command: ['true'], stateDir }), (err: unknown) => {
      assert.ok(err instanceof ClawboxError);
      assert.equal(err.code, 'LIMIT_UNENFORCEABLE', err.message);
      return true;
    });
    assert.ok(engine.paths.includes('/info'), `asked: ${engine.paths.join(', ')}`);
  });
});
