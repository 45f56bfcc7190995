import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import dnsPacket, { type Packet, type RecordType, type StringAnswer } from 'dns-packet';
import { encodeResponse, parseSimpleQuery, questionName } from '../../proxy/dns-wire.js';
import { parseIp } from '../../src/net/ip.js';

const BUDGET = { interruptAfterTimeLimit: 5000, numRuns: 1000 } as const;
const TYPES: readonly RecordType[] = ['A', 'AAAA', 'MX', 'TXT', 'NS', 'SRV'];
const TYPE_NUMBER: Record<string, number> = { A: 1, AAAA: 28, MX: 15, TXT: 16, NS: 2, SRV: 33 };

const label = fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/);
const simpleName = fc.array(label, { minLength: 1, maxLength: 5 }).map((labels) => labels.join('.'));

function query(name: string, type: RecordType, extra: Partial<Packet> = {}): Buffer {
  return dnsPacket.encode({ type: 'query', id: 4660, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }], ...extra });
}

function withLastByte(bytes: Buffer, value: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[copy.length - 1] = value;
  return copy;
}

const edns = (udpPayloadSize: number): Partial<Packet> => ({ additionals: [{ type: 'OPT', name: '.', udpPayloadSize, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] });

describe('parseSimpleQuery', () => {
  it('reads what dns-packet writes: id, flags, lower-cased name, type, the question bytes, EDNS size', () => {
    fc.assert(
      fc.property(
        simpleName,
        fc.constantFrom(...TYPES),
        fc.integer({ min: 0, max: 0xffff }),
        fc.boolean(),
        fc.boolean(),
        fc.option(fc.integer({ min: 1, max: 0xffff })), // dns-packet writes 0 as 4096
        (name, type, id, rd, cd, payload) => {
          const flags = (rd ? dnsPacket.RECURSION_DESIRED : 0) | (cd ? dnsPacket.CHECKING_DISABLED : 0);
          const bytes = query(name, type, { id, flags, ...(payload === null ? {} : edns(payload)) });
          const q = parseSimpleQuery(bytes);
          assert.ok(q, `${name} ${type} not read`);
          assert.equal(q.id, id);
          assert.equal(q.echoedFlags, flags);
          assert.equal(questionName(q), name.toLowerCase());
          assert.equal(q.qtype, TYPE_NUMBER[type]);
          // The key is the question in lower case: the same for every spelling, different for another type.
          assert.equal(q.key, parseSimpleQuery(query(name.toLowerCase(), type))?.key);
          assert.equal(q.key, parseSimpleQuery(query(name.toUpperCase(), type))?.key);
          assert.notEqual(q.key, parseSimpleQuery(query(name, type === 'A' ? 'AAAA' : 'A'))?.key);
          assert.equal(q.edns, payload !== null);
          assert.equal(q.udpLimit, payload === null ? 512 : Math.min(Math.max(payload, 512), 1232));
          // The question section as sent, case included, so the answer echoes it byte for byte.
          const decoded = dnsPacket.decode(Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), q.question]));
          assert.equal(decoded.questions?.[0]?.name, name);
        },
      ),
      BUDGET,
    );
  });

  it('lower-cases only the labels in the key: a type whose bytes read as capital letters stays that type', () => {
    // Type 0x4142 is two bytes that are 'A' and 'B' in ASCII; folding them would turn it into type 0x6162.
    const bytes = Buffer.concat([query('Mixed.Example', 'A').subarray(0, -4), Buffer.from([0x41, 0x42, 0, 1])]);
    const q = parseSimpleQuery(bytes);
    assert.ok(q);
    assert.equal(q.qtype, 0x4142);
    assert.equal(questionName(q), 'mixed.example');
    assert.equal(q.key.slice(-4), '\x41\x42\x00\x01');
  });

  it('leaves every other shape to the general path', () => {
    const ok = query('api.allowed.example', 'A');
    const cases: Record<string, Buffer> = {
      response: dnsPacket.encode({ type: 'response', id: 1, questions: [{ name: 'a.example', type: 'A', class: 'IN' }] }),
      'opcode NOTIFY': Buffer.from(ok).fill(0x20, 2, 3),
      'two questions': dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'a.example', type: 'A' }, { name: 'b.example', type: 'A' }] }),
      'class CH': withLastByte(query('a.example', 'A'), 3),
      'trailing byte': Buffer.concat([ok, Buffer.from([0])]),
      'the root name': dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: '.', type: 'NS' }] }),
      'a space in a label': query('a b.example', 'A'),
      'a byte above 0x7f': query('caf\u00e9.example', 'A'),
      'an answer record': dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'a.example', type: 'A' }], answers: [{ name: 'a.example', type: 'A', data: '192.0.2.1' }] }),
      'EDNS version 1': query('a.example', 'A', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 1, flags: 0, flag_do: false, options: [] }] }),
      'a compression pointer': Buffer.concat([ok.subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])]),
    };
    for (const [what, bytes] of Object.entries(cases)) assert.equal(parseSimpleQuery(bytes), null, what);
    for (let cut = 0; cut < ok.length; cut += 1) assert.equal(parseSimpleQuery(ok.subarray(0, cut)), null, `cut at ${cut}`);
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        parseSimpleQuery(Buffer.from(bytes));
      }),
      BUDGET,
    );
  });
});

describe('encodeResponse', () => {
  const q = parseSimpleQuery(query('Api.Allowed.Example', 'A', edns(4096)))!;
  const ips = ['192.0.2.1', '192.0.2.2'].map((text) => parseIp(text)!);

  it('writes a response dns-packet reads back: the echoed question, compressed answers with the TTL, an OPT', () => {
    const r = dnsPacket.decode(encodeResponse({ ...q, rcode: 'NOERROR', addresses: ips, ttl: 42, truncated: false }));
    assert.equal(r.id, 4660);
    assert.equal(r.type, 'response');
    assert.equal(r.flag_rd, true);
    assert.equal(r.flag_ra, true);
    assert.equal(r.flag_tc, false);
    assert.deepEqual(r.questions, [{ name: 'Api.Allowed.Example', type: 'A', class: 'IN' }]);
    assert.deepEqual(
      (r.answers ?? []).map((a) => [a.name, a.type, (a as StringAnswer).ttl, (a as StringAnswer).data]),
      ips.map((ip) => ['Api.Allowed.Example', 'A', 42, ip.text]),
    );
    assert.equal(r.additionals?.[0]?.type, 'OPT');
  });

  it('writes a TTL above 16 bits whole', () => {
    const r = dnsPacket.decode(encodeResponse({ ...q, rcode: 'NOERROR', addresses: ips, ttl: 0x12345, truncated: false }));
    assert.deepEqual((r.answers ?? []).map((a) => (a as StringAnswer).ttl), [0x12345, 0x12345]);
  });

  it('truncated: the TC bit and no records; no question: no records either', () => {
    const tc = dnsPacket.decode(encodeResponse({ ...q, rcode: 'NOERROR', addresses: ips, ttl: 42, truncated: true }));
    assert.equal(tc.flag_tc, true);
    assert.equal(tc.answers?.length, 0);
    const bare = dnsPacket.decode(encodeResponse({ ...q, question: Buffer.alloc(0), rcode: 'FORMERR', addresses: ips, ttl: 42 }));
    assert.equal((bare as { rcode?: string }).rcode, 'FORMERR');
    assert.equal(bare.questions?.length, 0);
    assert.equal(bare.answers?.length, 0);
  });
});
