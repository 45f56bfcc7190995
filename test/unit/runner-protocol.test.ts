import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeExit, encodeFrame, FRAME, FrameReader, MAX_FRAME_BYTES, readRunnerPid, runnerPidFile, runnerSocket } from '../../src/cli/runner-protocol.js';

describe('resident runner protocol', () => {
  it('reads frames however the bytes are split, in order', () => {
    const bytes = Buffer.concat([encodeFrame(FRAME.accepted), encodeFrame(FRAME.stdout, 'out\n'), encodeFrame(FRAME.stderr, Buffer.from([0, 255])), encodeExit(3)]);
    for (const step of [1, 2, 5, 7, bytes.length]) {
      const reader = new FrameReader();
      const frames = [];
      for (let at = 0; at < bytes.length; at += step) frames.push(...reader.push(bytes.subarray(at, at + step)));
      assert.deepEqual(
        frames.map((f) => [f.type, f.payload.toString('hex')]),
        [
          [FRAME.accepted, ''],
          [FRAME.stdout, Buffer.from('out\n').toString('hex')],
          [FRAME.stderr, '00ff'],
          [FRAME.exit, '00000003'],
        ],
        `split every ${step} bytes`,
      );
    }
  });

  it('refuses a frame larger than its limit before reading it', () => {
    const head = Buffer.alloc(5);
    head.writeUInt8(FRAME.request, 0);
    head.writeUInt32BE(MAX_FRAME_BYTES + 1, 1);
    assert.throws(() => new FrameReader().push(head), /a frame of 1048577 bytes \(at most 1048576\)/);
  });

  it('carries negative exit codes', () => {
    const [frame] = new FrameReader().push(encodeExit(-1));
    assert.equal(frame?.payload.readInt32BE(0), -1);
  });

  it('names one runner per build, HOME and engine, and a socket per runner', () => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-runner-'));
    const bundle = join(dir, 'clawbox.cjs');
    writeFileSync(bundle, '1');
    const base = runnerPidFile('/run/x', bundle, { HOME: '/root' });
    assert.match(base, /^\/run\/x\/pool\/runner-[0-9a-f]{16}\.pid$/);
    assert.equal(runnerPidFile('/run/x', bundle, { HOME: '/root' }), base);
    assert.notEqual(runnerPidFile('/run/x', bundle, { HOME: '/home/other' }), base);
    assert.notEqual(runnerPidFile('/run/x', bundle, { HOME: '/root', DOCKER_HOST: 'tcp://10.0.0.1:2376' }), base);
    writeFileSync(bundle, '12'); // rebuilt: another size
    assert.notEqual(runnerPidFile('/run/x', bundle, { HOME: '/root' }), base);
    assert.equal(runnerSocket(base, 42), base.replace(/\.pid$/, '-42.sock'));
  });

  it('reads a pid file, and nothing from a missing or damaged one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-runner-'));
    const file = join(dir, 'runner.pid');
    assert.equal(readRunnerPid(file), null);
    writeFileSync(file, '1234');
    assert.equal(readRunnerPid(file), 1234);
    for (const damaged of ['', 'x', '-1', '1.5', '0']) {
      writeFileSync(file, damaged);
      assert.equal(readRunnerPid(file), null, `'${damaged}'`);
    }
  });
});
