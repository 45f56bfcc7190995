import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { handOverByLoad, LeadSteering, STEERING_LIMITS } from '../../proxy/accept-steering.js';

const { joinAt, quietAt, quietSamples } = STEERING_LIMITS;

/** The hand-over answers of `n` connections arriving at `open` open connections each. */
function handOvers(steering: LeadSteering, n: number, open = joinAt + 5): boolean[] {
  return Array.from({ length: n }, () => steering.onConnection(open, null).handOver);
}

describe('LeadSteering: which worker accepts (workers that share no loads)', () => {
  it('serves one client alone: a closing connection and the next one do not call the standbys', () => {
    const steering = new LeadSteering(false);
    for (let i = 0; i < 1000; i++) {
      assert.deepEqual(steering.onConnection(1, null), { handOver: false, request: null });
      assert.deepEqual(steering.onConnection(joinAt - 1, null), { handOver: false, request: null });
      assert.equal(steering.onSample(joinAt - 1), null);
    }
    assert.equal(steering.joining, false);
  });

  it('asks for the standbys when connections overlap, and hands every other one over until they accept', () => {
    const steering = new LeadSteering(false);
    assert.deepEqual(steering.onConnection(joinAt, null), { handOver: true, request: 'join' });
    assert.equal(steering.joining, true);
    assert.deepEqual(handOvers(steering, 6), [false, true, false, true, false, true]);
    steering.standbysAre(true);
    assert.equal(steering.joining, false);
    assert.deepEqual(handOvers(steering, 4), [false, false, false, false], 'the kernel spreads them now');
    assert.equal(steering.onConnection(joinAt + 50, null).request, null, 'asked once');
  });

  it('lets them go after a quiet spell, and a busy sample starts the count again', () => {
    const steering = new LeadSteering(true);
    for (let i = 1; i < quietSamples; i++) assert.equal(steering.onSample(quietAt), null);
    assert.equal(steering.onSample(quietAt + 1), null, 'one busy sample');
    for (let i = 1; i < quietSamples; i++) assert.equal(steering.onSample(0), null);
    assert.equal(steering.onSample(0), 'leave');
    assert.equal(steering.joining, false, 'leaving hands nothing over');
    assert.deepEqual(handOvers(steering, 3, 1), [false, false, false]);
    assert.equal(steering.onSample(0), null, 'asked once');
  });

  it('asks again when connections overlap while the standbys are still leaving', () => {
    const steering = new LeadSteering(true);
    for (let i = 0; i < quietSamples; i++) steering.onSample(0);
    assert.deepEqual(steering.onConnection(joinAt, null), { handOver: true, request: 'join' });
    steering.standbysAre(false); // the answer to 'leave', which is no longer what the lead wants
    assert.equal(steering.joining, true, 'a stale answer changes nothing');
    assert.deepEqual(handOvers(steering, 2), [false, true]);
    steering.standbysAre(true);
    assert.equal(steering.joining, false);
  });

  it('does not sample its way to the standbys: joining is for overlapping connections only', () => {
    const steering = new LeadSteering(false);
    for (let i = 0; i < quietSamples * 3; i++) assert.equal(steering.onSample(joinAt + 10), null);
  });
});

describe('LeadSteering with the workers\' loads', () => {
  const { settleSamples } = STEERING_LIMITS;

  it('balances by load while the standbys join and for a few samples after they listen, then leaves it to the kernel', () => {
    const steering = new LeadSteering(false);
    assert.equal(steering.balancesNext(1), false, 'one client: the loads are not even read');
    assert.equal(steering.balancesNext(joinAt), true, 'the connection that calls the standbys is balanced');
    assert.deepEqual(steering.onConnection(1, 0), { handOver: false, request: null }, 'one client: the lead alone');
    assert.equal(steering.balancing, false);
    assert.deepEqual(steering.onConnection(joinAt, 0), { handOver: true, request: 'join' });
    assert.equal(steering.balancing, true);
    assert.equal(steering.onConnection(joinAt, 2).handOver, false, 'even: kept');
    steering.standbysAre(true);
    assert.equal(steering.balancing, true, 'the rest of the burst is balanced too');
    assert.equal(steering.onConnection(30, 20).handOver, true, 'the kernel split it unevenly');
    assert.equal(steering.onConnection(26, 24).handOver, false);
    for (let i = 0; i < settleSamples; i++) steering.onSample(30);
    assert.equal(steering.balancing, false);
    assert.equal(steering.balancesNext(40), false);
    assert.equal(steering.onConnection(40, 10).handOver, false, 'a steady flow of short connections is not passed round');
  });

  it('opens the window again when the standbys join again', () => {
    const steering = new LeadSteering(true);
    for (let i = 0; i < quietSamples; i++) steering.onSample(0);
    steering.standbysAre(false);
    assert.equal(steering.onConnection(2, 0).handOver, false, 'let go: nothing handed over');
    assert.equal(steering.onConnection(joinAt, 0).request, 'join');
    assert.equal(steering.balancing, true);
    steering.standbysAre(true);
    for (let i = 0; i < settleSamples - 1; i++) steering.onSample(30);
    assert.equal(steering.onConnection(30, 20).handOver, true, 'still within the window');
  });

  it('does not count down the window before the standbys listen: joining can take longer than a sample', () => {
    const steering = new LeadSteering(false);
    steering.onConnection(joinAt, 0);
    for (let i = 0; i < settleSamples * 3; i++) steering.onSample(30);
    assert.equal(steering.onConnection(30, 20).handOver, true);
  });
});

describe('handOverByLoad', () => {
  it('moves a connection only when that leaves the two closer: more than one more', () => {
    assert.equal(handOverByLoad(1, 0), false, 'moved, it would be 0 against 2');
    assert.equal(handOverByLoad(2, 1), false);
    assert.equal(handOverByLoad(3, 1), true);
    assert.equal(handOverByLoad(2, 0), true);
  });

  it('lets a busy pair differ by a sixteenth of their total before it pays for a hand-over', () => {
    assert.equal(handOverByLoad(34, 30), false, '64 between them: 4 apart is within a sixteenth');
    assert.equal(handOverByLoad(35, 29), true);
    assert.equal(handOverByLoad(42, 24), true, 'a split seen from the kernel alone');
    assert.equal(handOverByLoad(520, 480), false, '1000 between them: 40 apart is within 62');
    assert.equal(handOverByLoad(540, 460), true);
  });
});
