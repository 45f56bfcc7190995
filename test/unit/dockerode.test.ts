import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

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
