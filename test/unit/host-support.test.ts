import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseCpuList, probeFromInfo } from '../../runner/host-support.js';

void describe('probeFromInfo', () => {
  let root = '';
  const file = (path: string, text = ''): void => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  };
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'clawbox-sysfs-'));
    file('/sys/module/apparmor/parameters/enabled', 'N\n');
    file('/sys/fs/cgroup/blkio/blkio.bfq.weight', '100');
    file('/sys/fs/cgroup/cpuset/cpuset.cpus', '0-2,5\n');
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const base = {
    CgroupVersion: '1',
    Driver: 'overlay2',
    DockerRootDir: '/var/lib/docker',
    InitBinary: 'docker-init',
    NCPU: 6,
    MemTotal: 1024,
  };

  void it('needs AppArmor both in the daemon and enabled in the kernel', () => {
    const h = probeFromInfo({ ...base, SecurityOptions: ['name=apparmor', 'name=seccomp,profile=default'] }, root);
    assert.equal(h.seccomp.supported, true);
    assert.equal(h.apparmor.supported, false);
    assert.match(h.apparmor.reason, /not enabled in this kernel/);
    assert.equal(h.selinux.supported, false);
  });
  void it('knows overlay2 disk quotas need xfs', () => {
    const xfs = probeFromInfo({ ...base, DriverStatus: [['Backing Filesystem', 'xfs']] }, root);
    const ext4 = probeFromInfo({ ...base, DriverStatus: [['Backing Filesystem', 'extfs']] }, root);
    assert.equal(xfs.diskQuota.supported, true);
    assert.equal(ext4.diskQuota.supported, false);
    assert.equal(ext4.diskQuota.reason, 'overlay2 on ext4 has no project quotas; a disk quota needs overlay2 on xfs mounted with pquota');
  });
  void it('reads blkio weight, throttling, cpuset and swap support', () => {
    const h = probeFromInfo({ ...base, SwapLimit: false }, root);
    assert.equal(h.blkioWeight.supported, true);
    assert.equal(h.iopsThrottle.supported, false);
    assert.deepEqual(h.cpuset.cpus, [0, 1, 2, 5]);
    assert.equal(h.swapLimit.supported, false);
    assert.match(h.swapLimit.reason, /swapaccount=1/);
  });
  void it('parses cpu lists', () => {
    assert.deepEqual(parseCpuList('0-1,4, 6-7'), [0, 1, 4, 6, 7]);
    assert.deepEqual(parseCpuList(''), []);
  });
});
