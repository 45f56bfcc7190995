import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostToString, parseAuthority, parseHost } from '../../src/net/host.js';

function normalised(input: string, brackets: 'required-for-ipv6' | 'forbidden' = 'forbidden'): string {
  const parsed = parseHost(input, { brackets });
  assert.ok(parsed.ok, `${JSON.stringify(input)} should parse: ${parsed.ok ? '' : parsed.error}`);
  return `${parsed.host.kind}:${hostToString(parsed.host)}`;
}

function refusal(input: string, brackets: 'required-for-ipv6' | 'forbidden' = 'forbidden'): string {
  const parsed = parseHost(input, { brackets });
  assert.equal(parsed.ok, false, `${JSON.stringify(input)} should be refused`);
  return parsed.ok ? '' : parsed.error;
}

void describe('parseHost: names', () => {
  const cases: ReadonlyArray<[string, string]> = [
    ['example.com', 'name:example.com'],
    ['EXAMPLE.Com', 'name:example.com'], // case-insensitive
    ['example.com.', 'name:example.com'], // one trailing dot (FQDN)
    ['bücher.de', 'name:xn--bcher-kva.de'], // IDN → punycode
    ['xn--bcher-kva.de', 'name:xn--bcher-kva.de'], // already punycode
    ['ｅｘａｍｐｌｅ。ｃｏｍ', 'name:example.com'], // fullwidth letters and ideographic full stop
    ['_dmarc.example.com', 'name:_dmarc.example.com'], // underscore tolerated
    ['localhost', 'name:localhost'], // single label is a name (policy refuses it)
    ['a-b.c', 'name:a-b.c'],
    ['123.example.com', 'name:123.example.com'], // digits are fine when the last label is not a number
  ];
  for (const [input, expected] of cases) {
    void it(`${JSON.stringify(input)} → ${expected}`, () => assert.equal(normalised(input), expected));
  }
});

void describe('parseHost: the WHATWG "ends in a number" rule', () => {
  const cases: ReadonlyArray<string> = [
    '127.0.0.1',
    '127.1',
    '0x7f.1',
    '2130706433',
    '0177.0.0.1',
    '0x7F000001',
    '127.0.0.1.', // trailing dot
    '１２７.０.０.１', // fullwidth digits
    '１２７。０。０。１', // fullwidth digits, ideographic dots
  ];
  for (const input of cases) {
    void it(`${JSON.stringify(input)} is 127.0.0.1`, () => assert.equal(normalised(input), 'ip:127.0.0.1'));
  }

  const notAddresses: ReadonlyArray<string> = ['foo.123', 'example.0x1', '256.0.0.1', '1.2.3.4.5', '09.1', 'foo.0x'];
  for (const input of notAddresses) {
    void it(`${input} ends in a number but is no IPv4 address`, () => {
      assert.match(refusal(input), /looks like an IPv4 address but is not a valid one/);
    });
  }
});

void describe('parseHost: IPv6 and brackets', () => {
  void it('accepts a bare IPv6 where brackets are forbidden', () => {
    assert.equal(normalised('::1'), 'ip:::1');
    assert.equal(normalised('::FFFF:127.0.0.1'), 'ip:::ffff:7f00:1');
  });
  void it('accepts brackets only in authority context', () => {
    assert.equal(normalised('[2001:DB8::1]', 'required-for-ipv6'), 'ip:2001:db8::1');
    assert.match(refusal('[::1]', 'forbidden'), /brackets are not allowed here/);
  });
  void it('requires brackets around IPv6 in authority context', () => {
    assert.match(refusal('::1', 'required-for-ipv6'), /must be in brackets/);
  });
  void it('refuses brackets around a name or an IPv4', () => {
    assert.match(refusal('[example.com]', 'required-for-ipv6'), /only allowed around an IPv6/);
    assert.match(refusal('[127.0.0.1]', 'required-for-ipv6'), /only allowed around an IPv6/);
    assert.match(refusal('[::1', 'required-for-ipv6'), /brackets/);
    assert.match(refusal('::1]', 'required-for-ipv6'), /brackets/);
    assert.match(refusal('[[::1]]', 'required-for-ipv6'), /brackets/);
  });
  void it('refuses a name with a port', () => {
    assert.match(refusal('example.com:80'), /not a valid IPv6 address/);
  });
});

