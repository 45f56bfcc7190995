import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { domainToASCII } from 'node:url';
import fc from 'fast-check';
import { classifyAddress } from '../../src/net/classify.js';
import { hostToString, isPlainAsciiName, parseHost } from '../../src/net/host.js';
import { ipv4FromU32, parseCanonicalIpv4, parseIp, parseIpv4 } from '../../src/net/ip.js';
import type { Host } from '../../src/net/types.js';
import { compilePolicy } from '../../src/policy/policy.js';
import type { PolicyConfig } from '../../src/policy/config.js';
import { policyConfig } from '../fixtures/policy-config.js';

const BUDGET = { interruptAfterTimeLimit: 5000, numRuns: 2000 } as const;

function mustParse(text: string): Host {
  const parsed = parseHost(text);
  assert.ok(parsed.ok, `${JSON.stringify(text)}: ${parsed.ok ? '' : parsed.error}`);
  return parsed.host;
}

type Radix = 'dec' | 'hex' | 'HEX' | 'oct';

function renderPart(value: number, radix: Radix, zeroPad: number): string {
  switch (radix) {
    case 'dec':
      return String(value);
    case 'hex':
      return `0x${'0'.repeat(zeroPad)}${value.toString(16)}`;
    case 'HEX':
      return `0X${'0'.repeat(zeroPad)}${value.toString(16).toUpperCase()}`;
    case 'oct':
      return `0${'0'.repeat(zeroPad)}${value.toString(8)}`;
  }
}

