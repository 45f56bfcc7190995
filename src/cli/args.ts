import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

type Parsed<T extends Options> = ReturnType<typeof parseArgs<{ options: T; strict: true; allowPositionals: boolean }>>;
import { ClawboxError } from '../errors.js';


/** `util.parseArgs` in strict mode, with its errors turned into usage errors that name the command. */
export function parseCommandArgs<T extends Options>(
  command: string,
  args: readonly string[],
  options: T,
  allowPositionals = false,
): Parsed<T> {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new ClawboxError('CLI_USAGE', `clawbox ${command}: ${message}`, { details: [`see 'clawbox ${command} --help'`] });
  }
}
