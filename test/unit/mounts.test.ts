import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, linkSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkMounts, checkTarget, resolveMounts } from '../../runner/mounts.js';

type Mode = 'ro' | 'rw';
const m = (source: string, target = '/data', mode: Mode = 'ro') => ({ source, target, mode });

void describe('checkMounts', () => {
  let dir = '';
  let blocked = '';
  let server: Server | undefined;
  let fakeDockerSock = '';

  before(async () => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'clawbox-mounts-')));
    blocked = join(dir, 'home');
    mkdirSync(join(blocked, 'user', 'data'), { recursive: true });
    mkdirSync(join(dir, 'ok', 'nested'), { recursive: true });
    writeFileSync(join(dir, 'ok', 'nested', 'file.txt'), 'x');
    symlinkSync(join(blocked, 'user', 'data'), join(dir, 'sneaky')); // a symlink pointing into a blocked path
    mkdirSync(join(dir, 'project', 'deep', 'er', '.ssh'), { recursive: true });
    mkdirSync(join(dir, 'keys', '.ssh', 'sub'), { recursive: true });
    symlinkSync('/var/run/docker.sock', join(dir, 'docker.sock.link'));
    mkdirSync(join(dir, 'big'));
    for (let i = 0; i < 30; i++) writeFileSync(join(dir, 'big', `f${i}`), '');
    // A stand-in Docker socket (checked by identity) and a hard link to it inside a directory source.
    mkdirSync(join(dir, 'sockdir'));
    fakeDockerSock = join(dir, 'fake-docker.sock');
    server = createServer();
    await new Promise<void>((resolve) => server?.listen(fakeDockerSock, resolve));
    linkSync(fakeDockerSock, join(dir, 'sockdir', 'innocent'));
  });
  after(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  void it('accepts a plain directory and returns its real path', () => {
    const r = resolveMounts([m(join(dir, 'ok'), '/data', 'rw')], [blocked]);
    assert.deepEqual(r, { mounts: [{ source: join(dir, 'ok'), target: '/data', mode: 'rw' }] });
  });

  void it('refuses a source inside a blocked path, with index, source, target and the blocked path', () => {
    const p = checkMounts([m(join(dir, 'ok')), m(join(blocked, 'user', 'data'), '/x')], [blocked]);
    assert.equal(p.length, 1);
    assert.equal(p[0]?.index, 1);
    assert.equal(p[0]?.message, `sandbox.mounts[1]: ${join(blocked, 'user', 'data')} lies inside blocked path ${blocked} (target /x)`);
  });

  void it('refuses a symlink whose real path is inside a blocked path', () => {
    const p = checkMounts([m(join(dir, 'sneaky'))], [blocked]);
    assert.match(p[0]?.message ?? '', new RegExp(`sneaky \\(real path ${blocked}/user/data\\) lies inside blocked path ${blocked}`));
  });

  void it('refuses a source that is or contains a blocked path', () => {
    assert.match(checkMounts([m(blocked)], [blocked])[0]?.message ?? '', /is blocked path/);
    assert.match(checkMounts([m(dir)], [blocked])[0]?.message ?? '', new RegExp(`contains blocked path ${blocked}`));
  });

  void it('refuses a blocked path given through a symlinked form', () => {
    // Blocking the symlink blocks what it points to.
    const p = checkMounts([m(join(blocked, 'user', 'data'))], [join(dir, 'sneaky')]);
    assert.match(p[0]?.message ?? '', /is blocked path/);
  });

  void it('refuses .ssh directories on the path and anywhere below', () => {
    assert.match(checkMounts([m(join(dir, 'keys', '.ssh', 'sub'))], [])[0]?.message ?? '', /inside a \.ssh directory/);
    assert.match(checkMounts([m(join(dir, 'project'))], [])[0]?.message ?? '', /contains a \.ssh directory at .*deep\/er\/\.ssh/);
  });

  void it('refuses the Docker socket through a symlink even when not listed as blocked', () => {
    const p = checkMounts([m(join(dir, 'docker.sock.link'), '/var/run/docker.sock')], []);
    assert.match(p[0]?.message ?? '', /is the Docker socket/);
  });

  void it('refuses a hard link to the Docker socket inside a directory source', () => {
    const p = checkMounts([m(join(dir, 'sockdir'))], [], { dockerSockets: [fakeDockerSock] });
    assert.match(p[0]?.message ?? '', /contains the Docker socket at .*sockdir\/innocent/);
    const direct = checkMounts([m(join(dir, 'sockdir', 'innocent'), '/s')], [], { dockerSockets: [fakeDockerSock] });
    assert.match(direct[0]?.message ?? '', /is the Docker socket \(a link to it\)/);
  });

  void it('refuses / and missing sources', () => {
    assert.match(checkMounts([m('/')], [])[0]?.message ?? '', /host root/);
    const missing = join(dir, 'nope');
    assert.equal(existsSync(missing), false);
    assert.equal(checkMounts([m(missing)], [])[0]?.message, `sandbox.mounts[0]: source ${missing} does not exist (target /data)`);
  });

  void it('refuses a source too large to check', () => {
    assert.match(checkMounts([m(join(dir, 'big'))], [], { walkLimit: 10 })[0]?.message ?? '', /more than 10 entries/);
    assert.deepEqual(checkMounts([m(join(dir, 'big'))], [], { walkLimit: 100 }), []);
  });

  void it('refuses bad and duplicate targets', () => {
    const ok = join(dir, 'ok');
    const p = checkMounts([m(ok, '/'), m(ok, '/proc/x'), m(ok, '/sys'), m(ok, '/dev/shm'), m(ok, '/a/../b'), m(ok, '/d'), m(ok, '/d')], []);
    assert.equal(p.length, 6);
    assert.match(p[0]?.message ?? '', /target \/ would replace the container root/);
    assert.match(p[1]?.message ?? '', /inside \/proc/);
    assert.match(p[2]?.message ?? '', /inside \/sys/);
    assert.match(p[3]?.message ?? '', /inside \/dev/);
    assert.match(p[4]?.message ?? '', /not normalised \(write \/b\)/);
    assert.match(p[5]?.message ?? '', /^sandbox\.mounts\[6\]: target \/d is already used by sandbox\.mounts\[5\]/);
  });

  void it('checkTarget accepts ordinary absolute targets', () => {
    assert.equal(checkTarget('/workspace/data'), null);
    assert.match(checkTarget('/data/') ?? '', /not normalised/);
    assert.match(checkTarget('/a:b') ?? '', /':'/);
  });

  void it('refuses the default blocked paths of the seed config', () => {
    const defaults = ['/home', '/root', '/.ssh', '/etc/passwd', '/var/log', '/proc', '/sys', '/var/run/docker.sock', '/run/docker.sock'];
    assert.match(checkMounts([m('/etc/passwd')], defaults)[0]?.message ?? '', /is blocked path \/etc\/passwd/);
    assert.match(checkMounts([m('/etc')], defaults)[0]?.message ?? '', /contains blocked path \/etc\/passwd/);
    assert.match(checkMounts([m('/proc/self')], defaults).map((p) => p.message).join(), /lies inside blocked path \/proc/);
  });
});
