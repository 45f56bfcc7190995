import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifyAddress, embeddedIpv4s, unmapIpv4 } from '../../src/net/classify.js';
import { parseIp } from '../../src/net/ip.js';
import type { AddressClass } from '../../src/policy/types.js';

interface Row {
  readonly ip: string;
  readonly cls: AddressClass;
  readonly liftable?: boolean;
  readonly via?: string;
}

/** In the spirit of smokescreen's TestClassifyAddr: every row says which RFC or attack it stands for. */
const TABLE: ReadonlyArray<Row & { readonly why: string }> = [
  // Loopback: the gateway host's own services (Docker API on 2375, databases, the proxy itself).
  { ip: '127.0.0.1', cls: 'loopback', why: 'RFC 1122 loopback' },
  { ip: '127.255.255.254', cls: 'loopback', why: 'anywhere in 127/8' },
  { ip: '::1', cls: 'loopback', why: 'RFC 4291 IPv6 loopback' },
  { ip: '128.0.0.0', cls: 'public', why: 'just outside 127/8' },
  // Unspecified: connecting to 0.0.0.0 reaches localhost on Linux.
  { ip: '0.0.0.0', cls: 'unspecified', why: 'RFC 1122 "this host"' },
  { ip: '0.255.255.255', cls: 'unspecified', why: 'RFC 1122 "this network", top of 0/8' },
  { ip: '::', cls: 'unspecified', why: 'RFC 4291 unspecified' },
  { ip: '1.0.0.0', cls: 'public', why: 'just outside 0/8' },
  // Cloud metadata: credential theft via SSRF (Capital One 2019). Checked before link-local.
  { ip: '169.254.169.254', cls: 'cloud metadata', why: 'AWS/GCP/Azure/OCI IMDS' },
  { ip: '169.254.170.2', cls: 'cloud metadata', why: 'AWS ECS task credentials' },
  { ip: '169.254.170.23', cls: 'cloud metadata', why: 'AWS EKS Pod Identity' },
  { ip: '169.254.0.23', cls: 'cloud metadata', why: 'Tencent Cloud metadata' },
  { ip: '168.63.129.16', cls: 'cloud metadata', why: 'Azure WireServer (public-looking address)' },
  { ip: '100.100.100.200', cls: 'cloud metadata', why: 'Alibaba Cloud metadata, inside CGNAT space' },
  { ip: '192.0.0.192', cls: 'cloud metadata', why: 'Oracle Cloud legacy metadata, inside 192.0.0/24' },
  { ip: 'fd00:ec2::254', cls: 'cloud metadata', why: 'AWS IMDS over IPv6, inside ULA space' },
  { ip: 'fd00:ec2::23', cls: 'cloud metadata', why: 'AWS EKS Pod Identity over IPv6' },
  { ip: 'fd20:ce::254', cls: 'cloud metadata', why: 'GCP metadata over IPv6' },
  { ip: '168.63.129.17', cls: 'public', why: 'next to Azure WireServer' },
  // Link-local: other metadata-ish agents and neighbours on the host network.
  { ip: '169.254.1.1', cls: 'link-local', why: 'RFC 3927' },
  { ip: '169.254.169.253', cls: 'link-local', why: 'AWS DNS; link-local, not in the metadata list' },
  { ip: 'fe80::1', cls: 'link-local', why: 'RFC 4291 fe80::/10' },
  { ip: 'febf:ffff::1', cls: 'link-local', why: 'top of fe80::/10' },
  { ip: 'fec0::1', cls: 'private', liftable: true, why: 'RFC 3879 site-local, just outside fe80::/10' },
  { ip: '169.253.255.255', cls: 'public', why: 'just below 169.254/16' },
  { ip: '169.255.0.0', cls: 'public', why: 'just above 169.254/16' },
  // Multicast, broadcast, reserved: never a legitimate unicast destination.
  { ip: '224.0.0.1', cls: 'multicast', why: 'RFC 5771 all-hosts' },
  { ip: '239.255.255.250', cls: 'multicast', why: 'SSDP (UPnP discovery)' },
  { ip: 'ff02::1', cls: 'multicast', why: 'RFC 4291 all-nodes' },
  { ip: '223.255.255.255', cls: 'public', why: 'just below 224/4' },
  { ip: '255.255.255.255', cls: 'broadcast', why: 'RFC 919 limited broadcast' },
  { ip: '240.0.0.1', cls: 'reserved', why: 'RFC 1112 class E' },
  { ip: '255.255.255.254', cls: 'reserved', why: 'class E next to broadcast' },
  // Private (liftable by an allowed IP/CIDR entry): internal networks.
  { ip: '10.0.0.1', cls: 'private', liftable: true, why: 'RFC 1918' },
  { ip: '172.16.0.1', cls: 'private', liftable: true, why: 'RFC 1918' },
  { ip: '172.31.255.255', cls: 'private', liftable: true, why: 'top of 172.16/12' },
  { ip: '172.32.0.0', cls: 'public', why: 'just outside 172.16/12' },
  { ip: '172.15.255.255', cls: 'public', why: 'just below 172.16/12' },
  { ip: '192.168.1.1', cls: 'private', liftable: true, why: 'RFC 1918' },
  { ip: '100.64.0.0', cls: 'private', liftable: true, why: 'RFC 6598 CGNAT, bottom' },
  { ip: '100.127.255.255', cls: 'private', liftable: true, why: 'RFC 6598 CGNAT, top' },
  { ip: '100.63.255.255', cls: 'public', why: 'just outside CGNAT (below)' },
  { ip: '100.128.0.0', cls: 'public', why: 'just outside CGNAT (above)' },
  { ip: '198.18.0.1', cls: 'private', liftable: true, why: 'RFC 2544 benchmarking' },
  { ip: '198.20.0.0', cls: 'public', why: 'just outside 198.18/15' },
  { ip: '192.0.0.1', cls: 'private', liftable: true, why: 'RFC 6890 IETF protocol assignments' },
  { ip: '192.0.2.1', cls: 'private', liftable: true, why: 'RFC 5737 TEST-NET-1' },
  { ip: '198.51.100.1', cls: 'private', liftable: true, why: 'RFC 5737 TEST-NET-2' },
  { ip: '203.0.113.1', cls: 'private', liftable: true, why: 'RFC 5737 TEST-NET-3' },
  { ip: 'fd12:3456::1', cls: 'private', liftable: true, why: 'RFC 4193 ULA' },
  { ip: 'fc00::1', cls: 'private', liftable: true, why: 'RFC 4193 ULA, fc00::/7 lower half' },
  { ip: '2001:db8::1', cls: 'private', liftable: true, why: 'RFC 3849 documentation' },
  { ip: '64:ff9b:1::1', cls: 'private', liftable: true, why: 'RFC 8215 local-use NAT64' },
  // Public.
  { ip: '8.8.8.8', cls: 'public', why: 'a public resolver' },
  { ip: '2606:4700:4700::1111', cls: 'public', why: 'public IPv6' },
  // IPv4 embedded in IPv6: the address the packet really reaches decides (smuggling past an IPv4-only check).
  { ip: '::ffff:127.0.0.1', cls: 'loopback', via: 'IPv4-mapped', why: 'RFC 4291 mapped loopback' },
  { ip: '::ffff:169.254.169.254', cls: 'cloud metadata', via: 'IPv4-mapped', why: 'mapped IMDS' },
  { ip: '::ffff:10.0.0.1', cls: 'private', liftable: true, via: 'IPv4-mapped', why: 'mapped RFC 1918' },
  { ip: '::ffff:8.8.8.8', cls: 'public', why: 'mapped public stays public' },
  { ip: '::ffff:0:127.0.0.1', cls: 'loopback', via: 'IPv4-translated', why: 'RFC 2765 SIIT' },
  { ip: '::127.0.0.1', cls: 'loopback', via: 'IPv4-compatible', why: 'RFC 4291 deprecated compatible form' },
  { ip: '::0.0.0.2', cls: 'unspecified', via: 'IPv4-compatible', why: 'compatible form of 0.0.0.2' },
  { ip: '64:ff9b::169.254.169.254', cls: 'cloud metadata', via: 'NAT64', why: 'RFC 6052 NAT64 to IMDS' },
  { ip: '64:ff9b::7f00:1', cls: 'loopback', via: 'NAT64', why: 'NAT64 to loopback' },
  { ip: '64:ff9b::8.8.8.8', cls: 'public', why: 'NAT64 to a public address' },
  { ip: '2002:7f00:1::', cls: 'loopback', via: '6to4', why: 'RFC 3056 6to4 of 127.0.0.1' },
  { ip: '2002:a9fe:a9fe::1', cls: 'cloud metadata', via: '6to4', why: '6to4 of IMDS' },
  { ip: '2002:808:808::1', cls: 'private', liftable: true, why: '6to4 of a public IPv4: the 6to4 range itself' },
  { ip: '2001:0:4136:e378:8000:63bf:80ff:fffe', cls: 'loopback', via: 'Teredo client', why: 'RFC 4380 client 127.0.0.1 (inverted)' },
  { ip: '2001:0:a9fe:a9fe::f7f7:f7f7', cls: 'cloud metadata', via: 'Teredo server', why: 'Teredo server bits 32..64 = IMDS' },
  { ip: '2001:0:4136:e378:8000:63bf:3fff:fdd2', cls: 'private', liftable: true, via: 'Teredo client', why: 'RFC 4380 example, client 192.0.2.45' },
  { ip: '2001:0:4136:e378::f7f7:f7f7', cls: 'private', liftable: true, why: 'Teredo with public client 8.8.8.8: the range itself' },
];