/** Splits a u32 into 1-4 inet_aton parts: the last part holds all remaining bytes. */
function splitU32(value: number, parts: 1 | 2 | 3 | 4): number[] {
  const bytes = [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
  const head = bytes.slice(0, parts - 1);
  const tail = bytes.slice(parts - 1).reduce((acc, byte) => acc * 256 + byte, 0);
  return [...head, tail];
}

function toFullwidth(text: string): string {
  return [...text]
    .map((ch) => {
      if (ch === '.') return '．';
      const code = ch.charCodeAt(0);
      return code >= 0x21 && code <= 0x7e ? String.fromCharCode(code + 0xfee0) : ch;
    })
    .join('');
}

const spelling = fc.record({
  value: fc.nat({ max: 0xffffffff }),
  parts: fc.constantFrom<1 | 2 | 3 | 4>(1, 2, 3, 4),
  radixes: fc.array(fc.constantFrom<Radix>('dec', 'hex', 'HEX', 'oct'), { minLength: 4, maxLength: 4 }),
  zeroPad: fc.nat({ max: 3 }),
  trailingDot: fc.boolean(),
  fullwidth: fc.boolean(),
});

void describe('every spelling of an IPv4 address normalises to one canonical IP', () => {
  void it('dotted / short / decimal / hex / octal / mixed, trailing dot, fullwidth', () => {
    fc.assert(
      fc.property(spelling, ({ value, parts, radixes, zeroPad, trailingDot, fullwidth }) => {
        let text = splitU32(value, parts)
          .map((part, i) => renderPart(part, radixes[i] ?? 'dec', zeroPad))
          .join('.');
        if (trailingDot) text += '.';
        if (fullwidth) text = toFullwidth(text);
        const host = mustParse(text);
        assert.equal(host.kind, 'ip');
        assert.equal(hostToString(host), ipv4FromU32(value).text, text);
      }),
      BUDGET,
    );
  });

  void it('a part overflowing its bytes is refused, never wrapped', () => {
    fc.assert(
      fc.property(fc.integer({ min: 256, max: 100_000 }), fc.nat({ max: 2 }), (big, position) => {
        const parts = ['1', '2', '3', '4'];
        parts[position] = String(big);
        assert.equal(parseHost(parts.join('.')).ok, false);
      }),
      BUDGET,
    );
  });
});

/** Built-in (never liftable) IPv4 addresses, and every IPv6 form that carries one. */
const BUILTIN_V4 = fc.oneof(
  fc.constantFrom('169.254.169.254', '169.254.170.2', '100.100.100.200', '168.63.129.16', '255.255.255.255', '0.0.0.0'),
  fc.nat({ max: 0xffffff }).map((low) => ipv4FromU32(0x7f000000 + low).text), // 127/8
  fc.nat({ max: 0xffff }).map((low) => ipv4FromU32(0xa9fe0000 + low).text), // 169.254/16
  fc.nat({ max: 0x0fffffff }).map((low) => ipv4FromU32((0xe0000000 + low) >>> 0).text), // 224/4
  fc.nat({ max: 0x0ffffffe }).map((low) => ipv4FromU32((0xf0000000 + low) >>> 0).text), // 240/4
);

function hex32(v4: string): [string, string] {
  const bytes = parseIp(v4)!.bytes;
  const hi = (((bytes[0] ?? 0) << 8) | (bytes[1] ?? 0)).toString(16);
  const lo = (((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0)).toString(16);
  return [hi, lo];
}

function teredoClient(v4: string): string {
  const inverted = (~(parseIp(v4)!.bytes.reduce((acc, b) => acc * 256 + b, 0)) >>> 0);
  const hi = (inverted >>> 16).toString(16);
  const lo = (inverted & 0xffff).toString(16);
  return `2001:0:808:808::${hi}:${lo}`; // server 8.8.8.8 is public, so the client decides
}

const EMBEDDINGS: ReadonlyArray<(v4: string) => string> = [
  (v4) => `::ffff:${v4}`,
  (v4) => `::ffff:${hex32(v4).join(':')}`,
  (v4) => `::ffff:0:${v4}`,
  (v4) => `64:ff9b::${v4}`,
  (v4) => `2002:${hex32(v4).join(':')}::1`,
  teredoClient,
];

void describe('IPv4-in-IPv6 embeddings of built-in addresses', () => {
  const policy = compilePolicy({
    networkPolicy: 'allow-all',
    allowedHosts: ['::/1', '8000::/1', '0.0.0.0/1', '128.0.0.0/1'],
    deniedHosts: [],
    defaultPorts: [80, 443],
    selfAddresses: [],
    listenerPorts: [],
  });

  void it('are denied with the class of the embedded IPv4, whatever the config allows', () => {
    fc.assert(
      fc.property(BUILTIN_V4, fc.constantFrom(...EMBEDDINGS), fc.constantFrom(80, 443, 22), (v4, embed, port) => {
        const plain = policy.decide(mustParse(v4), port);
        const embedded = policy.decide(mustParse(embed(v4)), port);
        assert.equal(plain.allow, false);
        assert.equal(embedded.allow, false, `${embed(v4)}: ${embedded.reason}`);
        assert.equal(embedded.rule, plain.rule, embed(v4));
        assert.equal(classifyAddress(parseIp(embed(v4))!).cls, classifyAddress(parseIp(v4)!).cls);
      }),
      BUDGET,
    );
  });
});

const LABEL = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/)
  // Not "ends in a number" (would be an IPv4), no "--" (xn-- would be punycode).
  .filter((l) => !/^([0-9]+|0x[0-9a-f]*)$/.test(l) && !l.includes('--'));
const NAME = fc.array(LABEL, { minLength: 1, maxLength: 4 }).map((labels) => labels.join('.'));

function randomCase(text: string, flips: readonly boolean[]): string {
  return [...text].map((ch, i) => (flips[i % flips.length] ? ch.toUpperCase() : ch)).join('');
}

void describe('matcher properties', () => {
  function policyFor(cfg: Partial<PolicyConfig>) {
    return compilePolicy(policyConfig(cfg));
  }

  void it('a wildcard never matches its apex, always matches a subdomain', () => {
    fc.assert(
      fc.property(NAME, LABEL, LABEL, (apexHead, tld, sub) => {
        const apex = `${apexHead}.${tld}`;
        const policy = policyFor({ allowedHosts: [`*.${apex}`] });
        assert.equal(policy.decide(mustParse(apex), 443).allow, false);
        assert.equal(policy.decide(mustParse(`${sub}.${apex}`), 443).allow, true);
      }),
      BUDGET,
    );
  });

  void it('look-alikes never match *.example.test', () => {
    const policy = policyFor({ allowedHosts: ['*.example.test'] });
    fc.assert(
      fc.property(LABEL, (label) => {
        for (const name of [
          `${label}-example.test`,
          `${label}example.test`,
          `example.test.${label}.test`,
          `${label}.example.test.${label}.test`,
          `example.test${label}.test`,
        ]) {
          const parsed = parseHost(name);
          if (parsed.ok) assert.equal(policy.decide(parsed.host, 443).allow, false, name);
        }
      }),
      BUDGET,
    );
  });

  void it('case and trailing-dot variants decide identically', () => {
    const policy = policyFor({ allowedHosts: ['*.example.test', 'api.test:8443'], deniedHosts: ['*.bad.example.test'] });
    const names = fc.oneof(NAME, NAME.map((n) => `${n}.example.test`), NAME.map((n) => `${n}.bad.example.test`), fc.constant('api.test'));
    fc.assert(
      fc.property(names, fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), fc.boolean(), fc.constantFrom(80, 443, 8443), (name, flips, dot, port) => {
        const variant = `${randomCase(name, flips)}${dot ? '.' : ''}`;
        assert.deepEqual(policy.decide(mustParse(variant), port), policy.decide(mustParse(name), port));
      }),
      BUDGET,
    );
  });

  void it('deny always wins when the same host is in both lists', () => {
    const entry = fc.oneof(
      NAME.map((n) => ({ entry: n, probe: n })),
      NAME.map((n) => ({ entry: `*.${n}.test`, probe: `x.${n}.test` })),
      fc.nat({ max: 0xffffffff }).map((v) => ({ entry: ipv4FromU32(v).text, probe: ipv4FromU32(v).text })),
    );
    fc.assert(
      fc.property(entry, fc.constantFrom<PolicyConfig['networkPolicy']>('deny-by-default', 'allow-all'), ({ entry: e, probe }, mode) => {
        const parsed = parseHost(probe);
        fc.pre(parsed.ok);
        if (!parsed.ok) return;
        const policy = policyFor({ networkPolicy: mode, allowedHosts: [e], deniedHosts: [e] });
        for (const port of [80, 443]) assert.equal(policy.decide(parsed.host, port).allow, false, `${e} ${port}`);
        assert.equal(policy.decideName(probe).allow, false, e);
      }),
      BUDGET,
    );
  });
});

