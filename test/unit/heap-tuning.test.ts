import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GATEWAY_COMMAND_LINE_V8_FLAGS, gatewayWorkerExecArgv } from '../../proxy/heap-tuning.js';
import { missingGatewayFlags } from '../fixtures/node-argv.js';

const ROOT = join(import.meta.dirname, '..', '..');

describe('the V8 flags a gateway process needs on its command line', () => {
  it('turns the memory reducer off', () => {
    assert.ok(GATEWAY_COMMAND_LINE_V8_FLAGS.includes('--no-memory-reducer'));
  });

  it('puts a floor of 64 MB under the old generation', () => {
    assert.ok(GATEWAY_COMMAND_LINE_V8_FLAGS.includes('--initial-old-space-size=64'));
  });

  it('keeps the young generation at 8 MB a semi-space, neither shrinking nor growing', () => {
    assert.ok(GATEWAY_COMMAND_LINE_V8_FLAGS.includes('--min-semi-space-size=8'));
    assert.ok(GATEWAY_COMMAND_LINE_V8_FLAGS.includes('--max-semi-space-size=8'));
  });

  it('collects the young generation on the event loop\'s thread alone', () => {
    assert.ok(GATEWAY_COMMAND_LINE_V8_FLAGS.includes('--no-parallel-scavenge'));
  });

  it('gives cluster workers their parent node arguments followed by the gateway flags', () => {
    assert.deepEqual(gatewayWorkerExecArgv([]), [...GATEWAY_COMMAND_LINE_V8_FLAGS]);
    assert.deepEqual(gatewayWorkerExecArgv(['--cpu-prof', '--cpu-prof-dir', '/tmp/p']), ['--cpu-prof', '--cpu-prof-dir', '/tmp/p', ...GATEWAY_COMMAND_LINE_V8_FLAGS]);
  });

  it('does not repeat a flag the parent already has', () => {
    const parent = ['--trace-gc', ...GATEWAY_COMMAND_LINE_V8_FLAGS];
    assert.deepEqual(gatewayWorkerExecArgv(parent), parent);
  });

  it('leaves a setting to the parent when it was started with its own value of it', () => {
    const parent = ['--initial_old_space_size=128', '--memory-reducer', '--min-semi-space-size=1', '--parallel_scavenge'];
    assert.deepEqual(gatewayWorkerExecArgv(parent), parent);
    assert.deepEqual(gatewayWorkerExecArgv(['--initial-old-space-size=16']), [
      '--initial-old-space-size=16', '--no-memory-reducer', '--min-semi-space-size=8', '--max-semi-space-size=8', '--no-parallel-scavenge',
    ]);
  });

  it('takes the young generation\'s least and largest size as one setting', () => {
    // A parent's largest size alone must not be joined by our least one (8 MB above a largest of 4 MB).
    assert.deepEqual(gatewayWorkerExecArgv(['--max-semi-space-size=4']), ['--max-semi-space-size=4', '--no-memory-reducer', '--initial-old-space-size=64', '--no-parallel-scavenge']);
    assert.deepEqual(gatewayWorkerExecArgv(['--min_semi_space_size=16']), ['--min_semi_space_size=16', '--no-memory-reducer', '--initial-old-space-size=64', '--no-parallel-scavenge']);
  });

  it('tells a flag among node arguments from one after the script', () => {
    const flags = [...GATEWAY_COMMAND_LINE_V8_FLAGS];
    assert.deepEqual(missingGatewayFlags(['/usr/bin/node', ...flags, '/opt/main.js', 'proxy']), []);
    assert.deepEqual(missingGatewayFlags(['/usr/bin/node', '/opt/main.js', 'proxy', ...flags]), flags);
    assert.deepEqual(missingGatewayFlags(['/usr/bin/node', '/opt/main.js']), flags);
  });

  it('starts the gateway image with them, before the script', () => {
    const dockerfile = readFileSync(join(ROOT, 'images', 'gateway', 'Dockerfile'), 'utf8');
    const line = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
    assert.ok(line, 'the gateway Dockerfile has an exec-form ENTRYPOINT');
    const entrypoint = JSON.parse(line[1]) as string[];
    assert.ok(entrypoint.indexOf('/opt/clawbox/dist/src/cli/main.js') > 0, `no main.js in ${line[1]}`);
    assert.deepEqual(missingGatewayFlags(entrypoint), [], `not among node's arguments in ${line[1]}`);
  });
});
