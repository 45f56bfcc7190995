import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseHost } from '../../src/net/host.js';
import { parseIp } from '../../src/net/ip.js';
import type { Host, IpAddress } from '../../src/net/types.js';
import type { PolicyConfig } from '../../src/policy/config.js';
import { parseHostPattern, patternToString } from '../../src/policy/pattern.js';
import { DecisionMemo } from '../../src/policy/decision-memo.js';
import { compilePolicy, DECISION_MEMO_LIMIT, StaticPolicyTable } from '../../src/policy/policy.js';
import type { Decision, Policy, RuleId } from '../../src/policy/types.js';
import { policyConfig } from '../fixtures/policy-config.js';

function host(text: string): Host {
  const parsed = parseHost(text);
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
  return parsed.host;
}

function ip(text: string): IpAddress {
  const parsed = parseIp(text);
  assert.ok(parsed, text);
  return parsed;
}

const config = policyConfig;

const BASE = config({
  allowedHosts: [
    'api.test', // 0
    '*.example.test', // 1
    'db.internal.test:5432', // 2
    '10.20.0.0/16', // 3
    '[fd00:1::/32]:8443', // 4
    '192.168.1.10:22', // 5
    '172.17.0.1', // 6: the gateway host's own address, lifted exactly
    'shop.test:8443', // 7
    'Bad.Example.Test', // 8: also denied below
  ],
  deniedHosts: [
    'bad.example.test', // 0
    '*.evil.example.test', // 1
    'api.test:25', // 2
    '10.20.99.0/24', // 3
    '8.8.4.4', // 4
  ],
  selfAddresses: ['172.17.0.1', '192.168.65.2'],
  listenerPorts: [3128, 1080],
});

interface Case {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly allow: boolean;
  readonly rule: RuleId;
  readonly reason?: RegExp;
  readonly cfg?: PolicyConfig;
}

