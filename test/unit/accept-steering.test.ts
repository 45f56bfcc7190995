import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LeadSteering, STEERING_LIMITS } from '../../proxy/accept-steering.js';

const { joinAt, quietAt, quietSamples } = STEERING_LIMITS;

/** The hand-over answers of `n` connections arriving at `open` open connections each. */
function handOvers(steering: LeadSteering, n: number, open = joinAt + 5): boolean[] {
  return Array.from({ length: n }, () => steering.onConnection(open).handOver);
}

describe('LeadSteering: which worker accepts', () => {
  it('serves one client alone: a closing connection and the next one do not call the standbys', () => {
    const steering = new LeadSteering(false);
    for (let i = 0; i < 1000; i++) {
      assert.deepEqual(steering.onConnection(1), { handOver: false, request: null });
      assert.deepEqual(steering.onConnection(joinAt - 1), { handOver: false, request: null });
      assert.equal(steering.onSample(joinAt - 1), null);
    }
    assert.equal(steering.joining, false);
  });

  it('asks for the standbys when connections overlap, and hands every other one over until they accept', () => {
    const steering = new LeadSteering(false);
    assert.deepEqual(steering.onConnection(joinAt), { handOver: true, request: 'join' });
    assert.equal(steering.joining, true);
    assert.deepEqual(handOvers(steering, 6), [false, true, false, true, false, true]);
    steering.standbysAre(true);
    assert.equal(steering.joining, false);
    assert.deepEqual(handOvers(steering, 4), [false, false, false, false], 'the kernel spreads them now');
    assert.equal(steering.onConnection(joinAt + 50).request, null, 'asked once');
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
    assert.deepEqual(steering.onConnection(joinAt), { handOver: true, request: 'join' });
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
