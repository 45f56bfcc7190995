import type { z } from 'zod';

/** The keys a strict object in the schema accepts at `path` (wrappers such as default and optional unwrapped). */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let node: unknown = schema;
  for (const key of [...path, null]) {
    node = unwrap(node);
    const def = (node as { def?: Record<string, unknown> }).def;
    if (!def) return [];
    if (key === null) {
      return def.type === 'object' ? Object.keys(def.shape as Record<string, unknown>) : [];
    }
    switch (def.type) {
      case 'object':
        node = (def.shape as Record<string, unknown>)[String(key)];
        break;
      case 'array':
        node = def.element;
        break;
      case 'record':
        node = def.valueType;
        break;
      default:
        return [];
    }
  }
  return [];
}

function unwrap(node: unknown): unknown {
  let current = node;
  for (let i = 0; i < 8; i++) {
    const def = (current as { def?: Record<string, unknown> }).def;
    if (def?.type === 'default' || def?.type === 'prefault' || def?.type === 'optional') current = def.innerType;
    else if (def?.type === 'pipe') current = def.in;
    else break;
  }
  return current;
}

/** The closest known key by edit distance, if it is close enough to be a likely typo. */
export function suggest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}
