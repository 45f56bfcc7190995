import type { Policy } from '../src/policy/types.js';

/**
 * Finished DNS outcomes (the decision, the filtered answers, the audit fields) per policy, so a repeated question
 * costs a map lookup instead of a decode, a decision, a resolver call and an answer filter.
 *
 * - Keyed by the policy object: a reload, a sandbox's registration or a change of the host's addresses compiles
 *   new policies, so no outcome outlives the policy that decided it.
 * - An outcome is kept no longer than its answers' TTL, and the TTL handed out counts down, so no client caches an
 *   address past the upstream's TTL. TTL 0 (or an outcome that is not final, like an upstream failure) is not
 *   kept at all.
 */
export class DnsAnswerCache<T> {
  private readonly byPolicy = new WeakMap<Policy, Map<string, { readonly value: T; readonly expiresAt: number }>>();

  constructor(
    private readonly maxEntriesPerPolicy = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The value and the seconds it has left (at least 1), or null. */
  get(policy: Policy, key: string): { readonly value: T; readonly ttl: number } | null {
    const entries = this.byPolicy.get(policy);
    const entry = entries?.get(key);
    if (!entry) return null;
    const left = entry.expiresAt - this.now();
    if (left <= 0) {
      entries!.delete(key);
      return null;
    }
    return { value: entry.value, ttl: Math.ceil(left / 1000) };
  }

  set(policy: Policy, key: string, value: T, ttlSeconds: number): void {
    if (!(ttlSeconds > 0)) return;
    let entries = this.byPolicy.get(policy);
    if (!entries) {
      entries = new Map();
      this.byPolicy.set(policy, entries);
    }
    entries.delete(key);
    if (entries.size >= this.maxEntriesPerPolicy) {
      // Map iteration is insertion order: the oldest entry goes.
      const oldest = entries.keys().next();
      if (oldest.done !== true) entries.delete(oldest.value);
    }
    entries.set(key, { value, expiresAt: this.now() + ttlSeconds * 1000 });
  }
}
