import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseResolvConf, ResolveError, UpstreamResolver, type UpstreamResolverOptions } from '../../proxy/resolver.js';
import type { DnsServerAddress } from '../../proxy/types.js';
import { startTestDnsServer, type TestDnsServer, type TestRecords } from '../fixtures/dns-upstream.js';

async function upstream(t: TestContext, records: TestRecords): Promise<TestDnsServer> {
  const server = await startTestDnsServer(records);
  t.after(() => server.close());
  return server;
}

function resolver(t: TestContext, servers: DnsServerAddress[], options: UpstreamResolverOptions = {}): UpstreamResolver {
  const r = new UpstreamResolver(servers, { timeoutMs: 300, ...options });
  t.after(() => r.close());
  return r;
}

function texts(result: { addresses: readonly { text: string }[] }): string[] {
  return result.addresses.map((a) => a.text);
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ResolveError, `expected ResolveError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

void test('resolve merges A and AAAA, IPv4 first, with the smallest TTL', async (t) => {
  const dns = await upstream(t, { 'both.example': { A: ['192.0.2.1', '192.0.2.2'], AAAA: ['2001:db8::1'], ttl: 40 } });
  const r = resolver(t, [dns.address]);
  const result = await r.resolve('both.example');
  assert.deepEqual(texts(result), ['192.0.2.1', '192.0.2.2', '2001:db8::1']);
  assert.equal(result.ttl, 40);
  assert.equal(result.addresses[0]?.family, 4);
  assert.equal(result.addresses[2]?.family, 6);
});

void test('resolveType asks one type; NODATA is an empty list; resolve() of a name without addresses is ENOTFOUND', async (t) => {
  const dns = await upstream(t, { 'v4only.example': { A: ['192.0.2.7'] }, 'empty.example': {} });
  const r = resolver(t, [dns.address]);
  assert.deepEqual(texts(await r.resolveType('v4only.example', 'A')), ['192.0.2.7']);
  assert.deepEqual(texts(await r.resolveType('v4only.example', 'AAAA')), []);
  assert.deepEqual(texts(await r.resolve('v4only.example')), ['192.0.2.7']);
  await rejectsWith(r.resolve('empty.example'), 'ENOTFOUND');
});

void test('NXDOMAIN is ENOTFOUND and is cached negatively', async (t) => {
  const dns = await upstream(t, {});
  const r = resolver(t, [dns.address]);
  await rejectsWith(r.resolveType('missing.example', 'A'), 'ENOTFOUND');
  await rejectsWith(r.resolveType('missing.example', 'A'), 'ENOTFOUND');
  assert.equal(dns.queries('missing.example'), 1);
});

void test('SERVFAIL is ESERVFAIL, and the next server is tried in order', async (t) => {
  const broken = await upstream(t, { 'svc.example': { rcode: 'SERVFAIL' } });
  const refusing = await upstream(t, { 'svc.example': { rcode: 'REFUSED' } });
  const good = await upstream(t, { 'svc.example': { A: ['192.0.2.9'] } });
  await rejectsWith(resolver(t, [broken.address]).resolveType('svc.example', 'A'), 'ESERVFAIL');
  await rejectsWith(resolver(t, [refusing.address]).resolveType('svc.example', 'A'), 'ESERVFAIL');
  const r = resolver(t, [broken.address, refusing.address, good.address]);
  assert.deepEqual(texts(await r.resolveType('svc.example', 'A')), ['192.0.2.9']);
  assert.equal(good.queries('svc.example'), 1);
});

void test('a silent server times out after one retry (ETIMEOUT), then the next server answers', async (t) => {
  const silent = await upstream(t, { 'slow.example': { A: ['192.0.2.1'], silentUdp: true } });
  const good = await upstream(t, { 'slow.example': { A: ['192.0.2.2'] } });
  await rejectsWith(resolver(t, [silent.address], { timeoutMs: 100 }).resolveType('slow.example', 'A'), 'ETIMEOUT');
  assert.equal(silent.queries('slow.example'), 2, 'one query plus one retry');
  const r = resolver(t, [silent.address, good.address], { timeoutMs: 100 });
  assert.deepEqual(texts(await r.resolveType('slow.example', 'A')), ['192.0.2.2']);
});

void test('a truncated UDP answer is retried over TCP', async (t) => {
  const dns = await upstream(t, { 'big.example': { A: ['192.0.2.10', '192.0.2.11'], truncateUdp: true } });
  const r = resolver(t, [dns.address]);
  assert.deepEqual(texts(await r.resolveType('big.example', 'A')), ['192.0.2.10', '192.0.2.11']);
  assert.equal(dns.queries('big.example'), 2, 'UDP then TCP');
});

void test('CNAME chains inside one answer are followed; the TTL is the smallest on the chain', async (t) => {
  const dns = await upstream(t, {
    'www.example': { CNAME: 'edge.example', ttl: 100 },
    'edge.example': { CNAME: 'host.cdn.example', ttl: 50 },
    'host.cdn.example': { A: ['192.0.2.20'], AAAA: ['2001:db8::20'], ttl: 200 },
  });
  const r = resolver(t, [dns.address]);
  const result = await r.resolve('www.example');
  assert.deepEqual(texts(result), ['192.0.2.20', '2001:db8::20']);
  assert.equal(result.ttl, 50);
  assert.equal(dns.queries('host.cdn.example'), 0, 'answered inside the first response');
});

void test('an answer that ends at a CNAME is asked again for the target', async (t) => {
  const dns = await upstream(t, {
    'alias.example': { CNAME: 'target.example', noChase: true },
    'target.example': { A: ['192.0.2.30'] },
  });
  const r = resolver(t, [dns.address]);
  assert.deepEqual(texts(await r.resolveType('alias.example', 'A')), ['192.0.2.30']);
  assert.equal(dns.queries('target.example'), 1);
});

void test('CNAME loops are bounded (ESERVFAIL), inside an answer and across re-queries', async (t) => {
  const dns = await upstream(t, {
    'loop-a.example': { CNAME: 'loop-b.example' },
    'loop-b.example': { CNAME: 'loop-a.example' },
    'hop-a.example': { CNAME: 'hop-b.example', noChase: true, ttl: 0 },
    'hop-b.example': { CNAME: 'hop-a.example', noChase: true, ttl: 0 },
  });
  const r = resolver(t, [dns.address]);
  await rejectsWith(r.resolveType('loop-a.example', 'A'), 'ESERVFAIL');
  await rejectsWith(r.resolveType('hop-a.example', 'A'), 'ESERVFAIL');
  assert.ok(dns.queries('hop-a.example') + dns.queries('hop-b.example') <= 10);
});

void test('positive answers are cached for their TTL; TTL 0 is not cached', async (t) => {
  const dns = await upstream(t, { 'cached.example': { A: ['192.0.2.40'], ttl: 60 }, 'fresh.example': { A: ['192.0.2.41'], ttl: 0 } });
  const r = resolver(t, [dns.address]);
  await r.resolveType('cached.example', 'A');
  dns.setRecords({ 'cached.example': { A: ['192.0.2.99'], ttl: 60 }, 'fresh.example': { A: ['192.0.2.42'], ttl: 0 } });
  assert.deepEqual(texts(await r.resolveType('cached.example', 'A')), ['192.0.2.40']);
  assert.equal(dns.queries('cached.example'), 1);
  assert.deepEqual(texts(await r.resolveType('fresh.example', 'A')), ['192.0.2.42']);
  assert.deepEqual(texts(await r.resolveType('fresh.example', 'A')), ['192.0.2.42']);
  assert.equal(dns.queries('fresh.example'), 2);
});

void test('cache expiry follows the clock, and the size bound evicts the oldest entry', async (t) => {
  let now = 1_000_000;
  const dns = await upstream(t, {
    'one.example': { A: ['192.0.2.1'], ttl: 10 },
    'two.example': { A: ['192.0.2.2'], ttl: 10 },
    'three.example': { A: ['192.0.2.3'], ttl: 10 },
  });
  const r = resolver(t, [dns.address], { cacheSize: 2, now: () => now });
  await r.resolveType('one.example', 'A');
  now += 4_000;
  const cached = await r.resolveType('one.example', 'A');
  assert.equal(cached.ttl, 6, 'the remaining lifetime is handed out');
  now += 7_000;
  await r.resolveType('one.example', 'A');
  assert.equal(dns.queries('one.example'), 2, 'expired entry asked again');
  await r.resolveType('two.example', 'A');
  await r.resolveType('three.example', 'A');
  await r.resolveType('one.example', 'A');
  assert.equal(dns.queries('one.example'), 3, 'evicted by the size bound');
});

void test('identical concurrent queries share one upstream query', async (t) => {
  const dns = await upstream(t, { 'dedupe.example': { A: ['192.0.2.50'], ttl: 0 } });
  const r = resolver(t, [dns.address]);
  const results = await Promise.all([1, 2, 3, 4, 5].map(() => r.resolveType('dedupe.example', 'A')));
  for (const result of results) assert.deepEqual(texts(result), ['192.0.2.50']);
  assert.equal(dns.queries('dedupe.example'), 1);
});

void test('forged responses (other source port, wrong ID, wrong question) are ignored', async (t) => {
  const dns = await upstream(t, { 'spoofed.example': { A: ['192.0.2.60'], AAAA: ['2001:db8::60'], spoof: true } });
  const r = resolver(t, [dns.address], { timeoutMs: 2000 });
  assert.deepEqual(texts(await r.resolve('spoofed.example')), ['192.0.2.60', '2001:db8::60']);
});

void test('invalid names are refused without a query', async (t) => {
  const dns = await upstream(t, {});
  const r = resolver(t, [dns.address]);
  for (const name of ['', 'bad name.example', 'a..example', '192.0.2.1', 'x\r\n.example']) {
    await rejectsWith(r.resolveType(name, 'A'), 'EBADNAME');
  }
  assert.equal(dns.totalQueries, 0);
});

void test('close() cancels pending queries and later ones', async (t) => {
  const dns = await upstream(t, { 'hang.example': { A: ['192.0.2.1'], silentUdp: true } });
  const r = new UpstreamResolver([dns.address], { timeoutMs: 5000 });
  const pending = r.resolveType('hang.example', 'A');
  r.close();
  await rejectsWith(pending, 'ECANCELLED');
  await rejectsWith(r.resolve('hang.example'), 'ECANCELLED');
});

void test('constructor refuses non-IP servers; resolv.conf parsing', (t) => {
  assert.throws(() => new UpstreamResolver([{ host: 'dns.example', port: 53 }]), /must be an IP address/);
  assert.throws(() => new UpstreamResolver([]), /at least one/);
  assert.deepEqual(
    parseResolvConf('# comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53 # v6\nnameserver fe80::1%eth0\nsearch example\noptions ndots:1\n'),
    [
      { host: '192.0.2.53', port: 53 },
      { host: '2001:db8::53', port: 53 },
    ],
  );
  const dir = mkdtempSync(join(tmpdir(), 'clawbox-resolv-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'resolv.conf');
  writeFileSync(path, 'nameserver 127.0.0.1\n');
  UpstreamResolver.fromResolvConf(path).close();
  writeFileSync(path, 'search example\n');
  UpstreamResolver.fromResolvConf(path).close();
});

void test('names are canonicalised before the query (case, trailing dot, IDN to punycode)', async (t) => {
  const dns = await upstream(t, { 'xn--bcher-kva.example': { A: ['192.0.2.70'] }, 'upper.example': { A: ['192.0.2.71'] } });
  const r = resolver(t, [dns.address]);
  assert.deepEqual(texts(await r.resolveType('bücher.example', 'A')), ['192.0.2.70']);
  assert.deepEqual(texts(await r.resolveType('UPPER.Example.', 'A')), ['192.0.2.71']);
});
