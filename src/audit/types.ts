import type { Channel, RuleId } from '../policy/types.js';

/** Bumped when a field changes meaning or is removed; adding a field does not bump it. */
export const AUDIT_SCHEMA_VERSION = 1;

/** What a channel knows of a connection: the gateway's registry adds the sandbox and the tool (ConnectionFields). */
export interface ConnectionKey {
  readonly conn: string;
  readonly channel: Channel;
  readonly client: string;
  /** The host as requested, after normalisation. */
  readonly host: string;
  readonly port: number;
}

/** The fields that tie every line of one connection together. */
export interface ConnectionFields extends ConnectionKey {
  /** Sandbox (container id) and tool, when the client is a known sandbox. */
  readonly sandbox?: string;
  readonly tool?: string;
}

/** One line per decision (smokescreen's CANONICAL-PROXY-DECISION). */
export interface DecisionEvent extends ConnectionFields {
  readonly event: 'decision';
  /** The address actually dialed (or, for DNS, the answers returned). */
  readonly dialed?: string | readonly string[];
  readonly decision: 'allow' | 'deny' | 'error';
  readonly rule: RuleId | 'upstream' | 'protocol';
  readonly reason: string;
  /** DNS only: the question type. */
  readonly qtype?: string;
}

/** One line when a tunnel or forwarded request ends (smokescreen's CANONICAL-PROXY-CN-CLOSE). */
export interface CloseEvent extends ConnectionFields {
  readonly event: 'close';
  readonly dialed?: string;
  readonly bytes_up: number;
  readonly bytes_down: number;
  readonly duration_ms: number;
  readonly error?: string;
}

/** One line per sandbox run, written by the runner when the sandbox is gone. */
export interface RunEvent {
  readonly event: 'run';
  readonly sandbox: string;
  readonly tool?: string;
  readonly command: readonly string[];
  readonly image: string;
  /** sha256 of the config text the run used (first 16 hex digits). */
  readonly config_digest: string;
  readonly exit_code: number;
  readonly duration_ms: number;
  /** Highest memory use seen (cgroup max_usage), null when the run ended before a sample. */
  readonly peak_memory_bytes: number | null;
  readonly cpu_time_ms: number | null;
  readonly bytes_up: number;
  readonly bytes_down: number;
  readonly connections_allowed: number;
  readonly connections_denied: number;
  readonly oom_killed: boolean;
  readonly timed_out: boolean;
  readonly output_truncated: boolean;
  readonly warnings: readonly string[];
  /** Why the run ended abnormally, with the config key to change (seed's Troubleshooting). */
  readonly explanation?: string;
}

export type AuditEvent = DecisionEvent | CloseEvent;

/**
 * An event with its JSON already made, exactly `JSON.stringify(event)`: for a hot path that builds most of the text
 * once and reuses it (the DNS answer cache), where serialising every line anew was a tenth of the work per query.
 */
export interface SerializedEvent {
  readonly event: AuditEvent;
  readonly json: string;
}

export interface AuditSink {
  write(event: AuditEvent): void;
  /**
   * Queues the event with the others of this event-loop turn; they are written together when the turn ends. The
   * promise settles after that write (rejects if it failed): await it before acting on a decision.
   */
  record(event: AuditEvent): Promise<void>;
  /**
   * `record` with a callback instead of a promise, for the per-connection path: `done` runs after the batch's
   * write, never synchronously, with the write's error or null.
   */
  recordThen(event: AuditEvent, done: (err: Error | null) => void): void;
  /** `record` for an event whose JSON the caller made. */
  recordSerialized(serialized: SerializedEvent): Promise<void>;
  /** Flushes and closes the underlying file. Idempotent. */
  close(): Promise<void>;
}