const DECIDE_CASES: readonly Case[] = [
  // Names.
  { name: 'exact name on a default port', host: 'api.test', port: 443, allow: true, rule: 'allowed_hosts[0]' },
  { name: 'exact name, case and trailing dot', host: 'API.Test.', port: 80, allow: true, rule: 'allowed_hosts[0]' },
  { name: 'exact name on a port it does not list', host: 'api.test', port: 22, allow: false, rule: 'port', reason: /^port 22 is not allowed for api\.test \(entry allows 80, 443\)$/ },
  { name: 'denied port of an allowed name', host: 'api.test', port: 25, allow: false, rule: 'denied_hosts[2]' },
  { name: 'wildcard matches a subdomain', host: 'a.example.test', port: 443, allow: true, rule: 'allowed_hosts[1]' },
  { name: 'wildcard matches at any depth', host: 'a.b.c.example.test', port: 443, allow: true, rule: 'allowed_hosts[1]' },
  { name: 'wildcard never matches its apex', host: 'example.test', port: 443, allow: false, rule: 'network_policy', reason: /^example\.test is not in sandbox\.allowed_hosts$/ },
  { name: 'suffix without a dot boundary', host: 'evil-example.test', port: 443, allow: false, rule: 'network_policy' },
  { name: 'allowed suffix inside another domain', host: 'example.test.evil.test', port: 443, allow: false, rule: 'network_policy' },
  { name: 'deny wins over allow (same name in both lists)', host: 'bad.example.test', port: 443, allow: false, rule: 'denied_hosts[0]' },
  { name: 'denied wildcard beats allowed wildcard', host: 'x.evil.example.test', port: 443, allow: false, rule: 'denied_hosts[1]' },
  { name: 'entry port replaces the defaults', host: 'db.internal.test', port: 443, allow: false, rule: 'port' },
  { name: 'entry port', host: 'db.internal.test', port: 5432, allow: true, rule: 'allowed_hosts[2]' },
  { name: 'IDN punycode', host: 'bücher.example.test', port: 443, allow: true, rule: 'allowed_hosts[1]' },
  { name: 'GCP metadata name', host: 'metadata.google.internal', port: 80, allow: false, rule: 'builtin.cloud-metadata' },
  { name: 'metadata name with trailing dot and case', host: 'Metadata.Google.Internal.', port: 80, allow: false, rule: 'builtin.cloud-metadata' },
  { name: 'AWS instance-data name', host: 'instance-data.ec2.internal', port: 80, allow: false, rule: 'builtin.cloud-metadata' },
  { name: 'metadata name even under allow-all', host: 'metadata', port: 80, allow: false, rule: 'builtin.cloud-metadata', cfg: config({ networkPolicy: 'allow-all', allowedHosts: ['metadata'] }) },
  { name: 'localhost', host: 'localhost', port: 80, allow: false, rule: 'builtin.loopback' },
  { name: 'RFC 6761 *.localhost', host: 'app.localhost', port: 80, allow: false, rule: 'builtin.loopback', cfg: config({ allowedHosts: ['*.localhost.test', 'app.localhost'] }) },
  { name: 'allow-all name', host: 'anything.test', port: 9999, allow: true, rule: 'allow-all', cfg: config({ networkPolicy: 'allow-all' }) },
  { name: 'allow-all still honours denied_hosts', host: 'bad.test', port: 443, allow: false, rule: 'denied_hosts[0]', cfg: config({ networkPolicy: 'allow-all', deniedHosts: ['bad.test'] }) },
  { name: 'unknown name', host: 'unknown.test', port: 443, allow: false, rule: 'network_policy' },
  // IP literals.
  { name: 'loopback literal', host: '127.0.0.1', port: 80, allow: false, rule: 'builtin.loopback', reason: /^127\.0\.0\.1 is a loopback address \(always denied\)$/ },
  { name: 'loopback in hex short form', host: '0x7f.1', port: 80, allow: false, rule: 'builtin.loopback' },
  { name: 'loopback even if allowed by IP', host: '127.0.0.1', port: 80, allow: false, rule: 'builtin.loopback', cfg: config({ allowedHosts: ['127.0.0.1', '127.0.0.0/8'] }) },
  { name: 'metadata literal', host: '169.254.169.254', port: 80, allow: false, rule: 'builtin.cloud-metadata', reason: /^169\.254\.169\.254 is a cloud metadata address \(always denied\)$/ },
  { name: 'metadata under allow-all', host: '169.254.169.254', port: 80, allow: false, rule: 'builtin.cloud-metadata', cfg: config({ networkPolicy: 'allow-all' }) },
  { name: 'IPv4-mapped metadata', host: '::ffff:169.254.169.254', port: 80, allow: false, rule: 'builtin.cloud-metadata', reason: /IPv4-mapped; always denied/ },
  { name: 'unspecified', host: '0.0.0.0', port: 80, allow: false, rule: 'builtin.unspecified' },
  { name: 'IPv6 link-local', host: 'fe80::1', port: 80, allow: false, rule: 'builtin.link-local' },
  { name: 'multicast', host: '239.1.2.3', port: 80, allow: false, rule: 'builtin.multicast' },
  { name: 'broadcast', host: '255.255.255.255', port: 80, allow: false, rule: 'builtin.broadcast' },
  { name: 'class E', host: '240.1.2.3', port: 80, allow: false, rule: 'builtin.reserved' },
  { name: 'private without an entry', host: '10.1.2.3', port: 443, allow: false, rule: 'builtin.private' },
  { name: 'private under allow-all', host: '10.1.2.3', port: 443, allow: false, rule: 'builtin.private', cfg: config({ networkPolicy: 'allow-all' }) },
  { name: 'private lifted by a CIDR', host: '10.20.1.2', port: 443, allow: true, rule: 'allowed_hosts[3]' },
  { name: 'private lifted, wrong port', host: '10.20.1.2', port: 22, allow: false, rule: 'port' },
  { name: 'mapped private lifted by its IPv4 CIDR', host: '::ffff:10.20.1.2', port: 443, allow: true, rule: 'allowed_hosts[3]' },
  { name: 'denied CIDR inside an allowed CIDR', host: '10.20.99.5', port: 443, allow: false, rule: 'denied_hosts[3]' },
  { name: 'denied CIDR through IPv4-mapped', host: '::ffff:10.20.99.5', port: 443, allow: false, rule: 'denied_hosts[3]' },
  { name: 'denied IP through NAT64', host: '64:ff9b::8.8.4.4', port: 443, allow: false, rule: 'denied_hosts[0]', cfg: config({ networkPolicy: 'allow-all', deniedHosts: ['8.8.4.4'] }) },
  { name: 'IPv6 CIDR with port', host: 'fd00:1::5', port: 8443, allow: true, rule: 'allowed_hosts[4]' },
  { name: 'IPv6 CIDR on another port', host: 'fd00:1::5', port: 443, allow: false, rule: 'port' },
  { name: 'ULA outside the lifted CIDR', host: 'fd00:2::5', port: 8443, allow: false, rule: 'builtin.private' },
  { name: 'exact private IP with port', host: '192.168.1.10', port: 22, allow: true, rule: 'allowed_hosts[5]' },
  { name: 'gateway listener, always', host: '172.17.0.1', port: 3128, allow: false, rule: 'builtin.gateway-listener' },
  { name: 'self address lifted by exact IP', host: '172.17.0.1', port: 443, allow: true, rule: 'allowed_hosts[6]' },
  { name: 'self address not lifted by a CIDR', host: '192.168.65.2', port: 443, allow: false, rule: 'builtin.host-address', cfg: config({ allowedHosts: ['192.168.0.0/16'], selfAddresses: ['192.168.65.2'] }) },
  { name: 'mapped self address', host: '::ffff:192.168.65.2', port: 443, allow: false, rule: 'builtin.host-address' },
  { name: 'public self address under allow-all', host: '203.0.114.7', port: 443, allow: false, rule: 'builtin.host-address', cfg: config({ networkPolicy: 'allow-all', selfAddresses: ['203.0.114.7'] }) },
  { name: 'public literal, deny-by-default', host: '1.1.1.1', port: 443, allow: false, rule: 'network_policy', reason: /^1\.1\.1\.1 is not in sandbox\.allowed_hosts$/ },
  { name: 'public literal, allow-all, any port', host: '1.1.1.1', port: 5, allow: true, rule: 'allow-all', cfg: config({ networkPolicy: 'allow-all' }) },
  { name: 'wildcards never match IP literals', host: '1.2.3.4', port: 443, allow: false, rule: 'network_policy', cfg: config({ allowedHosts: ['*.3.4.example'] }) },
  { name: 'denied IP with port denies only that port', host: '9.9.9.9', port: 443, allow: true, rule: 'allow-all', cfg: config({ networkPolicy: 'allow-all', deniedHosts: ['9.9.9.9:53'] }) },
  { name: 'denied IP with port, that port', host: '9.9.9.9', port: 53, allow: false, rule: 'denied_hosts[0]', cfg: config({ networkPolicy: 'allow-all', deniedHosts: ['9.9.9.9:53'] }) },
];

