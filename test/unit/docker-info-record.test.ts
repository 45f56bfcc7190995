import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { infoRecordPath, recordedDockerInfo } from '../../runner/docker-info-record.js';

/** A daemon stand-in for the record's logic: counts the times it is asked. The socket is a plain file here. */
function daemonAt(socketPath: string | undefined): Pick<Dockerode, 'info' | 'modem'> & { asked: number } {
  const daemon = {
    asked: 0,
    modem: { socketPath } as unknown as Dockerode['modem'],
    info: () => {
      daemon.asked += 1;
      return Promise.resolve({ CgroupVersion: '1', SecurityOptions: ['name=seccomp,profile=builtin'], asked: daemon.asked });
    },
  };
  return daemon;
}

describe('recordedDockerInfo', () => {
  it("reuses the same daemon's answer for ten minutes, and asks again for another daemon or an older answer", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-info-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const socket = join(dir, 'docker.sock');
    writeFileSync(socket, '');
    const daemon = daemonAt(socket);
    const now = 1_000_000;
    assert.equal((await recordedDockerInfo(daemon, dir, now)).asked, 1);
    assert.equal(statSync(infoRecordPath(dir)).mode & 0o777, 0o600);
    assert.equal((await recordedDockerInfo(daemon, dir, now + 599_999)).asked, 1, 'the recorded answer');
    assert.equal(daemon.asked, 1);
    assert.equal((await recordedDockerInfo(daemon, dir, now + 600_000)).asked, 2, 'too old: asked again');
    // A restarted daemon makes its socket anew: another inode, so the record is another daemon's.
    rmSync(socket);
    writeFileSync(join(dir, 'placeholder'), ''); // keeps the old inode from being reused at once
    writeFileSync(socket, '');
    assert.equal((await recordedDockerInfo(daemon, dir, now + 600_001)).asked, 3, 'another daemon: asked again');
  });

  it('keeps no record for a daemon that is not on a local socket, and takes a broken record as none', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-info-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const remote = daemonAt(undefined);
    await recordedDockerInfo(remote, dir);
    await recordedDockerInfo(remote, dir);
    assert.equal(remote.asked, 2);
    const socket = join(dir, 'docker.sock');
    writeFileSync(socket, '');
    const local = daemonAt(socket);
    for (const broken of ['{"daemon":', '[]', '{"daemon":"x","savedAt":"now","info":{}}']) {
      writeFileSync(infoRecordPath(dir), broken);
      await recordedDockerInfo(local, dir);
    }
    assert.equal(local.asked, 3);
  });
});