void describe('parseHost: refusals', () => {
  const cases: ReadonlyArray<[string, RegExp]> = [
    ['', /host is empty/],
    ['.', /host is empty/],
    ['exa\u0000mple.com', /control character/], // NUL truncation in C resolvers
    ['example.com\r\nX-Injected: 1', /control character/], // header injection
    ['example.com\n', /control character/],
    ['exa\u007fmple.com', /control character/],
    ['exa\u0085mple.com', /control character/], // C1 NEL
    ['exa mple.com', /space/],
    ['example.com\u3000', /space/], // ideographic space
    ['exa\u00a0mple.com', /space/], // NBSP
    ['fe80::1%eth0', /'%'/], // zone id
    ['%31%32%37.0.0.1', /'%'/], // percent-escapes would be decoded by domainToASCII
    ['example.com/path', /'\/'/],
    ['example.com\\x', /'\\'/],
    ['user@example.com', /'@'/],
    ['example.com?q', /'\?'/],
    ['example.com#f', /'#'/],
    ['a..b', /empty label/],
    ['.example.com', /empty label/],
    ['example.com..', /empty label/], // only one trailing dot is stripped
    ['-example.com', /hyphen/],
    ['example-.com', /hyphen/],
    ['exa*mple.com', /character not allowed/],
    ['exa!mple.com', /character not allowed/],
    [`${'a'.repeat(64)}.com`, /label longer than 63/],
    [`${'a.'.repeat(127)}com`, /longer than 253/],
    ['xn--a', /not a valid domain name/], // broken punycode
  ];
  for (const [input, error] of cases) {
    void it(`refuses ${JSON.stringify(input.slice(0, 40))}`, () => assert.match(refusal(input), error));
  }

  void it('accepts the longest legal name and label', () => {
    const label63 = 'a'.repeat(63);
    const name253 = `${label63}.${label63}.${label63}.${'a'.repeat(61)}`;
    assert.equal(name253.length, 253);
    assert.equal(normalised(name253), `name:${name253}`);
    assert.equal(normalised(`${name253}.`), `name:${name253}`);
  });
});

void describe('parseAuthority', () => {
  const good: ReadonlyArray<[string, string, number]> = [
    ['example.com:443', 'example.com', 443],
    ['EXAMPLE.com.:80', 'example.com', 80],
    ['[::1]:8080', '::1', 8080],
    ['[2001:db8::1]:1', '2001:db8::1', 1],
    ['0x7f.1:65535', '127.0.0.1', 65535],
  ];
  for (const [input, host, port] of good) {
    void it(`${input} → ${host} port ${port}`, () => {
      const parsed = parseAuthority(input);
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
      assert.equal(hostToString(parsed.host), host);
      assert.equal(parsed.port, port);
    });
  }

  const bad: ReadonlyArray<[string, RegExp]> = [
    ['example.com', /needs a port/],
    ['example.com:', /port is empty/],
    ['example.com:0', /out of range/],
    ['example.com:65536', /out of range/],
    ['example.com:+443', /not a decimal number/],
    ['example.com:0x1bb', /not a decimal number/],
    ['example.com:443:1', /more than one colon/],
    ['::1:443', /more than one colon/],
    ['[::1]', /needs a port/],
    ['[::1]443', /needs a port/],
    ['[::1:443', /unclosed bracket/],
    ['[example.com]:443', /only allowed around an IPv6/],
    [':443', /host is empty/],
    ['exa mple.com:443', /space/],
  ];
  for (const [input, error] of bad) {
    void it(`refuses ${input}`, () => {
      const parsed = parseAuthority(input);
      assert.equal(parsed.ok, false);
      assert.match(parsed.ok ? '' : parsed.error, error);
    });
  }
});
