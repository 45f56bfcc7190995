/**
 * Which config file applies and its text, apart from parsing it (load.ts): the CLI's cache of parsed configs
 * (src/cli/config-cache.ts) reads the text without loading the YAML parser or the schema.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ClawboxError } from '../errors.js';

export const DEFAULT_CONFIG_PATH = join(homedir(), '.openclaw', 'config.yml');

export interface ConfigText {
  /** The file read, or null when none existed and the secure defaults apply. */
  readonly path: string | null;
  /** '' for the defaults; hashed by the runner into a config digest. */
  readonly text: string;
}

/**
 * Where the config comes from: `--config FILE`, else `CLAWBOX_CONFIG`, else `~/.openclaw/config.yml`.
 * An explicitly named file must exist; the default path may be absent (then the secure defaults apply).
 */
export function readConfigText(explicitPath?: string, env: NodeJS.ProcessEnv = process.env): ConfigText {
  const named = explicitPath ?? (env.CLAWBOX_CONFIG || undefined);
  const path = named ?? DEFAULT_CONFIG_PATH;
  try {
    return { path, text: readFileSync(path, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && named === undefined) return { path: null, text: '' };
    throw new ClawboxError('CONFIG_NOT_FOUND', `cannot read config ${path}: ${code ?? String(err)}`, { cause: err });
  }
}

/** The parsed config is immutable: whoever holds it cannot change the policy under the others. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
