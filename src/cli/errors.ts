import { ClawboxError, EXIT_ABORTED } from '../errors.js';

/**
 * Exit codes: 2 for anything the user must fix in the command or config, 130 for a run stopped before its tool
 * started (as for one stopped while it ran), 1 for failures at run time.
 */
export function reportError(err: unknown, write: (text: string) => void = (text) => process.stderr.write(text)): number {
  if (err instanceof ClawboxError) {
    write(`clawbox: ${err.message}\n${err.details.map((d) => `  - ${d}\n`).join('')}`);
    if (err.code === 'ABORTED') return EXIT_ABORTED;
    return err.code === 'CLI_USAGE' || err.code.startsWith('CONFIG_') ? 2 : 1;
  }
  write(`clawbox: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}
