import { LineCounter, parseDocument, isMap, isScalar, type Document } from 'yaml';
import type { z } from 'zod';
import { ClawboxError } from '../errors.js';
import { configSchema, type ClawboxConfig } from './schema.js';
import { deepFreeze, readConfigText, type ConfigText } from './source.js';
import { knownKeysAt, suggest } from './suggest.js';

export { DEFAULT_CONFIG_PATH } from './source.js';

export interface ConfigSource extends ConfigText {
  readonly config: ClawboxConfig;
}

/** The config that applies (see `readConfigText` for where it comes from), parsed and checked. */
export function loadConfig(explicitPath?: string, env: NodeJS.ProcessEnv = process.env): ConfigSource {
  const { path, text } = readConfigText(explicitPath, env);
  return { path, config: parseConfig(text, path ?? undefined), text };
}

/** Parses and validates config text; throws a ClawboxError whose details name each key path and line. */
export function parseConfig(text: string, source = '<config>'): ClawboxConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    const details = doc.errors.map((e) => `${source} (line ${lines.linePos(e.pos[0]).line}): ${e.message.split('\n')[0]}`);
    throw new ClawboxError('CONFIG_SYNTAX', `${source} is not valid YAML`, { details });
  }
  const raw: unknown = doc.toJS() ?? {};
  // A process parses its config once. zod's JIT would compile a fast path for each object schema first (with
  // `new Function`, which V8's code cache cannot keep): 2.5 ms of every `clawbox run`, for one parse.
  const result = configSchema.safeParse(raw, { jitless: true });
  if (result.success) return deepFreeze(result.data);
  const details = result.error.issues
    .flatMap((issue) => describeIssue(issue, raw, doc, lines))
    .sort((a, b) => lineOf(a) - lineOf(b));
  throw new ClawboxError('CONFIG_INVALID', `${source} has ${details.length} error(s)`, { details });
}

type Path = readonly PropertyKey[];

const TYPE_NAMES: Readonly<Record<string, string>> = {
  array: 'a list',
  object: 'a mapping',
  boolean: 'true or false',
  string: 'a string',
  number: 'a number',
};

function lineOf(detail: string): number {
  const match = /\(line (\d+)\)/.exec(detail);
  return match ? Number(match[1]) : Number.MAX_SAFE_INTEGER;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown, doc: Document, lines: LineCounter): string[] {
  const path = issue.path;
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(configSchema, path);
    return issue.keys.map((key) => {
      const hint = suggest(key, known);
      const where = at([...path, key], doc, lines, true);
      return `${where}: unknown key; ${hint ? `did you mean '${hint}'?` : `known keys here: ${known.join(', ')}`}`;
    });
  }
  const where = at(path, doc, lines, false);
  if (issue.code === 'invalid_type') {
    return [`${where}: expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, got ${show(valueAt(raw, path))}`];
  }
  if (issue.code === 'invalid_union') {
    // Unions here are 'one X or a list of X': the first branch's message says what X must look like.
    return [`${where}: ${issue.errors[0]?.[0]?.message ?? issue.message}`];
  }
  if (issue.code === 'invalid_value') {
    const options = issue.values.map((v) => `'${String(v)}'`);
    const expected = options.length === 1 ? options[0] : `one of ${options.join(', ')}`;
    return [`${where}: expected ${expected}, got ${show(valueAt(raw, path))}`];
  }
  return [`${where}: ${issue.message}`];
}

/** `sandbox.resource_limits.memory (line 7)`, from the YAML node where the problem is. */
function at(path: Path, doc: Document, lines: LineCounter, pointAtKey: boolean): string {
  const dotted = path.reduce<string>(
    (acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key)),
    '',
  );
  const offset = pointAtKey ? keyOffset(path, doc) : doc.getIn(path as unknown[], true);
  const start = typeof offset === 'number' ? offset : nodeStart(offset);
  return start === undefined ? dotted : `${dotted} (line ${lines.linePos(start).line})`;
}

function nodeStart(node: unknown): number | undefined {
  const range = (node as { range?: [number, number, number] } | undefined)?.range;
  return range?.[0];
}

function keyOffset(path: Path, doc: Document): number | undefined {
  const parent: unknown = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1) as unknown[], true);
  if (!isMap(parent)) return undefined;
  const pair = parent.items.find((item) => isScalar(item.key) && item.key.value === path[path.length - 1]);
  return nodeStart(pair?.key);
}

function valueAt(raw: unknown, path: Path): unknown {
  let node = raw;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return `'${value}'`;
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return 'a mapping';
}
