import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Deadlines, type Deadline } from '../../proxy/deadlines.js';
import { waitUntil } from '../fixtures/wait.js';

/** Deadlines whose expiries are recorded as [key, ms after `start`]. */
function recorded(limitMs: number): { deadlines: Deadlines<string>; expired: Array<[string, number]>; start: number } {
  const start = performance.now();
  const expired: Array<[string, number]> = [];
  const deadlines = new Deadlines<string>(limitMs, (key) => expired.push([key, performance.now() - start]));
  return { deadlines, expired, start };
}

const until = (done: () => boolean): Promise<void> => waitUntil(done, 'expiries', 2000);

describe('Deadlines', () => {
  it('expires a key once its limit has passed, never before', async () => {
    const { deadlines, expired } = recorded(100);
    deadlines.add('a');
    await sleep(60);
    assert.equal(expired.length, 0, 'not before the limit');
    await until(() => expired.length > 0);
    assert.equal(expired.length, 1);
    const [key, at] = expired[0];
    assert.equal(key, 'a');
    assert.ok(at >= 100, `expired after ${at} ms, limit 100`);
    assert.equal(deadlines.size, 0);
  });

  it('a deleted key never expires, and the others still do, in the order they were added', async () => {
    const { deadlines, expired } = recorded(50);
    const first = deadlines.add('first');
    const gone = deadlines.add('gone');
    await sleep(20);
    const last = deadlines.add('last');
    assert.equal(deadlines.delete(gone), true);
    assert.equal(deadlines.delete(gone), false, 'a second delete finds nothing held');
    assert.deepEqual([first, gone, last].map((d) => deadlines.has(d)), [true, false, true]);
    await until(() => expired.length >= 2);
    await sleep(100);
    assert.deepEqual(
      expired.map(([key]) => key),
      ['first', 'last'],
    );
    assert.equal(deadlines.size, 0);
  });

  it('an expired key is no longer held, and deleting it then finds nothing', async () => {
    const { deadlines, expired } = recorded(30);
    const a = deadlines.add('a');
    await until(() => expired.length === 1);
    assert.equal(deadlines.has(a), false);
    assert.equal(deadlines.delete(a), false);
    assert.equal(deadlines.size, 0);
  });

  it('an expiry that deletes a later key due in the same tick: that key does not expire as well', async () => {
    const expired: string[] = [];
    let later: Deadline<string> | null = null;
    const deadlines = new Deadlines<string>(30, (key) => {
      expired.push(key);
      if (key === 'a' && later !== null) deadlines.delete(later);
    });
    deadlines.add('a');
    later = deadlines.add('b');
    await until(() => expired.length >= 1 && deadlines.size === 0);
    await sleep(60);
    assert.deepEqual(expired, ['a']);
  });

  it('starts its timer again for keys added after it stopped', async () => {
    const { deadlines, expired } = recorded(30);
    deadlines.add('a');
    await until(() => expired.length === 1);
    await sleep(50); // a tick with nothing held stops the timer
    deadlines.add('b');
    await until(() => expired.length === 2);
    assert.deepEqual(
      expired.map(([key]) => key),
      ['a', 'b'],
    );
  });
});