function check(decision: Decision, c: Case): void {
  assert.equal(decision.allow, c.allow, `${c.name}: ${decision.rule}: ${decision.reason}`);
  assert.equal(decision.rule, c.rule, `${c.name}: ${decision.reason}`);
  if (c.reason !== undefined) assert.match(decision.reason, c.reason);
}

void describe('decide', () => {
  const base = compilePolicy(BASE);
  for (const c of DECIDE_CASES) {
    void it(c.name, () => {
      const policy = c.cfg === undefined ? base : compilePolicy(c.cfg);
      check(policy.decide(host(c.host), c.port), c);
    });
  }

  void it('answers a question asked again from its memo, the same answer for every case', () => {
    // One policy asked every BASE case twice, interleaved with other hosts and ports: a memo keyed wrongly (the port
    // left out, a name and an address sharing a slot) would hand a later case an earlier case's answer.
    const policy = compilePolicy(BASE);
    const cases = DECIDE_CASES.filter((c) => c.cfg === undefined);
    const first = cases.map((c) => policy.decide(host(c.host), c.port));
    cases.forEach((c, i) => {
      const again = policy.decide(host(c.host), c.port);
      check(again, c);
      assert.equal(again, first[i], `${c.name}: the second answer is the memo's`);
    });
  });

  void it('keeps at most its limit of answers, then starts over', () => {
    const memo = new DecisionMemo<string>(3);
    memo.set('a.test', 443, 'a443');
    memo.set('a.test', 80, 'a80');
    memo.set('a.test', 80, 'a80 again'); // the same question: no new answer held
    memo.set('b.test', 443, 'b443');
    assert.equal(memo.entries, 3);
    assert.equal(memo.get('a.test', 80), 'a80 again');
    memo.set('c.test', 443, 'c443');
    assert.equal(memo.entries, 1);
    assert.equal(memo.get('a.test', 443), undefined);
    assert.equal(memo.get('c.test', 443), 'c443');
  });

  void it('answers rightly again after a flood of targets made its memo start over', () => {
    const policy = compilePolicy(config({ networkPolicy: 'allow-all' }));
    for (let port = 1; port <= DECISION_MEMO_LIMIT + 10; port += 1) policy.decide(host('flood.test'), port);
    const again = policy.decide(host('flood.test'), 1);
    assert.equal(again.rule, 'allow-all', 'an answer made anew after the memo started over is still right');
  });
});

