import { resolve } from 'node:path';
import type { ConfigSource } from '../config/load.js';
import { ClawboxError } from '../errors.js';
import { runSandbox, settleBackground } from '../../runner/sandbox.js';
import { parseCommandArgs } from './args.js';
import { loadConfigCached } from './config-cache.js';
import { reportError } from './errors.js';

export const RUN_HELP = `Usage: clawbox run [--config FILE] [--tool NAME] [--allow-host HOST]... [--image IMAGE]
                   [--env KEY=VALUE]... [--json] -- COMMAND [ARG]...

Runs COMMAND in a fresh sandbox with every layer of the config; its only way out is the egress gateway.
The exit code is the tool's (124 when sandbox.timeout killed it, 130 after Ctrl-C).

  --config FILE        config file (default: $CLAWBOX_CONFIG, else ~/.openclaw/config.yml)
  --tool NAME          use sandbox.tools.NAME (its hosts, timeout, image); named in audit lines
  --allow-host HOST    allow one more host for this sandbox only; repeatable
  --image IMAGE        image instead of sandbox.default_image
  --env KEY=VALUE      environment variable for the tool; repeatable
  --json               print the run record as JSON on stdout (the tool's output then goes to stderr)`;

const OPTIONS = {
  config: { type: 'string' },
  tool: { type: 'string' },
  'allow-host': { type: 'string', multiple: true },
  image: { type: 'string' },
  env: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parseEnv(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ClawboxError('CLI_USAGE', `clawbox run --env: expected KEY=VALUE, got '${pair}'`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

/**
 * Where a `clawbox run` talks to: the CLI process's own streams and signals, or a resident runner's client
 * (resident-runner.ts) on the other end of a socket.
 */
export interface RunIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** What `--config FILE` is relative to. */
  readonly cwd: string;
  /** CLAWBOX_CONFIG: the config when `--config` is absent. */
  readonly configEnv: string | undefined;
  /** Ctrl-C or SIGTERM: stops the tool and removes its sandbox (exit code 130). */
  readonly signal: AbortSignal;
  /** The CLI script a detached refill helper starts from; absent: the pool is refilled in this process, after the run. */
  readonly detachedRefillEntry?: string;
}

/** A `clawbox run` command line, read: the tool's command and the options, or a request for the help text. */
export type RunArgs = { readonly help: true } | { readonly help: false; readonly values: RunValues; readonly command: string[] };
type RunValues = ReturnType<typeof parseCommandArgs<typeof OPTIONS>>['values'];

/** Reads the arguments after `run`; throws CLI_USAGE naming what is wrong. */
export function parseRunArgs(args: readonly string[]): RunArgs {
  const split = args.indexOf('--');
  const own = split < 0 ? args : args.slice(0, split);
  const command = split < 0 ? [] : args.slice(split + 1);
  const { values, positionals } = parseCommandArgs('run', own, OPTIONS, true);
  if (values.help) return { help: true };
  const toRun = command.length > 0 ? command : positionals;
  if (toRun.length === 0) throw new ClawboxError('CLI_USAGE', 'clawbox run: no command given', { details: ["put the tool's command after --, e.g. clawbox run -- curl -sS https://api.example.com/"] });
  return { help: false, values, command: toRun };
}

/** The run's config: `--config FILE` (relative to the caller's directory), else CLAWBOX_CONFIG, else the default. */
export function loadRunConfig(values: RunValues, io: Pick<RunIo, 'cwd' | 'configEnv'>): Promise<ConfigSource> {
  return loadConfigCached(values.config === undefined ? undefined : resolve(io.cwd, values.config), undefined, { CLAWBOX_CONFIG: io.configEnv });
}

/** Runs the tool; resolves with the exit code (errors reported on io.stderr, as the CLI reports them). */
export async function runWith(values: RunValues, command: readonly string[], source: ConfigSource, io: RunIo): Promise<number> {
  const say = (text: string): void => {
    io.stderr.write(`clawbox: ${text}\n`);
  };
  try {
    const result = await runSandbox({
      config: source.config.sandbox,
      configText: source.text,
      command,
      ...(values.tool === undefined ? {} : { tool: values.tool }),
      ...(values['allow-host'] === undefined ? {} : { allowHosts: values['allow-host'] }),
      ...(values.image === undefined ? {} : { image: values.image }),
      env: parseEnv(values.env ?? []),
      stdout: values.json ? io.stderr : io.stdout,
      stderr: io.stderr,
      signal: io.signal,
      onWarning: (w) => say(`warning: ${w}`),
      onProgress: (step) => say(step),
      ...(io.detachedRefillEntry === undefined ? { refillAfterRun: true } : { detachedRefillEntry: io.detachedRefillEntry }),
    });
    if (result.explanation) say(result.explanation);
    if (values.json) io.stdout.write(`${JSON.stringify(result)}\n`);
    return result.exit_code;
  } catch (err) {
    return reportError(err, (text) => io.stderr.write(text));
  }
}

export async function runCommand(args: readonly string[]): Promise<number> {
  const parsed = parseRunArgs(args);
  if (parsed.help) {
    process.stdout.write(`${RUN_HELP}\n`);
    return 0;
  }
  const io = { cwd: process.cwd(), configEnv: process.env.CLAWBOX_CONFIG };
  const source = await loadRunConfig(parsed.values, io);
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await runWith(parsed.values, parsed.command, source, {
      ...io,
      stdout: process.stdout,
      stderr: process.stderr,
      signal: abort.signal,
      // The pool is refilled by a detached helper: this command exits as soon as its tool is done.
      ...(process.argv[1] === undefined ? {} : { detachedRefillEntry: process.argv[1] }),
    });
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    // Leave once the refill is handed over to its helper (not once the helper is done).
    await settleBackground({ helpers: false });
  }
}