void describe('classifyAddress', () => {
  for (const row of TABLE) {
    void it(`${row.ip} is ${row.cls} (${row.why})`, () => {
      const ip = parseIp(row.ip);
      assert.ok(ip, `${row.ip} parses`);
      const got = classifyAddress(ip);
      assert.equal(got.cls, row.cls);
      if (row.cls !== 'public') {
        assert.equal(got.liftable, row.liftable === true ? 'by-allowed-ip-or-cidr' : 'never');
        assert.equal(got.rule, row.cls === 'cloud metadata' ? 'builtin.cloud-metadata' : `builtin.${row.cls}`);
      }
      assert.equal(got.via, row.via);
    });
  }
});

void describe('embedded IPv4 helpers', () => {
  void it('unmaps only IPv4-mapped addresses', () => {
    assert.equal(unmapIpv4(parseIp('::ffff:10.1.2.3')!)?.text, '10.1.2.3');
    assert.equal(unmapIpv4(parseIp('64:ff9b::a01:203')!), null);
    assert.equal(unmapIpv4(parseIp('10.1.2.3')!), null);
  });
  void it('finds every embedded IPv4', () => {
    assert.deepEqual(embeddedIpv4s(parseIp('64:ff9b::a01:203')!).map((ip) => ip.text), ['10.1.2.3']);
    assert.deepEqual(
      embeddedIpv4s(parseIp('2001:0:4136:e378:8000:63bf:3fff:fdd2')!).map((ip) => ip.text),
      ['192.0.2.45', '65.54.227.120'],
    );
    assert.deepEqual(embeddedIpv4s(parseIp('::1')!), []);
    assert.deepEqual(embeddedIpv4s(parseIp('2606:4700::1')!), []);
  });
});
