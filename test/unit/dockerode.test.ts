import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Runs in a fresh process, so that the module cache starts empty: what loading dockerode pulls in, and whether
 * the deferred parts still work when used. Nothing leaves this machine: the SSH attempt goes to a closed port on
 * 127.0.0.1, and the BuildKit session's dial fails before any connection.
 */
const SCRIPT = `
import net from 'node:net';
import { createRequire } from 'node:module';
import { dockerodeClass } from ${JSON.stringify(new URL('../../runner/dockerode.ts', import.meta.url).href)};
const r = createRequire(import.meta.url);
const loaded = (part) => Object.keys(r.cache).some((k) => k.includes(part));
const Docker = dockerodeClass();
const out = { same: dockerodeClass() === Docker, grpcAtLoad: loaded('/@grpc/'), ssh2AtLoad: loaded('/ssh2/') };
const closed = net.createServer();
await new Promise((resolve) => closed.listen(0, '127.0.0.1', resolve));
const { port } = closed.address();
await new Promise((resolve) => closed.close(resolve));
try {
  await new Docker({ protocol: 'ssh', host: '127.0.0.1', port, username: 'nobody' }).ping();
  out.ssh = 'answered';
} catch (err) {
  out.ssh = err.code ?? err.message;
}
out.ssh2AfterSsh = loaded('/ssh2/');
const withSession = createRequire(r.resolve('dockerode'))('./session.js');
out.session = await new Promise((resolve) =>
  withSession({ modem: { dial: (_opts, callback) => callback(new Error('no engine here')) } }, null, (err) => resolve(err.message)),
);
out.grpcAfterSession = loaded('/@grpc/');
console.log(JSON.stringify(out));
`;

describe('dockerodeClass', () => {
  it('loads dockerode without gRPC and ssh2, and each loads when first used', () => {
    const run = spawnSync(process.execPath, ['--no-deprecation', '--import', 'tsx', '--input-type=module', '-e', SCRIPT], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
    assert.deepEqual(out, {
      same: true,
      grpcAtLoad: false,
      ssh2AtLoad: false,
      // ssh2 itself reports the refused connection: the deferred transport was loaded and used.
      ssh: 'ECONNREFUSED',
      ssh2AfterSsh: true,
      session: 'no engine here',
      grpcAfterSession: true,
    });
  });
});

describe('the CLI bundle', () => {
  // The build (npm run build, which `npm test` runs first) made dist/bundle/clawbox.cjs with dockerode inside.
  it('has dockerode without gRPC and ssh2, and loads ssh2 when DOCKER_HOST asks for SSH', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-bundle-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    // Records every file the CommonJS loader reads from node_modules (the bundle reads none for what it holds).
    const preload = join(dir, 'record.cjs');
    const loadedList = join(dir, 'loaded.json');
    writeFileSync(preload, `const Module = require('node:module'); const seen = new Set(); const load = Module._load;
Module._load = function (request, parent) { try { seen.add(Module._resolveFilename(request, parent)); } catch {} return load.apply(this, arguments); };
process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(loadedList)}, JSON.stringify([...seen])));`);
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const launcher = join(import.meta.dirname, '../../dist/bundle/launch.cjs');
    const run = spawnSync(process.execPath, ['--no-deprecation', '--require', preload, launcher, 'gc'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, DOCKER_HOST: `ssh://nobody@127.0.0.1:${port}` },
    });
    assert.equal(run.status, 1);
    // ssh2 itself reports the refused connection: the deferred transport was loaded and used.
    assert.match(run.stderr, new RegExp(`cannot reach the Docker engine \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\)`));
    const loaded = JSON.parse(readFileSync(loadedList, 'utf8')) as string[];
    const from = (part: string): boolean => loaded.some((file) => file.includes(`/node_modules/${part}/`));
    assert.deepEqual(
      { ssh2: from('ssh2'), grpc: from('@grpc/grpc-js'), dockerode: from('dockerode'), zod: from('zod') },
      { ssh2: true, grpc: false, dockerode: false, zod: false },
    );
  });
});