interface ResolvedCase {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly addresses: readonly string[];
  readonly allow: boolean;
  readonly rule: RuleId;
  readonly reason?: RegExp;
  readonly dial?: string;
  readonly cfg?: PolicyConfig;
}

const RESOLVED_CASES: readonly ResolvedCase[] = [
  { name: 'public address', host: 'api.test', port: 443, addresses: ['93.184.216.34'], allow: true, rule: 'allowed_hosts[0]', dial: '93.184.216.34' },
  { name: 'IPv4 preferred for dialing', host: 'api.test', port: 443, addresses: ['2606:4700::1', '93.184.216.34'], allow: true, rule: 'allowed_hosts[0]', dial: '93.184.216.34' },
  { name: 'IPv6 only', host: 'api.test', port: 443, addresses: ['2606:4700::1'], allow: true, rule: 'allowed_hosts[0]', dial: '2606:4700::1' },
  { name: 'DNS rebinding to metadata', host: 'api.test', port: 443, addresses: ['93.184.216.34', '169.254.169.254'], allow: false, rule: 'builtin.cloud-metadata', reason: /^api\.test resolves to a cloud metadata address \(always denied\)$/ },
  { name: 'rebinding to loopback', host: 'a.example.test', port: 443, addresses: ['127.0.0.1'], allow: false, rule: 'builtin.loopback' },
  { name: 'rebinding to mapped loopback', host: 'a.example.test', port: 443, addresses: ['::ffff:127.0.0.1'], allow: false, rule: 'builtin.loopback' },
  { name: 'internal alias (private, not lifted)', host: 'api.test', port: 443, addresses: ['10.9.8.7'], allow: false, rule: 'builtin.private', reason: /^api\.test resolves to a private address/ },
  { name: 'private lifted by a CIDR, port ignored for lifting', host: 'db.internal.test', port: 5432, addresses: ['10.20.3.4'], allow: true, rule: 'allowed_hosts[2]', dial: '10.20.3.4' },
  { name: 'resolves into a denied CIDR', host: 'db.internal.test', port: 5432, addresses: ['10.20.99.1'], allow: false, rule: 'denied_hosts[3]' },
  { name: 'resolves to a denied public IP', host: 'api.test', port: 443, addresses: ['8.8.4.4'], allow: false, rule: 'denied_hosts[4]' },
  { name: 'resolves to the gateway listener', host: 'api.test', port: 3128, addresses: ['172.17.0.1'], allow: false, rule: 'port' },
  { name: 'resolves to the gateway listener (allow-all)', host: 'x.test', port: 3128, addresses: ['172.17.0.1'], allow: false, rule: 'builtin.gateway-listener', cfg: config({ networkPolicy: 'allow-all', selfAddresses: ['172.17.0.1'], listenerPorts: [3128] }) },
  { name: 'resolves to the host address', host: 'x.test', port: 443, addresses: ['192.168.65.2'], allow: false, rule: 'builtin.host-address', cfg: config({ networkPolicy: 'allow-all', selfAddresses: ['192.168.65.2'], allowedHosts: ['192.168.0.0/16'] }) },
  { name: 'allow-all name to private', host: 'x.test', port: 443, addresses: ['192.168.1.1'], allow: false, rule: 'builtin.private', cfg: config({ networkPolicy: 'allow-all' }) },
  { name: 'no addresses', host: 'api.test', port: 443, addresses: [], allow: false, rule: 'builtin.invalid-host' },
  { name: 'stage 1 still applies', host: 'unknown.test', port: 443, addresses: ['93.184.216.34'], allow: false, rule: 'network_policy' },
  { name: 'metadata name', host: 'metadata.google.internal', port: 80, addresses: ['169.254.169.254'], allow: false, rule: 'builtin.cloud-metadata' },
];

