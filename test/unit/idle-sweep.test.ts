import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { IdleSweep, clock, type Watched } from '../../proxy/idle-sweep.js';

/** An entry that records when it expired (ms after `start`). */
function entry(start: number): Watched & { expiredAt: number | null } {
  const item: Watched & { expiredAt: number | null } = {
    lastActive: 0,
    prev: null,
    next: null,
    expiredAt: null,
    expire: () => {
      item.expiredAt = performance.now() - start;
    },
  };
  return item;
}

describe('IdleSweep', () => {
  it('expires an inactive entry after its limit, never before it', async () => {
    const sweep = new IdleSweep(100);
    const start = performance.now();
    const quiet = entry(start);
    sweep.watch(quiet);
    // Read through a function: the assertions would otherwise narrow the field for good.
    const expiredAt = (): number | null => quiet.expiredAt;
    await sleep(60);
    assert.equal(expiredAt(), null, 'not before the limit');
    for (let i = 0; i < 100 && expiredAt() === null; i++) await sleep(10);
    const at = expiredAt();
    assert.ok(at !== null, 'expired');
    assert.ok(at >= 100, `expired after ${at} ms, limit 100`);
    assert.equal(sweep.size, 0);
  });

  it('keeps an entry whose activity is stamped, and expires it once the stamps stop', async () => {
    const sweep = new IdleSweep(100);
    const start = performance.now();
    const busy = entry(start);
    sweep.watch(busy);
    // Stamps every 20 ms for three times the limit.
    for (let i = 0; i < 15; i++) {
      await sleep(20);
      busy.lastActive = clock.now;
    }
    const expiredAt = (): number | null => busy.expiredAt;
    assert.equal(expiredAt(), null, 'activity kept it');
    // The limit counts from the last stamp the sweep was given (its clock, up to a tick old, later if the event
    // loop was held up), not from when this test made it: measured from the wall clock, a loaded machine made
    // this test fail without the sweep being wrong.
    const lastStamp = busy.lastActive - start;
    for (let i = 0; i < 100 && expiredAt() === null; i++) await sleep(10);
    const at = expiredAt();
    assert.ok(at !== null && at - lastStamp >= 100, 'expired a limit after the last stamp');
  });

  it('an unwatched entry never expires', async () => {
    const sweep = new IdleSweep(30);
    const gone = entry(performance.now());
    sweep.watch(gone);
    sweep.unwatch(gone);
    await sleep(150);
    assert.equal(gone.expiredAt, null);
    assert.equal(sweep.size, 0);
  });

  it('expires the entries a tick finds idle in the order they were watched, and keeps the others', async () => {
    const sweep = new IdleSweep(40);
    const order: string[] = [];
    const named = (name: string): Watched => ({ lastActive: 0, prev: null, next: null, expire: () => order.push(name) });
    const [a, b, c, fresh] = [named('a'), named('b'), named('c'), named('fresh')];
    for (const e of [a, b, c]) sweep.watch(e);
    sweep.unwatch(b);
    sweep.watch(b); // watched again: now after c
    sweep.watch(fresh);
    const stamp = setInterval(() => (fresh.lastActive = clock.now), 5);
    try {
      for (let i = 0; i < 100 && order.length < 3; i++) await sleep(10);
    } finally {
      clearInterval(stamp);
    }
    assert.deepEqual(order, ['a', 'c', 'b']);
    assert.equal(sweep.size, 1);
    sweep.unwatch(fresh);
  });

  it('does not keep the process alive', async () => {
    const { spawnSync } = await import('node:child_process');
    const script = `import { IdleSweep } from ${JSON.stringify(new URL('../../proxy/idle-sweep.ts', import.meta.url).href)};
new IdleSweep(60_000).watch({ lastActive: 0, prev: null, next: null, expire: () => {} });`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
  });
});
