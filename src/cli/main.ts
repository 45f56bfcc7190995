#!/usr/bin/env node
import { reportError } from './errors.js';

const USAGE = `Usage: clawbox <command> [options]

Commands:
  run       run a tool in a sandbox:  clawbox run [options] -- COMMAND [ARG]...
  proxy     run the egress gateway (HTTP, SOCKS5, DNS) with the config's policy
  images    build the sandbox and gateway images:  clawbox images build
  verify    run the seed's sandbox checks (network, filesystem, process) with your config
  gc        remove what crashed runs left behind:  clawbox gc [--all]
  firewall  host rules for a sandbox network made by docker-compose.yml

Run 'clawbox <command> --help' for a command's options.`;

type Command = (args: readonly string[]) => Promise<number>;

// Loaded on use: the Docker client alone takes a few hundred milliseconds to import, and a command should pay
// only for what it needs.
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  run: async () => (await import('./run-command.js')).runCommand,
  proxy: async () => (await import('./proxy-command.js')).proxyCommand,
  images: async () => (await import('./images-command.js')).imagesCommand,
  verify: async () => (await import('./verify-command.js')).verifyCommand,
  gc: async () => (await import('./gc-command.js')).gcCommand,
  firewall: async () => (await import('./firewall-command.js')).firewallCommand,
};

/** Commands clawbox starts itself, not listed: the detached warm-pool refill (runner/pool-refill.ts). */
const INTERNAL_COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  'pool-refill': async () => (await import('./pool-refill-command.js')).poolRefillCommand,
};

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const load = COMMANDS[name] ?? INTERNAL_COMMANDS[name];
  if (!load) {
    process.stderr.write(`clawbox: unknown command '${name}'; commands: ${Object.keys(COMMANDS).join(', ')}\n`);
    return 2;
  }
  return (await load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = reportError(err);
  },
);
