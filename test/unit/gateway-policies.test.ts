import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { parseHost } from '../../src/net/host.js';
import type { Host } from '../../src/net/types.js';
import { GatewayPolicies } from '../../proxy/gateway-policies.js';

function host(text: string): Host {
  const parsed = parseHost(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.host;
}

const config = parseConfig("sandbox:\n  allowed_hosts: ['192.0.2.0/24']\n").sandbox;
const CLIENT = '10.213.0.9';

describe('GatewayPolicies: the host addresses each run sends', () => {
  it('are denied as the host\'s own; the same list again recompiles nothing, another one does', () => {
    const policies = new GatewayPolicies(config, [3128]);
    policies.register({ client: CLIENT, sandbox: 's1', allowed_hosts: [], denied_hosts: [] });
    assert.equal(policies.forClient(CLIENT).decide(host('192.0.2.77'), 443).allow, true);

    assert.equal(policies.setHostAddresses(['192.0.2.77', '192.0.2.78']), true);
    const compiled = policies.forClient(CLIENT);
    const denied = compiled.decide(host('192.0.2.77'), 443);
    assert.equal(denied.allow, false);
    assert.match(denied.rule, /host/);

    // What each warm run's runner sends: the same list, which changes nothing.
    assert.equal(policies.setHostAddresses(['192.0.2.77', '192.0.2.78']), false);
    assert.equal(policies.forClient(CLIENT), compiled, 'the policy in force is the one compiled before');
    assert.equal(policies.forClient(CLIENT).decide(host('192.0.2.77'), 443).allow, false);

    // A changed list is applied: the old address is allowed again, the new one denied.
    assert.equal(policies.setHostAddresses(['192.0.2.78']), true);
    assert.notEqual(policies.forClient(CLIENT), compiled);
    assert.equal(policies.forClient(CLIENT).decide(host('192.0.2.77'), 443).allow, true);
    assert.equal(policies.forClient(CLIENT).decide(host('192.0.2.78'), 443).allow, false);
    // And an empty one after it.
    assert.equal(policies.setHostAddresses([]), true);
    assert.equal(policies.forClient(CLIENT).decide(host('192.0.2.78'), 443).allow, true);
  });

  it('refuses an entry that is not an IP address and keeps the list it had', () => {
    const policies = new GatewayPolicies(config, [3128]);
    policies.setHostAddresses(['192.0.2.77']);
    assert.throws(() => policies.setHostAddresses(['192.0.2.78', 'host.test']), /host\.test.*not an IP address/);
    assert.equal(policies.setHostAddresses(['192.0.2.77']), false);
    assert.equal(policies.forClient(CLIENT).decide(host('192.0.2.77'), 443).allow, false);
  });
});
