import assert from 'node:assert/strict';
import { test } from 'node:test';
import { datagramIoOf } from '../../proxy/udp-batch.js';
import { ClawboxError } from '../../src/errors.js';

void test('CLAWBOX_DNS_IO: unset, empty or "batched" batches; "dgram" does not; anything else is refused by name', () => {
  assert.equal(datagramIoOf(undefined), 'batched');
  assert.equal(datagramIoOf(''), 'batched');
  assert.equal(datagramIoOf('batched'), 'batched');
  assert.equal(datagramIoOf('dgram'), 'dgram');
  for (const bad of ['fast', 'Dgram', ' dgram']) {
    assert.throws(
      () => datagramIoOf(bad),
      (err: unknown) => err instanceof ClawboxError && err.code === 'CONFIG_INVALID' && err.message.includes('CLAWBOX_DNS_IO') && err.message.includes(JSON.stringify(bad)),
    );
  }
});
