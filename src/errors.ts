/**
 * clawbox's error taxonomy: every error a user can meet has a stable code, so programs calling clawbox (and
 * tests) match on the code and humans read the message.
 */
export type ErrorCode =
  | 'CONFIG_NOT_FOUND'
  | 'CONFIG_SYNTAX'
  | 'CONFIG_INVALID'
  | 'CLI_USAGE'
  | 'LISTEN_FAILED'
  | 'DOCKER_UNAVAILABLE'
  | 'IMAGE_MISSING'
  | 'MOUNT_BLOCKED'
  | 'LIMIT_UNENFORCEABLE'
  | 'SANDBOX_FAILED'
  /** The run was stopped (Ctrl-C, SIGTERM, the caller's AbortSignal) before its tool started. */
  | 'ABORTED';

/** The exit code of a run stopped by Ctrl-C or SIGTERM, before or while its tool runs (128 + SIGINT, as shells use). */
export const EXIT_ABORTED = 130;

export class ClawboxError extends Error {
  readonly code: ErrorCode;
  /** One line per problem, for errors that collect several (config validation). */
  readonly details: readonly string[];

  constructor(code: ErrorCode, message: string, options?: { details?: readonly string[]; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ClawboxError';
    this.code = code;
    this.details = options?.details ?? [];
  }
}
