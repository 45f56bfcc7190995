/**
 * The configs the CLI bundle has parsed, kept for its next runs: a `clawbox run` of a config it has seen skips the
 * YAML parser, the schema's construction and its check, about 9 ms of its start (README, "Start time").
 *
 * An entry is the parsed config as JSON, named by the SHA-256 of the config's text and by the bundle's build
 * (code-cache.ts), which holds the schema's code: the same text and the same schema give the same config. Only
 * configs that passed the schema are kept. Entries sit where the code cache does, under the same rule: a cached
 * config is policy that applies, so only a directory no one else can write holds them.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConfigSource } from '../config/load.js';
import type { ClawboxConfig } from '../config/schema.js';
import { deepFreeze, readConfigText } from '../config/source.js';
import { writeWhole } from '../write-whole.js';
import { buildKey, cacheDirFor } from './code-cache.js';

const PREFIX = 'clawbox-config-';
const SUFFIX = '.json';
/** Entries kept per build; the least recently written go first. */
const KEEP = 32;

export class ConfigCache {
  constructor(
    private readonly dir: string,
    private readonly build: string,
  ) {}

  /**
   * The cache of the bundle this code runs in; null outside a bundle: there, no one file's build covers the
   * schema (scripts/bundle-cli.ts makes import.meta.url the bundle's own file, a .cjs).
   */
  static ofBundle(moduleUrl = import.meta.url): ConfigCache | null {
    const file = fileURLToPath(moduleUrl);
    if (extname(file) !== '.cjs') return null;
    const dir = cacheDirFor(file);
    return dir === null ? null : new ConfigCache(dir, buildKey(file));
  }

  get(text: string): ClawboxConfig | null {
    try {
      const parsed: unknown = JSON.parse(readFileSync(this.pathOf(text), 'utf8'));
      return parsed !== null && typeof parsed === 'object' ? deepFreeze(parsed as ClawboxConfig) : null;
    } catch {
      return null; // none yet, or damaged: parsed anew and written again
    }
  }

  put(text: string, config: ClawboxConfig): void {
    if (!writeWhole(this.pathOf(text), JSON.stringify(config))) return;
    try {
      const current = `${PREFIX}${this.build}-`;
      const ours: Array<{ name: string; written: number }> = [];
      for (const name of readdirSync(this.dir)) {
        if (!name.startsWith(PREFIX) || !name.endsWith(SUFFIX)) continue;
        if (name.startsWith(current)) ours.push({ name, written: statSync(join(this.dir, name)).mtimeMs });
        else rmSync(join(this.dir, name), { force: true }); // an earlier build's
      }
      ours.sort((a, b) => b.written - a.written);
      for (const { name } of ours.slice(KEEP)) rmSync(join(this.dir, name), { force: true });
    } catch {
      // what is left behind is only disk space
    }
  }

  private pathOf(text: string): string {
    return join(this.dir, `${PREFIX}${this.build}-${createHash('sha256').update(text).digest('hex')}${SUFFIX}`);
  }
}

/** `loadConfig`, from `cache` when it has the text's config; the parser is loaded only when it has not. */
export async function loadConfigCached(explicitPath?: string, cache = ConfigCache.ofBundle(), env: NodeJS.ProcessEnv = process.env): Promise<ConfigSource> {
  const { path, text } = readConfigText(explicitPath, env);
  const cached = cache?.get(text) ?? null;
  if (cached !== null) return { path, config: cached, text };
  const { parseConfig } = await import('../config/load.js');
  const config = parseConfig(text, path ?? undefined);
  cache?.put(text, config);
  return { path, config, text };
}
