#!/usr/bin/env node
import { reportError } from './errors.js';
import { firewallCommand } from './firewall-command.js';
import { gcCommand } from './gc-command.js';
import { imagesCommand } from './images-command.js';
import { PROXY_HELP, proxyCommand } from './proxy-command.js';
import { RUN_HELP, runCommand } from './run-command.js';
import { verifyCommand } from './verify-command.js';

const USAGE = `Usage: clawbox <command> [options]

Commands:
  run       run a tool in a sandbox:  clawbox run [options] -- COMMAND [ARG]...
  proxy     run the egress gateway (HTTP, SOCKS5, DNS) with the config's policy
  images    build the sandbox and gateway images:  clawbox images build
  verify    run the seed's sandbox checks (network, filesystem, process) with your config
  gc        remove what crashed runs left behind:  clawbox gc [--all]
  firewall  host rules for a sandbox network made by docker-compose.yml

Run 'clawbox <command> --help' for a command's options.

${RUN_HELP}

${PROXY_HELP}`;

type Command = (args: readonly string[]) => Promise<number>;

const COMMANDS: Readonly<Record<string, Command>> = {
  run: runCommand,
  proxy: proxyCommand,
  images: imagesCommand,
  verify: verifyCommand,
  gc: gcCommand,
  firewall: firewallCommand,
};

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`clawbox: unknown command '${name}'; commands: ${Object.keys(COMMANDS).join(', ')}\n`);
    return 2;
  }
  return command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = reportError(err);
  },
);
