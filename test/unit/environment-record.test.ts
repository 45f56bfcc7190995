import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEnvironmentRecord, readEnvironmentRecord, recordPath, writeEnvironmentRecord, type EnvironmentRecord } from '../../runner/environment-record.js';

const RECORD: EnvironmentRecord = {
  key: 'k',
  digest: 'd1',
  checkedAt: 1_000_000,
  network: { name: 'clawbox-sandboxes', subnet: '10.213.0.0/24', gatewayIp: '10.213.0.2' },
  resolvConf: '/run/clawbox/gateway/resolv.conf',
  proxyEnv: { HTTP_PROXY: 'http://10.213.0.2:3128' },
  auditTrail: '/var/log/clawbox/audit.log',
};

describe('environment record', () => {
  it('is read back only for its key and while it is fresh', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-record-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'gateway'));
    assert.equal(readEnvironmentRecord(dir, 'k', RECORD.checkedAt, 30_000), null, 'none yet');
    writeEnvironmentRecord(dir, RECORD);
    assert.equal(statSync(recordPath(dir, 'k')).mode & 0o777, 0o600);
    assert.deepEqual(readEnvironmentRecord(dir, 'k', RECORD.checkedAt + 29_999, 30_000), RECORD);
    assert.equal(readEnvironmentRecord(dir, 'other', RECORD.checkedAt, 30_000), null, 'other settings');
    assert.equal(readEnvironmentRecord(dir, 'k', RECORD.checkedAt + 30_000, 30_000), null, 'too old');
    assert.equal(readEnvironmentRecord(dir, 'k', RECORD.checkedAt - 1, 30_000), null, 'from the future (the clock went back)');
    // Runs with other gateway settings keep a record of their own, beside this one.
    writeEnvironmentRecord(dir, { ...RECORD, key: 'other', digest: 'd2' });
    assert.equal(readEnvironmentRecord(dir, 'other', RECORD.checkedAt, 30_000)?.digest, 'd2');
    assert.equal(readEnvironmentRecord(dir, 'k', RECORD.checkedAt, 30_000)?.digest, 'd1');
  });

  it('refuses a record that does not parse or lacks a field, as no record', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-record-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'gateway'));
    writeFileSync(recordPath(dir, 'k'), '{"key":"k",');
    assert.equal(readEnvironmentRecord(dir, 'k', RECORD.checkedAt, 30_000), null);
    assert.deepEqual(parseEnvironmentRecord(JSON.stringify(RECORD)), RECORD);
    for (const broken of [
      { ...RECORD, digest: 7 },
      { ...RECORD, checkedAt: 'now' },
      { ...RECORD, network: { name: 'n', subnet: 's' } },
      { ...RECORD, proxyEnv: { HTTP_PROXY: 1 } },
      { ...RECORD, resolvConf: undefined },
      [RECORD],
      null,
    ]) {
      assert.equal(parseEnvironmentRecord(JSON.stringify(broken)), null, JSON.stringify(broken));
    }
  });

  it('writing never throws: without a record the next run checks everything', () => {
    assert.doesNotThrow(() => writeEnvironmentRecord('/nonexistent/clawbox', RECORD));
  });
});
