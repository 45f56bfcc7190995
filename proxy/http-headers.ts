import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

// RFC 9110 §7.6.1 hop-by-hop fields, plus the de-facto Proxy-Connection and Keep-Alive.
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

/**
 * Copies end-to-end headers from raw [name, value, ...] pairs. Drops hop-by-hop fields, every field the
 * Connection header names, and every Proxy-* field (credentials meant for us must not travel on).
 */
export function endToEndHeaders(raw: readonly string[], connectionHeader: string | string[] | undefined): OutgoingHttpHeaders {
  const named = new Set(
    [connectionHeader ?? []]
      .flat()
      .flatMap((v) => v.split(','))
      .map((v) => v.trim().toLowerCase())
      .filter((v) => v.length > 0),
  );
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower) || lower.startsWith('proxy-')) continue;
    const existing = out[lower];
    const value = raw[i + 1];
    out[lower] = existing === undefined ? value : [existing, value].flat();
  }
  return out;
}

/** How many times a header appears in raw headers (duplicated Host is a smuggling signal). */
export function countHeader(raw: readonly string[], lowerName: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === lowerName) n++;
  return n;
}

export type { IncomingHttpHeaders };
