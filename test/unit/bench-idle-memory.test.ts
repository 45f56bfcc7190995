import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { memoryPerTunnel } from '../../bench/scenarios/idle.js';
import { cellsOf } from '../../bench/scenarios/common.js';
import type { Target } from '../../bench/model.js';

describe('bench idle memory per tunnel', () => {
  it('is the growth per held tunnel in KB', () => {
    assert.equal(memoryPerTunnel(9000 * 4 * 1024, 9000), 4);
  });

  it('has no figure, and says why, when the process shrank during the hold', () => {
    // Seen in a full run: sandbox-runtime's SOCKS5 target, second in its process, freed 6.5 MiB; -0.74 KB per tunnel
    // made clawbox-socks ÷ it read -4.0×.
    const cell = memoryPerTunnel(-6.5 * 2 ** 20, 9000);
    assert.ok(cell !== null && typeof cell === 'object' && 'na' in cell, 'an n/a cell');
    assert.match(cell.na, /memory fell by 6\.5 MiB during the hold/);
    assert.ok(typeof memoryPerTunnel(0, 9000) === 'object', 'no growth at all has no figure either');
  });

  it('has no cell when no tunnel opened (the open count says so)', () => {
    assert.equal(memoryPerTunnel(1024, 0), null);
  });

  it('reaches the table as n/a through cellsOf, beside the figures of other targets', () => {
    const targets: Target[] = [
      { label: 'a', proto: 'socks' },
      { label: 'b', proto: 'socks' },
    ];
    const results = new Map([
      ['a', { delta: 8192 }],
      ['b', { delta: -4096 }],
    ]);
    const cells = cellsOf(targets, results, (r) => memoryPerTunnel(r.delta, 2));
    assert.deepEqual(cells.a, { value: 4 });
    assert.ok('na' in cells.b);
  });
});
