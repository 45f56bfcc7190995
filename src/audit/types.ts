import type { Channel, RuleId } from '../policy/types.js';

/** Bumped when a field changes meaning or is removed; adding a field does not bump it. */
export const AUDIT_SCHEMA_VERSION = 1;

/** The fields that tie every line of one connection together. */
export interface ConnectionFields {
  readonly conn: string;
  readonly channel: Channel;
  readonly client: string;
  /** Sandbox (container id) and tool, when the client is a known sandbox. */
  readonly sandbox?: string;
  readonly tool?: string;
  /** The host as requested, after normalisation. */
  readonly host: string;
  readonly port: number;
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

export type AuditEvent = DecisionEvent | CloseEvent;

export interface AuditSink {
  write(event: AuditEvent): void;
  /** Flushes and closes the underlying file. Idempotent. */
  close(): Promise<void>;
}
