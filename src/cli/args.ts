import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ClawboxError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** `util.parseArgs` in strict mode, with its errors turned into usage errors that name the command. */
export function parseCommandArgs<T extends Options>(command: string, args: readonly string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new ClawboxError('CLI_USAGE', `clawbox ${command}: ${message}`, { details: [`see 'clawbox ${command} --help'`] });
  }
}
