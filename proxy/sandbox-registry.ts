import type { AuditEvent, AuditSink, SerializedEvent } from '../src/audit/types.js';
import { copyWith } from '../src/copy-with.js';

/** What the runner tells the gateway about a sandbox before it starts. */
export interface SandboxRegistration {
  /** The sandbox's address on the internal network: how the gateway recognises its connections. */
  readonly client: string;
  /** Container id. */
  readonly sandbox: string;
  readonly tool?: string;
  /** Added to the config's lists for this sandbox only. */
  readonly allowed_hosts: readonly string[];
  readonly denied_hosts: readonly string[];
  /** The sandbox's own network_policy and default ports; the gateway's config's when absent. */
  readonly network_policy?: 'deny-by-default' | 'allow-all';
  readonly default_ports?: readonly number[];
}

/** Per-sandbox totals, from the same events that go to the audit trail. */
export interface SandboxTraffic {
  allowed: number;
  denied: number;
  bytes_up: number;
  bytes_down: number;
  /** Hosts refused only because no allowed_hosts entry names them (what the user may want to allow); at most 20. */
  not_allowed: string[];
}

const MAX_NOT_ALLOWED = 20;
const empty = (): SandboxTraffic => ({ allowed: 0, denied: 0, bytes_up: 0, bytes_down: 0, not_allowed: [] });

interface Entry {
  /** What each of the sandbox's events gets, made once: its names, and the same as JSON members. */
  readonly names: { readonly sandbox: string; readonly tool?: string };
  readonly namesJson: string;
  readonly traffic: SandboxTraffic;
}

/**
 * Which sandbox each client address is, and what it has sent. It sits in front of the audit sink, so every
 * line (HTTP, SOCKS5, DNS) names the sandbox and tool without each channel knowing about sandboxes.
 */
export class SandboxRegistry {
  private readonly entries = new Map<string, Entry>();

  add(registration: SandboxRegistration): void {
    const names = registration.tool === undefined ? { sandbox: registration.sandbox } : { sandbox: registration.sandbox, tool: registration.tool };
    this.entries.set(registration.client, { names, namesJson: JSON.stringify(names).slice(1, -1), traffic: empty() });
  }

  /** Forgets the sandbox and returns its totals (zeros if it was unknown). */
  remove(client: string): SandboxTraffic {
    const entry = this.entries.get(client);
    this.entries.delete(client);
    return entry?.traffic ?? empty();
  }

  /** Wraps `sink` so events get the sandbox and tool of their client, and are counted. */
  auditThrough(sink: AuditSink): AuditSink {
    return {
      write: (event: AuditEvent) => sink.write(this.account(event)),
      record: (event: AuditEvent) => sink.record(this.account(event)),
      recordThen: (event: AuditEvent, done: (err: Error | null) => void) => sink.recordThen(this.account(event), done),
      recordSerialized: (serialized: SerializedEvent) => sink.recordSerialized(this.accountSerialized(serialized)),
      close: () => sink.close(),
    };
  }

  /** `account` for an event with its JSON: the names go at the JSON's end, where they go in the event. */
  private accountSerialized(serialized: SerializedEvent): SerializedEvent {
    const entry = this.count(serialized.event);
    if (entry === null) return serialized;
    return { event: copyWith(serialized.event, entry.names), json: `${serialized.json.slice(0, -1)},${entry.namesJson}}` };
  }

  /** Counts the event against its sandbox and names the sandbox and tool in it. */
  private account(event: AuditEvent): AuditEvent {
    const entry = this.count(event);
    return entry === null ? event : copyWith(event, entry.names);
  }

  /** Counts the event against its client's sandbox: that sandbox's entry, or null where the client is none. */
  private count(event: AuditEvent): Entry | null {
    const entry = this.entries.get(event.client);
    if (!entry) return null;
    if (event.event === 'close') {
      entry.traffic.bytes_up += event.bytes_up;
      entry.traffic.bytes_down += event.bytes_down;
    } else if (event.decision === 'allow') {
      entry.traffic.allowed += 1;
    } else {
      entry.traffic.denied += 1;
      const fixable = event.rule === 'network_policy' || event.rule === 'port';
      const list = entry.traffic.not_allowed;
      if (fixable && list.length < MAX_NOT_ALLOWED && !list.includes(event.host)) list.push(event.host);
    }
    return entry;
  }
}
