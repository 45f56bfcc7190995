import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createAuditSink, LEVEL_VALUES, MemoryAuditSink } from '../../src/audit/sink.js';
import type { AuditEvent } from '../../src/audit/types.js';

const decision = (conn: string, allow: boolean): AuditEvent => ({
  event: 'decision',
  conn,
  channel: 'dns',
  client: '10.213.0.9',
  host: 'api.allowed.test',
  port: 53,
  decision: allow ? 'allow' : 'deny',
  rule: allow ? 'allowed_hosts[0]' : 'network_policy',
  reason: 'test',
});

describe('createAuditSink', () => {
  it("numbers levels as pino does (the sink does not load pino to ask)", () => {
    assert.deepEqual(LEVEL_VALUES, { ...pino.levels.values, silent: Infinity });
  });

  it('write and record append the lines in order, each a pino line, filtered by level', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-audit-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'trail', 'audit.log');
    const sink = createAuditSink({ destination: file, level: 'warn', enabled: true });
    sink.write(decision('a', false));
    void sink.record(decision('b', true));
    void sink.record(decision('c', false));
    await sink.record(decision('d', false));
    void sink.close();
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.map((l) => l.conn), ['a', 'c', 'd'], 'the allow line is below warn');
    for (const l of lines) {
      assert.equal(l.level, 40);
      assert.equal(l.msg, 'egress decision');
      assert.match(String(l.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
  });

  it('each line carries the time it was written, also across a change of second', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-audit-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'audit.log');
    const sink = createAuditSink({ destination: file, level: 'info', enabled: true });
    // The text up to the second is reused between lines: write until a second boundary has passed, so a prefix
    // that outlived its second shows as a time a second off.
    const bounds: { before: number; after: number }[] = [];
    const start = Math.floor(Date.now() / 1000);
    while (Math.floor(Date.now() / 1000) <= start + 1) {
      const before = Date.now();
      sink.write(decision(String(bounds.length), true));
      bounds.push({ before, after: Date.now() });
      if (bounds.length % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await sink.close();
    const times = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => String((JSON.parse(l) as { time: string }).time));
    assert.equal(times.length, bounds.length);
    times.forEach((time, i) => {
      assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      const at = Date.parse(time);
      assert.ok(at >= bounds[i].before && at <= bounds[i].after, `line ${i}: ${time} is outside its write`);
    });
  });

  it('record: the lines of one turn are in the file when the promise settles, in order, before later writes', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-audit-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'audit.log');
    const sink = createAuditSink({ destination: file, level: 'info', enabled: true });
    const conns = (): unknown[] => (existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { conn: string }).conn) : []);
    const first = sink.record(decision('a', true));
    const second = sink.record(decision('b', false));
    assert.equal(first, second, 'one batch per turn');
    assert.deepEqual(conns(), [], 'nothing written before the turn ends');
    await first;
    assert.deepEqual(conns(), ['a', 'b']);
    void sink.record(decision('c', true));
    sink.write(decision('d', false)); // an immediate line after a queued one: the queued one goes first
    assert.deepEqual(conns(), ['a', 'b', 'c', 'd']);
    void sink.record(decision('e', true));
    await sink.close(); // close writes what is still queued
    assert.deepEqual(conns(), ['a', 'b', 'c', 'd', 'e']);
  });

  it('recordThen: the callback runs after the batch is in the file, never at the call', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-audit-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'audit.log');
    const sink = createAuditSink({ destination: file, level: 'info', enabled: true });
    const seen: string[][] = [];
    const conns = (): string[] => readFileSync(file, 'utf8').trimEnd().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { conn: string }).conn);
    const both = new Promise<(Error | null)[]>((resolve) => {
      const errors: (Error | null)[] = [];
      const done = (err: Error | null): void => {
        errors.push(err);
        seen.push(conns());
        if (errors.length === 2) resolve(errors);
      };
      sink.recordThen(decision('a', true), done);
      // A line written at once in the same turn goes after the queued one, and does not run its callback early.
      sink.write(decision('b', false));
      sink.recordThen(decision('c', true), done);
    });
    assert.deepEqual(seen, [], 'no callback at the call');
    assert.deepEqual(await both, [null, null]);
    assert.deepEqual(seen, [['a', 'b', 'c'], ['a', 'b', 'c']]);
    await sink.close();
  });

  it('a trail that cannot be written: record rejects, recordThen gets the error, write does not throw, each is reported', async () => {
    const reported: string[] = [];
    // /dev/full takes the open and fails every write with ENOSPC, as a full disk does.
    const sink = createAuditSink({ destination: '/dev/full', level: 'info', enabled: true, onWriteError: (err) => reported.push((err as NodeJS.ErrnoException).code ?? '') });
    const viaCallback = new Promise<Error | null>((resolve) => sink.recordThen(decision('a', true), resolve));
    await assert.rejects(sink.record(decision('b', true)), { code: 'ENOSPC' });
    const callbackError: NodeJS.ErrnoException | null = await viaCallback;
    assert.equal(callbackError?.code, 'ENOSPC');
    sink.write(decision('c', false));
    assert.deepEqual(reported, ['ENOSPC', 'ENOSPC'], 'one report per failed write(2): the batch, then the line');
    await sink.close();
  });

  it('decision and close lines hold exactly their event, whatever its strings contain', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-audit-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'audit.log');
    const sink = createAuditSink({ destination: file, level: 'info', enabled: true });
    const texts = ['plain', 'quote " and backslash \\', 'newline\nand tab\t', 'control \u0001 \u007f \u2028', 'unicode é 漢字 🦀', 'lone surrogate \ud800', ''];
    const events: AuditEvent[] = texts.flatMap((text): AuditEvent[] => [
      { event: 'decision', conn: text, channel: 'dns', client: text, sandbox: text, tool: text, host: text, port: 53, dialed: [text, '198.18.0.1'], decision: 'deny', rule: 'network_policy', reason: text, qtype: text },
      { event: 'decision', conn: 'c-1', channel: 'connect', client: '10.213.0.9', host: text, port: 443, dialed: text, decision: 'allow', rule: 'allowed_hosts[0]', reason: text },
      { event: 'decision', conn: 'c-2', channel: 'http', client: '10.213.0.9', host: '', port: 0, decision: 'error', rule: 'upstream', reason: text },
      { event: 'close', conn: text, channel: 'connect', client: text, tool: text, host: text, port: 443, dialed: text, bytes_up: 1, bytes_down: 2 ** 40, duration_ms: 0.001, error: text },
      { event: 'close', conn: 'c-3', channel: 'socks5', client: '::1', sandbox: text, host: 'h.test', port: 1, bytes_up: 0, bytes_down: 0, duration_ms: 12.5 },
    ]);
    for (const event of events) sink.write(event);
    await sink.close();
    const lines = readFileSync(file, 'utf8').split('\n');
    assert.equal(lines.pop(), '', 'every line ends with a newline');
    assert.equal(lines.length, events.length, 'no string broke a line');
    lines.forEach((line, i) => {
      const { level, time, v, msg, ...fields } = JSON.parse(line) as Record<string, unknown>;
      assert.equal(level, events[i].event === 'decision' && events[i].decision !== 'allow' ? (events[i].decision === 'deny' ? 40 : 50) : 30);
      assert.equal(typeof time, 'string');
      assert.equal(v, 1);
      assert.equal(msg, events[i].event === 'decision' ? 'egress decision' : 'egress close');
      assert.deepEqual(fields, events[i], `line ${i}`);
    });
  });

  it("recordSerialized: the caller's JSON goes in the line as given, at the event's level, in turn with record", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-audit-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'audit.log');
    const sink = createAuditSink({ destination: file, level: 'info', enabled: true });
    const denied = decision('b', false);
    void sink.record(decision('a', true));
    // A marker the event does not have shows that the sink wrote the JSON it was given instead of making its own.
    void sink.recordSerialized({ event: denied, json: JSON.stringify({ ...denied, marker: 1 }) });
    await sink.record(decision('c', true));
    await sink.close();
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.map((l) => [l.conn, l.level, l.marker]), [['a', 30, undefined], ['b', 40, 1], ['c', 30, undefined]]);
  });

  it('MemoryAuditSink refuses a serialized event whose JSON is not its event', async () => {
    const sink = new MemoryAuditSink();
    const event = decision('a', true);
    await sink.recordSerialized({ event, json: JSON.stringify(event) });
    assert.throws(() => sink.recordSerialized({ event, json: JSON.stringify({ ...event, conn: 'b' }) }), /differs from its event/);
    assert.equal(sink.events.length, 1);
  });

  it('disabled: writes nothing and creates no file', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-audit-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'audit.log');
    const sink = createAuditSink({ destination: file, level: 'info', enabled: false });
    sink.write(decision('a', true));
    void sink.record(decision('c', true));
    assert.equal(existsSync(file), false);
  });
});
