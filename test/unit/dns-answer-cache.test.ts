import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DnsAnswerCache } from '../../proxy/dns-answer-cache.js';
import { compilePolicy } from '../../src/policy/policy.js';
import { policyConfig } from '../fixtures/policy-config.js';

describe('DnsAnswerCache', () => {
  const policyA = compilePolicy(policyConfig({ allowedHosts: ['*.allowed.example'] }));
  const policyB = compilePolicy(policyConfig({ allowedHosts: ['*.allowed.example'] }));

  it('hands out the TTL left, counting down, and forgets the entry when it runs out', () => {
    let now = 1_000_000;
    const cache = new DnsAnswerCache<string>(10, () => now);
    cache.set(policyA, 'A api.allowed.example', 'outcome', 20);
    assert.deepEqual(cache.get(policyA, 'A api.allowed.example'), { value: 'outcome', ttl: 20 });
    now += 5_500;
    assert.deepEqual(cache.get(policyA, 'A api.allowed.example'), { value: 'outcome', ttl: 15 });
    now += 14_499;
    assert.equal(cache.get(policyA, 'A api.allowed.example')?.ttl, 1);
    now += 1;
    assert.equal(cache.get(policyA, 'A api.allowed.example'), null);
  });

  it('keeps outcomes per policy object: another policy, even an equal one, starts empty', () => {
    const cache = new DnsAnswerCache<string>();
    cache.set(policyA, 'A api.allowed.example', 'decided by A', 60);
    assert.equal(cache.get(policyA, 'A api.allowed.example')?.value, 'decided by A');
    assert.equal(cache.get(policyB, 'A api.allowed.example'), null);
  });

  it('does not keep a TTL of 0 (or less, or NaN)', () => {
    const cache = new DnsAnswerCache<string>();
    for (const ttl of [0, -1, Number.NaN]) {
      cache.set(policyA, `A t${ttl}.allowed.example`, 'x', ttl);
      assert.equal(cache.get(policyA, `A t${ttl}.allowed.example`), null, `ttl ${ttl}`);
    }
  });

  it('is bounded: the oldest entry of a full policy goes first', () => {
    const cache = new DnsAnswerCache<number>(3);
    for (let i = 0; i < 4; i += 1) cache.set(policyA, `A h${i}.allowed.example`, i, 60);
    assert.equal(cache.get(policyA, 'A h0.allowed.example'), null);
    assert.deepEqual([1, 2, 3].map((i) => cache.get(policyA, `A h${i}.allowed.example`)?.value), [1, 2, 3]);
  });
});
