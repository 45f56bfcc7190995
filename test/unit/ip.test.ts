import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContains, formatIp, parseCidr, parseIp, parseIpv4, parseIpv6 } from '../../src/net/ip.js';

void describe('parseIpv4', () => {
  const same127: ReadonlyArray<string> = [
    '127.0.0.1', // dotted quad
    '127.1', // 2 parts: last fills 3 bytes
    '127.0.1', // 3 parts: last fills 2 bytes
    '2130706433', // 1 part: decimal u32
    '0x7f.1', // hex first part
    '0x7F000001', // hex u32, upper case
    '0X7f.0X0.0x0.0x1', // upper-case prefix
    '0177.0.0.1', // octal first part
    '017700000001', // octal u32
    '0x7f.0.0.01', // mixed hex / decimal / octal
    '0x00000000007f.1', // long zero padding is not an overflow
  ];
  for (const text of same127) {
    void it(`reads ${text} as 127.0.0.1`, () => assert.equal(parseIpv4(text)?.text, '127.0.0.1'));
  }

  void it('reads the edges of the u32 space', () => {
    assert.equal(parseIpv4('0')?.text, '0.0.0.0');
    assert.equal(parseIpv4('4294967295')?.text, '255.255.255.255');
    assert.equal(parseIpv4('0x')?.text, '0.0.0.0'); // WHATWG: empty hex digits are 0
    assert.equal(parseIpv4('1.2.65535')?.text, '1.2.255.255');
    assert.equal(parseIpv4('1.16777215')?.text, '1.255.255.255');
  });

  const invalid: ReadonlyArray<[string, string]> = [
    ['', 'empty'],
    ['256.0.0.1', 'non-last part over 255'],
    ['1.256.0.1', 'non-last part over 255'],
    ['1.2.3.256', 'last part over its byte'],
    ['1.2.65536', 'last part over its 2 bytes'],
    ['1.16777216', 'last part over its 3 bytes'],
    ['4294967296', 'over 2^32'],
    ['0x100000000', 'hex over 2^32'],
    ['1.2.3.4.5', 'five parts'],
    ['1..2.3', 'empty part'],
    ['.1.2.3', 'leading empty part'],
    ['1.2.3.4.', 'trailing dot (parseHost strips it, not parseIpv4)'],
    ['08.1.1.1', 'octal with digit 8'],
    ['0x1g.1', 'bad hex digit'],
    ['+1.2.3.4', 'sign'],
    ['-1', 'negative'],
    [' 1.2.3.4', 'whitespace'],
    ['1.2.3.4 ', 'trailing whitespace'],
    ['１.2.3.4', 'fullwidth digit (parseHost maps it first)'],
  ];
  for (const [text, why] of invalid) {
    void it(`refuses ${JSON.stringify(text)} (${why})`, () => assert.equal(parseIpv4(text), null));
  }
});

void describe('parseIpv6', () => {
  const canonical: ReadonlyArray<[string, string]> = [
    ['::1', '::1'],
    ['::', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['2001:DB8::1', '2001:db8::1'], // RFC 5952 4.3: lower case
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'], // 4.1: no leading zeros
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // 4.2.3: first of equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // 4.2.2: a single 0 group is not compressed
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // 4.2.3: the longest run wins
    ['::ffff:127.0.0.1', '::ffff:7f00:1'], // embedded dotted quad; mapped stays IPv6
    ['::127.0.0.1', '::7f00:1'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ['fe80::', 'fe80::'],
    ['1::', '1::'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
  ];
  for (const [text, expected] of canonical) {
    void it(`formats ${text} as ${expected}`, () => assert.equal(parseIpv6(text)?.text, expected));
  }

  const invalid: ReadonlyArray<[string, string]> = [
    ['fe80::1%eth0', 'zone id'],
    ['fe80::1%25eth0', 'URL-escaped zone id'],
    ['[::1]', 'brackets'],
    ['1::2::3', 'two ::'],
    [':1:2:3:4:5:6:7', 'single leading colon'],
    ['1:2:3:4:5:6:7:', 'single trailing colon'],
    ['1:2:3:4:5:6:7', 'seven groups'],
    ['1:2:3:4:5:6:7:8:9', 'nine groups'],
    ['1:2:3:4:5:6:7::8', ':: standing for no group'],
    ['12345::', 'group of five digits'],
    ['::ffff:127.1', 'short IPv4 form inside IPv6'],
    ['::ffff:0x7f.0.0.1', 'hex IPv4 inside IPv6'],
    ['::ffff:127.0.0.01', 'leading zero inside IPv6 dotted quad (octal ambiguity)'],
    ['::ffff:256.0.0.1', 'bad dotted quad'],
    ['::1.2.3.4:1', 'dotted quad not last'],
    ['g::1', 'bad hex'],
    ['1.2.3.4', 'IPv4'],
    [':', 'lone colon'],
  ];
  for (const [text, why] of invalid) {
    void it(`refuses ${text} (${why})`, () => assert.equal(parseIpv6(text), null));
  }
});

void describe('formatIp', () => {
  void it('round-trips canonical text', () => {
    for (const text of ['10.0.0.1', '::', '::1', 'fd00:ec2::254', '2001:db8::1:0:0:1']) {
      const ip = parseIp(text);
      assert.ok(ip);
      assert.equal(formatIp(ip.bytes), text);
    }
  });
  void it('refuses a byte count that is no address', () => {
    assert.throws(() => formatIp(new Uint8Array(5)), RangeError);
  });
});

void describe('CIDRs', () => {
  void it('contains its own range and nothing around it', () => {
    const parsed = parseCidr('100.64.0.0/10');
    assert.ok(parsed.ok);
    const contains = (text: string): boolean => {
      const ip = parseIp(text);
      assert.ok(ip);
      return cidrContains(parsed.cidr, ip);
    };
    assert.equal(contains('100.64.0.0'), true);
    assert.equal(contains('100.127.255.255'), true);
    assert.equal(contains('100.63.255.255'), false);
    assert.equal(contains('100.128.0.0'), false);
    assert.equal(contains('::ffff:100.64.0.1'), false); // families never mix here; policy unmaps
  });

  void it('handles IPv6 prefixes across word boundaries', () => {
    const parsed = parseCidr('2001:db8:8000::/33');
    assert.ok(parsed.ok);
    assert.equal(cidrContains(parsed.cidr, parseIp('2001:db8:8000::1')!), true);
    assert.equal(cidrContains(parsed.cidr, parseIp('2001:db8:7fff::1')!), false);
    const all = parseCidr('::/0');
    assert.ok(all.ok);
    assert.equal(cidrContains(all.cidr, parseIp('ffff::1')!), true);
  });

  void it('refuses host bits with a hint', () => {
    const parsed = parseCidr('10.1.2.3/8');
    assert.equal(parsed.ok, false);
    assert.match(parsed.ok ? '' : parsed.error, /use 10\.0\.0\.0\/8/);
    const v6 = parseCidr('fd00::1/8');
    assert.match(v6.ok ? '' : v6.error, /use fd00::\/8/);
  });

  void it('refuses bad prefixes', () => {
    for (const text of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/08', '10.0.0.0/+8', 'x/8', '10.0.0.0']) {
      assert.equal(parseCidr(text).ok, false, text);
    }
  });
});