void describe('decideResolved', () => {
  const base = compilePolicy(BASE);
  for (const c of RESOLVED_CASES) {
    void it(c.name, () => {
      const policy = c.cfg === undefined ? base : compilePolicy(c.cfg);
      const decision = policy.decideResolved(c.host, c.port, c.addresses.map(ip));
      check(decision, c);
      if (decision.allow) assert.equal(decision.dial.text, c.dial);
      // A probing sandbox must not learn internal addresses from deny messages.
      for (const address of c.addresses) {
        if (!decision.allow) assert.ok(!decision.reason.includes(address), `reason leaks ${address}: ${decision.reason}`);
      }
    });
  }
});

void describe('decideName (DNS questions)', () => {
  const base = compilePolicy(BASE);
  const cases: ReadonlyArray<[string, boolean, RuleId]> = [
    ['api.test', true, 'allowed_hosts[0]'],
    ['db.internal.test', true, 'allowed_hosts[2]'], // only 5432 is allowed, still resolvable
    ['a.example.test', true, 'allowed_hosts[1]'],
    ['example.test', false, 'network_policy'],
    ['bad.example.test', false, 'denied_hosts[0]'],
    ['metadata.google.internal', false, 'builtin.cloud-metadata'],
    ['localhost', false, 'builtin.loopback'],
    ['unknown.test', false, 'network_policy'],
    ['exa mple.test', false, 'builtin.invalid-host'],
  ];
  for (const [name, allowed, rule] of cases) {
    void it(`${name} → ${allowed ? 'allow' : 'deny'} ${rule}`, () => {
      const decision = base.decideName(name);
      assert.equal(decision.allow, allowed, decision.reason);
      assert.equal(decision.rule, rule);
    });
  }

  void it('allow-all: a name denied on one port only is still resolvable', () => {
    const policy = compilePolicy(config({ networkPolicy: 'allow-all', deniedHosts: ['x.test:80', 'x.test:443', 'y.test'] }));
    assert.equal(policy.decideName('x.test').allow, true);
    assert.equal(policy.decideName('y.test').rule, 'denied_hosts[2]');
  });
});

void describe('decideAnswer (DNS answers)', () => {
  const base = compilePolicy(BASE);
  const cases: ReadonlyArray<[string, boolean, RuleId]> = [
    ['93.184.216.34', true, 'network_policy'],
    ['10.20.1.1', true, 'allowed_hosts[3]'],
    ['10.9.9.9', false, 'builtin.private'],
    ['169.254.169.254', false, 'builtin.cloud-metadata'],
    ['::1', false, 'builtin.loopback'],
    ['10.20.99.1', false, 'denied_hosts[3]'],
    ['192.168.65.2', false, 'builtin.host-address'],
  ];
  for (const [address, allowed, rule] of cases) {
    void it(`${address} → ${allowed ? 'allow' : 'deny'} ${rule}`, () => {
      const decision = base.decideAnswer(ip(address));
      assert.equal(decision.allow, allowed, decision.reason);
      assert.equal(decision.rule, rule);
      assert.ok(!decision.reason.includes(address), `reason leaks ${address}: ${decision.reason}`);
    });
  }
});

