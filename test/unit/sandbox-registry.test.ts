import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryAuditSink } from '../../src/audit/sink.js';
import type { DecisionEvent } from '../../src/audit/types.js';
import { SandboxRegistry } from '../../proxy/sandbox-registry.js';

const decision = (client: string): DecisionEvent => ({
  event: 'decision',
  conn: 'c-1',
  channel: 'dns',
  client,
  host: 'api.allowed.test',
  port: 53,
  dialed: ['198.18.0.1'],
  decision: 'deny',
  rule: 'network_policy',
  reason: 'not in allowed_hosts',
  qtype: 'A',
});

describe('SandboxRegistry.auditThrough', () => {
  it('names the sandbox and tool in an event and in its JSON alike, and counts it', async () => {
    const registry = new SandboxRegistry();
    registry.add({ client: '10.213.0.9', sandbox: 'c0ffee', tool: 'fetch "quoted"', allowed_hosts: [], denied_hosts: [] });
    registry.add({ client: '10.213.0.10', sandbox: 'beef', allowed_hosts: [], denied_hosts: [] });
    const memory = new MemoryAuditSink(); // throws when a JSON differs from JSON.stringify(event)
    const sink = registry.auditThrough(memory);
    for (const client of ['10.213.0.9', '10.213.0.10', '10.213.0.99']) {
      const event = decision(client);
      await sink.recordSerialized({ event, json: JSON.stringify(event) });
    }
    assert.deepEqual(
      memory.decisions().map((e) => [e.client, e.sandbox, e.tool]),
      [['10.213.0.9', 'c0ffee', 'fetch "quoted"'], ['10.213.0.10', 'beef', undefined], ['10.213.0.99', undefined, undefined]],
    );
    assert.deepEqual(registry.remove('10.213.0.9'), { allowed: 0, denied: 1, bytes_up: 0, bytes_down: 0, not_allowed: ['api.allowed.test'] });
  });
});
