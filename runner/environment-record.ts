/**
 * The last full check of the environment (networks, firewall rules, gateway), kept in the state directory so that
 * the next `clawbox run`, another process, may skip it for as long as a long-lived caller reuses its own check
 * (environment.ts, RECHECK_MS). Root's tmpfs (/run/clawbox, mode 0700); a record that does not parse is no record.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeWhole } from '../src/write-whole.js';

export interface EnvironmentRecord {
  /** Which settings were checked: the state directory, subnet, audit trail and gateway settings. */
  readonly key: string;
  /** The gateway container's digest label when it was checked; a gateway without it is another one. */
  readonly digest: string;
  readonly checkedAt: number;
  readonly network: { readonly name: string; readonly subnet: string; readonly gatewayIp: string };
  readonly resolvConf: string;
  readonly proxyEnv: Readonly<Record<string, string>>;
  readonly auditTrail: string;
}

/** One record per key: runs with different gateway settings each keep their own. */
export const recordPath = (stateDir: string, key: string): string =>
  join(stateDir, 'gateway', `checked-${createHash('sha256').update(key).digest('hex').slice(0, 16)}.json`);

/** The record, if there is one for `key` checked within `maxAgeMs` of `now`. */
export function readEnvironmentRecord(stateDir: string, key: string, now: number, maxAgeMs: number): EnvironmentRecord | null {
  let record: EnvironmentRecord | null;
  try {
    record = parseEnvironmentRecord(readFileSync(recordPath(stateDir, key), 'utf8'));
  } catch {
    return null; // none yet
  }
  if (record === null || record.key !== key) return null;
  const age = now - record.checkedAt;
  return age >= 0 && age < maxAgeMs ? record : null;
}

/** Never throws: without a record, the next process checks everything again. */
export function writeEnvironmentRecord(stateDir: string, record: EnvironmentRecord): void {
  writeWhole(recordPath(stateDir, record.key), JSON.stringify(record));
}

const isString = (v: unknown): v is string => typeof v === 'string';

/** Strict: every field with its type, or null. */
export function parseEnvironmentRecord(text: string): EnvironmentRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const r = value as Record<string, unknown>;
  const network = r.network as Record<string, unknown> | null | undefined;
  const proxyEnv = r.proxyEnv as Record<string, unknown> | null | undefined;
  const ok =
    isString(r.key) &&
    isString(r.digest) &&
    typeof r.checkedAt === 'number' &&
    Number.isFinite(r.checkedAt) &&
    typeof network === 'object' &&
    network !== null &&
    isString(network.name) &&
    isString(network.subnet) &&
    isString(network.gatewayIp) &&
    isString(r.resolvConf) &&
    isString(r.auditTrail) &&
    typeof proxyEnv === 'object' &&
    proxyEnv !== null &&
    Object.values(proxyEnv).every(isString);
  return ok ? (value as EnvironmentRecord) : null;
}
