import { ensureBridgeRules, missingBridgeRules } from '../../runner/firewall.js';
import { ClawboxError } from '../errors.js';
import { parseHost } from '../net/host.js';
import { parseCommandArgs } from './args.js';

export const FIREWALL_HELP = `Usage: clawbox firewall --bridge NAME --gateway IP [--check]

Installs the host firewall rules a sandbox network needs beyond Docker's 'internal' flag: INPUT from the bridge
dropped (no path to the host's services), bridge traffic accepted only to and from the gateway. 'clawbox run' does
this itself; use it for the network docker-compose.yml creates:
  clawbox firewall --bridge clawbox-cmp0 --gateway 10.213.1.2
--check only reports missing rules (exit 1 if any).`;

export async function firewallCommand(args: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs('firewall', args, {
    bridge: { type: 'string' },
    gateway: { type: 'string' },
    check: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(`${FIREWALL_HELP}\n`);
    return 0;
  }
  const bridge = values.bridge ?? '';
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw new ClawboxError('CLI_USAGE', `clawbox firewall --bridge: expected an interface name, got '${bridge}'`);
  const gateway = parseHost(values.gateway ?? '', { brackets: 'forbidden' });
  if (!gateway.ok || gateway.host.kind !== 'ip' || gateway.host.ip.family !== 4) {
    throw new ClawboxError('CLI_USAGE', `clawbox firewall --gateway: expected the gateway's IPv4 address, got '${values.gateway ?? ''}'`);
  }
  const rules = { bridge, gateways: gateway.host.ip.text };
  if (!values.check) await ensureBridgeRules(rules);
  const missing = await missingBridgeRules(rules);
  process.stdout.write(missing.length === 0 ? `firewall rules for ${bridge} are in place\n` : `missing:\n${missing.map((m) => `  ${m}\n`).join('')}`);
  return missing.length === 0 ? 0 : 1;
}