void describe('parseHostPattern', () => {
  const good: ReadonlyArray<[string, string]> = [
    ['api.test', 'api.test'],
    ['API.Test.', 'api.test'],
    ['api.test:8443', 'api.test:8443'],
    ['*.example.test', '*.example.test'],
    ['*.Example.Test:8443', '*.example.test:8443'],
    ['*.co.uk', '*.co.uk'],
    ['bücher.test', 'xn--bcher-kva.test'],
    ['0x7f.0.0.1', '127.0.0.1'], // odd spellings normalise (the policy refuses loopback anyway)
    ['2130706433:80', '127.0.0.1:80'],
    ['::1', '::1'],
    ['[::1]:8080', '[::1]:8080'],
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['10.0.0.0/8:5432', '10.0.0.0/8:5432'],
    ['fd00::/8', 'fd00::/8'],
    ['[fd00::/8]:5432', '[fd00::/8]:5432'],
    ['[FD00:0::/8]', 'fd00::/8'],
  ];
  for (const [raw, canonical] of good) {
    void it(`${raw} → ${canonical}`, () => {
      const parsed = parseHostPattern(raw);
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
      assert.equal(patternToString(parsed.pattern), canonical);
    });
  }

  const bad: ReadonlyArray<[string, RegExp]> = [
    ['*', /too broad.*e\.g\. api\.example\.com/],
    ['*.test', /too broad/],
    ['*.com:443', /too broad/],
    ['a*.b.test', /only allowed as the whole first label/],
    ['*a.b.test', /only allowed as the whole first label/],
    ['a.*.b.test', /only allowed as the whole first label/],
    ['*.*.b.test', /only allowed as the whole first label/],
    ['*.10.0.0.1', /not an IP address|IPv4/],
    ['10.1.2.3/8', /use 10\.0\.0\.0\/8/],
    ['fd00::1/8', /use fd00::\/8/],
    ['0.0.0.0/0', /matches every address/],
    ['::/0', /matches every address/],
    ['[10.0.0.0/8]', /brackets are only for IPv6/],
    ['[api.test]:443', /brackets are only allowed around an IPv6/],
    ['api.test:0', /out of range/],
    ['api.test:65536', /out of range/],
    ['api.test:', /port is empty/],
    ['api.test:http', /not a decimal number/],
    ['[::1]x', /only a :port may follow/],
    ['', /empty/],
    ['exa mple.test', /space/],
    ['foo.123', /IPv4/],
  ];
  for (const [raw, error] of bad) {
    void it(`refuses ${JSON.stringify(raw)}`, () => {
      const parsed = parseHostPattern(raw);
      assert.equal(parsed.ok, false);
      assert.match(parsed.ok ? '' : parsed.error, error);
    });
  }
});

void describe('compilePolicy', () => {
  void it('names the invalid entry', () => {
    assert.throws(() => compilePolicy(config({ allowedHosts: ['ok.test', '*'] })), /allowed_hosts\[1\] "\*"/);
    assert.throws(() => compilePolicy(config({ deniedHosts: ['10.1.0.0/8'] })), /denied_hosts\[0\] "10\.1\.0\.0\/8".*use 10\.0\.0\.0\/8/);
  });
});

void describe('StaticPolicyTable', () => {
  void it('serves per-client policies and falls back to the default', () => {
    const fallback: Policy = compilePolicy(config());
    const special: Policy = compilePolicy(config({ allowedHosts: ['api.test'] }));
    const table = new StaticPolicyTable(fallback);
    table.set('172.18.0.2', special);
    assert.equal(table.forClient('172.18.0.2'), special);
    assert.equal(table.forClient('::ffff:172.18.0.2'), special); // dual-stack socket form
    assert.equal(table.forClient('172.18.0.3'), fallback);
    assert.equal(table.delete('::ffff:172.18.0.2'), true);
    assert.equal(table.forClient('172.18.0.2'), fallback);
  });
});
