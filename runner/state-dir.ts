/**
 * Where clawbox keeps its host state (root's tmpfs, mode 0700): pool locks, refill markers, gateway records, the
 * resident runner's socket. A module of its own so that the CLI's launcher can find the runner without loading
 * the runner's code.
 */
import { join } from 'node:path';

export const DEFAULT_STATE_DIR = '/run/clawbox';

/** Where the pool keeps its lock files, refill helpers their markers and a resident runner its socket. */
export const poolDir = (stateDir: string): string => join(stateDir, 'pool');

/**
 * A resident runner's files in the pool directory (src/cli/runner-protocol.ts): `runner-<id>.pid` names the runner
 * that serves, `runner-<id>-<pid>.sock` is each runner's socket. `clawbox gc --all` stops runners by them.
 */
export const RUNNER_PID_FILE = /^runner-[0-9a-f]{16}\.pid$/;
export const RUNNER_SOCKET_FILE = /^runner-[0-9a-f]{16}-(\d+)\.sock$/;