// parseHost skips UTS-46 mapping and the inet_aton parser for the common spellings. Those shortcuts are only
// sound if they agree with the general path; these properties are that claim.
void describe('parseHost shortcuts agree with the general path', () => {
  const labelChars = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789_-'.split(''), 'xn--', 'A', '.', '0x', 'é');
  const nameLike = fc.array(labelChars, { minLength: 1, maxLength: 24 }).map((parts) => parts.join(''));

  void it('isPlainAsciiName(s) holds only where domainToASCII(s) is s', () => {
    let plain = 0;
    fc.assert(
      fc.property(nameLike, (s) => {
        if (!isPlainAsciiName(s)) return;
        plain += 1;
        assert.equal(domainToASCII(s), s, JSON.stringify(s));
      }),
      { numRuns: 5000 },
    );
    // The property must have been exercised, not skipped: a good share of the inputs are plain names.
    assert.ok(plain > 500, `only ${plain} plain names generated`);
  });

  void it('parseCanonicalIpv4 gives what the inet_aton parser gives, and only for text the mapping leaves alone', () => {
    const octet = fc.oneof(fc.integer({ min: 0, max: 255 }).map(String), fc.integer({ min: 0, max: 999 }).map(String), fc.constantFrom('00', '01', '007', '0x1', ''));
    fc.assert(
      fc.property(fc.array(octet, { minLength: 3, maxLength: 5 }), (parts) => {
        const text = parts.join('.');
        const canonical = parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]*)$/.test(p) && Number(p) <= 255);
        const quick = parseCanonicalIpv4(text);
        assert.equal(quick !== null, canonical, text);
        if (quick === null) return;
        assert.deepEqual(quick, parseIpv4(text));
        assert.equal(domainToASCII(text), text);
      }),
      BUDGET,
    );
  });
});
