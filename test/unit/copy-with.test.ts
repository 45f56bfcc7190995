import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyWith } from '../../src/copy-with.js';

describe('copyWith', () => {
  it('makes a new object with the base properties and the extra ones, the extra winning', () => {
    const base = { event: 'decision', host: 'api.test', port: 443 };
    const copy = copyWith(base, { port: 8443, sandbox: 'sb-1' });
    assert.deepEqual(copy, { event: 'decision', host: 'api.test', port: 8443, sandbox: 'sb-1' });
    assert.deepEqual(base, { event: 'decision', host: 'api.test', port: 443 }, 'the base is left as it was');
    assert.notEqual(copy, base);
  });

  it('keeps the order of the base properties first, as a spread does (the audit line\'s JSON follows it)', () => {
    assert.deepEqual(Object.keys(copyWith({ b: 1, a: 2 }, { c: 3 })), ['b', 'a', 'c']);
  });
});
