import { ClawboxError } from '../errors.js';
import { runSandbox, settleBackground } from '../../runner/sandbox.js';
import { parseCommandArgs } from './args.js';
import { loadConfigCached } from './config-cache.js';

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

export async function runCommand(args: readonly string[]): Promise<number> {
  const split = args.indexOf('--');
  const own = split < 0 ? args : args.slice(0, split);
  const command = split < 0 ? [] : args.slice(split + 1);
  const { values, positionals } = parseCommandArgs('run', own, OPTIONS, true);
  if (values.help) {
    process.stdout.write(`${RUN_HELP}\n`);
    return 0;
  }
  const toRun = command.length > 0 ? command : positionals;
  if (toRun.length === 0) throw new ClawboxError('CLI_USAGE', 'clawbox run: no command given', { details: ["put the tool's command after --, e.g. clawbox run -- curl -sS https://api.example.com/"] });
  const source = await loadConfigCached(values.config);
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const say = (text: string): void => {
    process.stderr.write(`clawbox: ${text}\n`);
  };
  try {
    const result = await runSandbox({
      config: source.config.sandbox,
      configText: source.text,
      command: toRun,
      ...(values.tool === undefined ? {} : { tool: values.tool }),
      ...(values['allow-host'] === undefined ? {} : { allowHosts: values['allow-host'] }),
      ...(values.image === undefined ? {} : { image: values.image }),
      env: parseEnv(values.env ?? []),
      ...(values.json ? { stdout: process.stderr } : {}),
      signal: abort.signal,
      onWarning: (w) => say(`warning: ${w}`),
      onProgress: (step) => say(step),
      // The pool is refilled by a detached helper: this command exits as soon as its tool is done.
      ...(process.argv[1] === undefined ? {} : { detachedRefillEntry: process.argv[1] }),
    });
    if (result.explanation) say(result.explanation);
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    return result.exit_code;
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    // Leave once the refill is handed over to its helper (not once the helper is done).
    await settleBackground({ helpers: false });
  }
}
