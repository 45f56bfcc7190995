/**
 * Parsers for the human units of the config file. Each returns the parsed value or an error sentence that says
 * what was expected, with an example; the schema adds the key path and line.
 */

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

const show = (raw: unknown): string => (typeof raw === 'string' ? `'${raw}'` : JSON.stringify(raw) ?? String(raw));

// Binary multiples, as Docker reads them: '2g' and '2gb' both mean 2 GiB.
const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4,
};

/** '2gb', '2.5gb', '100m', '10mb', '512k' or a plain number of bytes. */
export function parseSize(raw: unknown): Parsed<number> {
  const expected = `expected a size like '2gb', '100m' or '512k', got ${show(raw)}`;
  if (typeof raw === 'number') {
    return Number.isSafeInteger(raw) && raw > 0 ? ok(raw) : fail(expected);
  }
  if (typeof raw !== 'string') return fail(expected);
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(raw);
  if (!match) return fail(expected);
  const unit = SIZE_UNITS[match[2].toLowerCase()];
  if (unit === undefined) return fail(expected);
  const bytes = Math.floor(Number(match[1]) * unit);
  return bytes > 0 && Number.isSafeInteger(bytes) ? ok(bytes) : fail(expected);
}

/** '1', '0.5', 2 → nano-CPUs (Docker's NanoCpus). */
export function parseCpus(raw: unknown): Parsed<number> {
  const expected = `expected a number of CPUs like '1' or '0.5', got ${show(raw)}`;
  const text = typeof raw === 'number' ? String(raw) : raw;
  if (typeof text !== 'string' || !/^\s*\d+(\.\d{1,9})?\s*$/.test(text)) return fail(expected);
  const nano = Math.round(Number(text) * 1e9);
  return nano > 0 ? ok(nano) : fail(`expected more than 0 CPUs, got ${show(raw)}`);
}

/** An integer within bounds, written as a number or a numeric string ('1024'). */
export function parseIntIn(min: number, max: number, example: string): (raw: unknown) => Parsed<number> {
  return (raw) => {
    const text = typeof raw === 'number' ? String(raw) : raw;
    if (typeof text !== 'string' || !/^\s*\d+\s*$/.test(text)) {
      return fail(`expected a whole number like '${example}', got ${show(raw)}`);
    }
    const value = Number(text);
    return value >= min && value <= max ? ok(value) : fail(`expected a whole number from ${min} to ${max}, got ${show(raw)}`);
  };
}

/** '0,1', '0-3', '0-1,4' → the canonical cpuset string Docker takes, with every CPU number checked. */
export function parseCpuset(raw: unknown): Parsed<string> {
  const expected = `expected CPU numbers like '0,1' or '0-3', got ${show(raw)}`;
  const text = typeof raw === 'number' ? String(raw) : raw;
  if (typeof text !== 'string') return fail(expected);
  const parts = text.split(',').map((p) => p.trim());
  for (const part of parts) {
    const range = /^(\d{1,4})(?:-(\d{1,4}))?$/.exec(part);
    if (!range) return fail(expected);
    if (range[2] !== undefined && Number(range[2]) < Number(range[1])) {
      return fail(`expected a rising CPU range like '0-3', got '${part}'`);
    }
  }
  return ok(parts.join(','));
}

const DURATION_UNITS: Readonly<Record<string, number>> = { '': 1, s: 1, m: 60, h: 3600, ms: 0.001 };

/** 300, '300', '300s', '5m', '1h', '500ms' → milliseconds, or null. A plain number means seconds, as in the seed file. */
function durationMs(raw: unknown): number | null {
  const text = typeof raw === 'number' ? String(raw) : raw;
  if (typeof text !== 'string') return null;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*$/i.exec(text);
  return match ? Math.round(Number(match[1]) * DURATION_UNITS[match[2].toLowerCase()] * 1000) : null;
}

/** A duration above zero, in milliseconds. */
export function parseDuration(raw: unknown): Parsed<number> {
  const ms = durationMs(raw);
  if (ms === null) return fail(`expected seconds like 300 or a duration like '5m' or '30s', got ${show(raw)}`);
  return ms > 0 ? ok(ms) : fail(`expected a duration above zero, got ${show(raw)}`);
}

/** A duration in milliseconds, where 0 (in any unit) or 'off' means none: 0. */
export function parseDurationOrOff(raw: unknown): Parsed<number> {
  if (typeof raw === 'string' && /^\s*off\s*$/i.test(raw)) return ok(0);
  const ms = durationMs(raw);
  return ms !== null ? ok(ms) : fail(`expected seconds like 300, a duration like '5m' or '30s', or 0 or 'off' for none, got ${show(raw)}`);
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** 'HOST:PORT', '[v6]:PORT' or ':PORT' (all interfaces). Port 0 asks the kernel for a free one. */
export function parseListenAddress(raw: unknown, defaultPort?: number): Parsed<ListenAddress> {
  const expected = `expected HOST:PORT like '127.0.0.1:3128' or '[::1]:3128', got ${show(raw)}`;
  if (typeof raw !== 'string') return fail(expected);
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]*))(?::(\d{1,5}))?$/.exec(raw.trim());
  if (!match) return fail(expected);
  const host = match[1] ?? (match[2] === '' ? '0.0.0.0' : match[2]);
  const port = match[3] === undefined ? defaultPort : Number(match[3]);
  if (port === undefined || port > 65535) return fail(expected);
  return ok({ host, port });
}
