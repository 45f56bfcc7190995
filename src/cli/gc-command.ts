import { collectGarbage } from '../../runner/gc.js';
import { connectDocker } from '../../runner/docker-client.js';
import { parseCommandArgs } from './args.js';

export const GC_HELP = `Usage: clawbox gc [--all]

Removes sandboxes left behind by runners that crashed or were killed, pooled sandboxes and network holders
that expired or whose taker died, and gateway containers that serve no sandbox and that no run has asked for
in the last minute. With --all, also stops the resident runners and removes the warm pools, the network
holders, every gateway container, clawbox's networks and its firewall rules (the next run recreates them).`;

export async function gcCommand(args: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs('gc', args, { all: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    process.stdout.write(`${GC_HELP}\n`);
    return 0;
  }
  const report = await collectGarbage(await connectDocker(), values.all === true);
  process.stdout.write(
    [
      `sandboxes removed: ${report.sandboxes.length ? report.sandboxes.join(', ') : 'none'}`,
      `gateways removed: ${report.gateways.join(', ') || 'none'}`,
      ...(values.all
        ? [
            `networks removed: ${report.networks.join(', ') || 'none'}`,
            `firewall rules removed: ${report.firewallRules}`,
            `resident runners stopped: ${report.runners.join(', ') || 'none'}`,
          ]
        : []),
      '',
    ].join('\n'),
  );
  return 0;
}
