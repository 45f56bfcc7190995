import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { attemptsOf, KernelLogCursor, parseDirectAttempt, sequenceOf } from '../../runner/direct-attempts.js';

// Kernel log messages as the LOG target writes them (IN/OUT/MAC elided where irrelevant).
const SYN = 'clawbox-direct: IN=clawbox-sbx0 OUT=eth0 MAC=02:42 SRC=10.213.0.9 DST=198.19.2.20 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=40000 DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0';
const RETRANSMIT = SYN.replace('ID=1', 'ID=2');
const UDP = 'clawbox-direct: IN=clawbox-sbx0 OUT= SRC=10.213.0.9 DST=10.213.0.1 LEN=29 PROTO=UDP SPT=5353 DPT=53 LEN=9';
const PING = 'clawbox-direct: IN=clawbox-sbx0 OUT=eth0 SRC=10.213.0.9 DST=192.0.2.1 LEN=84 PROTO=ICMP TYPE=8 CODE=0 ID=7 SEQ=1';
const OTHER_SANDBOX = SYN.replace('SRC=10.213.0.9', 'SRC=10.213.0.10');

describe('direct attempts from the firewall log', () => {
  it('parses what the LOG target writes', () => {
    assert.deepEqual(parseDirectAttempt(SYN), { source: '10.213.0.9', destination: '198.19.2.20', protocol: 'TCP', port: 80, sourcePort: 40000 });
    assert.deepEqual(parseDirectAttempt(PING), { source: '10.213.0.9', destination: '192.0.2.1', protocol: 'ICMP', port: 0, sourcePort: 0 });
    assert.equal(parseDirectAttempt('clawbox-sbx0: port 2(veth1) entered forwarding state'), null);
    assert.equal(parseDirectAttempt('clawbox-direct: garbage without addresses'), null);
  });

  it('keeps one line per attempt of the given sandbox, retransmissions folded', () => {
    const attempts = attemptsOf([SYN, RETRANSMIT, UDP, PING, OTHER_SANDBOX, 'unrelated'], '10.213.0.9');
    assert.deepEqual(attempts.map((a) => `${a.protocol} ${a.destination}:${a.port}`), ['TCP 198.19.2.20:80', 'UDP 10.213.0.1:53', 'ICMP 192.0.2.1:0']);
  });

  it('caps the number of lines', () => {
    const many = Array.from({ length: 500 }, (_, i) => SYN.replace('SPT=40000', `SPT=${1000 + i}`));
    assert.equal(attemptsOf(many, '10.213.0.9', 100).length, 100);
  });
});

describe('the kernel log cursor', () => {
  it('reads the sequence number from a record\'s bytes', () => {
    const bytes = (text: string): Buffer => Buffer.from(text);
    assert.equal(sequenceOf(bytes('6,162684,48373018247,-;clawbox-sbx0: port 1'), 44), 162684);
    assert.equal(sequenceOf(bytes('4,0,1,-;first'), 13), 0);
    // Only the record's own bytes count: a stale tail in the buffer is not read.
    assert.ok(Number.isNaN(sequenceOf(bytes('6,12,345'), 4)));
    assert.ok(Number.isNaN(sequenceOf(bytes('6,,345,-;x'), 10)));
    assert.ok(Number.isNaN(sequenceOf(bytes('6;no fields'), 11)));
    assert.ok(Number.isNaN(sequenceOf(bytes('6,12x,3,-;x'), 11)));
  });

  it('returns what was logged after it was opened, once', (t) => {
    const cursor = KernelLogCursor.open();
    if (cursor === null) {
      t.skip('this host does not let us read /dev/kmsg (root only)');
      return;
    }
    const before = `clawbox-test before ${randomUUID()}`;
    const after = `clawbox-test after ${randomUUID()}`;
    // A write to /dev/kmsg is one record in the kernel's log (root only, like the read).
    writeFileSync('/dev/kmsg', `${before}\n`);
    const fresh = KernelLogCursor.open()!;
    writeFileSync('/dev/kmsg', `${after}\n`);
    assert.deepEqual(fresh.readNew().filter((m) => m.startsWith('clawbox-test')), [after]);
    assert.deepEqual(fresh.readNew().filter((m) => m.startsWith('clawbox-test')), []);
    assert.deepEqual(cursor.readNew().filter((m) => m.startsWith('clawbox-test')), [before, after]);
  });

  it('opens a slice at a time, letting other callbacks run between slices, to the same place as open()', async (t) => {
    if (KernelLogCursor.open() === null) {
      t.skip('this host does not let us read /dev/kmsg (root only)');
      return;
    }
    const before = `clawbox-test before ${randomUUID()}`;
    const after = `clawbox-test after ${randomUUID()}`;
    writeFileSync('/dev/kmsg', `${before}\n`);
    writeFileSync('/dev/kmsg', `${before} again\n`);
    let ranBetween = false;
    setImmediate(() => (ranBetween = true));
    const cursor = await KernelLogCursor.openPatiently(1);
    assert.ok(cursor);
    assert.equal(ranBetween, true, 'a callback queued before it ran before it finished');
    writeFileSync('/dev/kmsg', `${after}\n`);
    assert.deepEqual(cursor.readNew().filter((m) => m.startsWith('clawbox-test')), [after]);
  });

  it('resumes from a bookmark taken in another process, in this boot only', (t) => {
    const cursor = KernelLogCursor.open();
    if (cursor === null) {
      t.skip('this host does not let us read /dev/kmsg (root only)');
      return;
    }
    // The bookmark is taken in a process of its own, as a pool refill helper takes it.
    const script = `import { KernelLogCursor } from ${JSON.stringify(join(import.meta.dirname, '../../dist/runner/direct-attempts.js'))};
process.stdout.write(KernelLogCursor.open().bookmark());`;
    const before = `clawbox-test before ${randomUUID()}`;
    const after = `clawbox-test after ${randomUUID()}`;
    writeFileSync('/dev/kmsg', `${before}\n`);
    const bookmark = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    writeFileSync('/dev/kmsg', `${after}\n`);
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    assert.match(bookmark, new RegExp(`^${boot}:\\d+$`));
    const resumed = KernelLogCursor.fromBookmark(bookmark);
    assert.ok(resumed);
    assert.deepEqual(resumed.readNew().filter((m) => m.startsWith('clawbox-test')), [after]);
    assert.equal(resumed.bookmark()?.startsWith(`${boot}:`), true);

    // Sequence numbers start again at each boot: another boot's bookmark would skip this boot's records.
    const otherBoot = `${boot.slice(0, -1)}${boot.endsWith('0') ? '1' : '0'}`;
    assert.equal(KernelLogCursor.fromBookmark(bookmark.replace(boot, otherBoot)), null);
    for (const bad of [undefined, '', 'nonsense', `${boot}:`, `${boot}:12x`, `${boot}:-2`, `${boot}:1e5`]) {
      assert.equal(KernelLogCursor.fromBookmark(bad), null, String(bad));
    }
  });
});
