import { runFile as run } from './child-process.js';
import { DIRECT_LOG_PREFIX } from './direct-attempts.js';

const COMMENT = 'clawbox';

/**
 * Host firewall rules that Docker's own `internal` network does not give:
 *  - INPUT from the sandbox bridge is dropped: without it a sandbox reaches every service of the host through the
 *    bridge address (10.213.0.1) or any other host address, since traffic to the host is not forwarded traffic.
 *  - The network is created with inter-container communication off, so Docker drops sandbox-to-sandbox traffic;
 *    DOCKER-USER then accepts only traffic to and from the gateway. If these rules are missing, sandboxes have no
 *    network at all (fail closed), never more.
 */
export interface BridgeRules {
  readonly bridge: string;
  /** The gateway's address, or the block of gateway addresses (the runner's gateways are .2-.7: a /29). */
  readonly gateways: string;
}

/**
 * In chain order. What is neither to nor from the gateway is logged (rate-limited, with DIRECT_LOG_PREFIX) just
 * before it is dropped, so the runner can put direct attempts into the audit trail.
 */
function ruleSpecs({ bridge, gateways }: BridgeRules): Array<{ table: 'iptables' | 'ip6tables'; chain: string; spec: string[] }> {
  const tag = ['-m', 'comment', '--comment', COMMENT];
  const log = ['-m', 'limit', '--limit', '50/second', '--limit-burst', '200', ...tag, '-j', 'LOG', '--log-prefix', DIRECT_LOG_PREFIX];
  return [
    { table: 'iptables', chain: 'INPUT', spec: ['-i', bridge, ...log] },
    { table: 'iptables', chain: 'INPUT', spec: ['-i', bridge, ...tag, '-j', 'DROP'] },
    { table: 'ip6tables', chain: 'INPUT', spec: ['-i', bridge, ...tag, '-j', 'DROP'] },
    { table: 'iptables', chain: 'DOCKER-USER', spec: ['-i', bridge, '-o', bridge, '-d', gateways, ...tag, '-j', 'ACCEPT'] },
    { table: 'iptables', chain: 'DOCKER-USER', spec: ['-i', bridge, '-o', bridge, '-s', gateways, ...tag, '-j', 'ACCEPT'] },
    { table: 'iptables', chain: 'DOCKER-USER', spec: ['-i', bridge, ...log] },
  ];
}

async function has(table: string, chain: string, spec: string[]): Promise<boolean> {
  try {
    await run(table, ['-w', '-C', chain, ...spec]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Installs the rules (idempotent). The checks run in parallel: they are on every run's path. When any rule is
 * missing, the bridge's rules are all put back in their order (each inserted at the top, last first).
 */
export async function ensureBridgeRules(rules: BridgeRules): Promise<void> {
  const specs = ruleSpecs(rules);
  const present = await Promise.all(specs.map(({ table, chain, spec }) => has(table, chain, spec)));
  if (present.every(Boolean)) return;
  await removeBridgeRules(rules);
  for (const { table, chain, spec } of [...specs].reverse()) {
    try {
      await run(table, ['-w', '-I', chain, '1', ...spec]);
    } catch (err) {
      // ip6tables may be absent or IPv6 disabled; the sandbox gets no IPv6 either (sysctl in the spec).
      if (table === 'ip6tables') continue;
      throw new Error(`cannot install firewall rule (${table} -I ${chain} ${spec.join(' ')}): ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Which of the rules are in place; `clawbox verify` reports any that is missing. */
export async function missingBridgeRules(rules: BridgeRules): Promise<string[]> {
  const missing: string[] = [];
  for (const { table, chain, spec } of ruleSpecs(rules)) {
    if (table === 'ip6tables') continue;
    if (!(await has(table, chain, spec))) missing.push(`${table} ${chain} ${spec.join(' ')}`);
  }
  return missing;
}

/** Removes the rules of one bridge (idempotent). */
export async function removeBridgeRules(rules: BridgeRules): Promise<void> {
  for (const { table, chain, spec } of ruleSpecs(rules)) {
    while (await has(table, chain, spec)) await run(table, ['-w', '-D', chain, ...spec]);
  }
}

/** Removes every rule carrying clawbox's comment from the chains it uses (by position: specs may hold quotes). */
export async function removeAllRules(): Promise<number> {
  let removed = 0;
  for (const table of ['iptables', 'ip6tables'] as const) {
    for (const chain of ['INPUT', 'DOCKER-USER']) {
      let listing: string;
      try {
        listing = (await run(table, ['-w', '-S', chain])).stdout;
      } catch {
        continue;
      }
      const rules = listing.split('\n').filter((line) => line.startsWith(`-A ${chain} `));
      const ours = rules.flatMap((line, index) => (line.includes(`--comment ${COMMENT}`) ? [index + 1] : []));
      for (const position of ours.reverse()) {
        await run(table, ['-w', '-D', chain, String(position)]).catch(() => undefined);
        removed += 1;
      }
    }
  }
  return removed;
}
