/**
 * Every Docker object clawbox creates carries these labels, so `clawbox gc` (and the sweep at each start) can
 * find what a crashed runner left behind without any state file.
 */
export const LABEL_MANAGED = 'dev.clawbox.managed';
/** 'sandbox' | 'gateway' | 'network' | 'pool' | 'holder' (a network holder: network-holder.ts). */
export const LABEL_ROLE = 'dev.clawbox.role';
/** Process id and boot-unique host name of the runner that owns a sandbox; dead owner → leftover. */
export const LABEL_OWNER_PID = 'dev.clawbox.owner-pid';
export const LABEL_OWNER_HOST = 'dev.clawbox.owner-host';
export const LABEL_TOOL = 'dev.clawbox.tool';
export const LABEL_CONFIG_DIGEST = 'dev.clawbox.config-digest';
/** Pool entries: the digest of everything that shapes the container, and when an unused one is removed. */
export const LABEL_POOL_KEY = 'dev.clawbox.pool-key';
export const LABEL_POOL_EXPIRES = 'dev.clawbox.pool-expires';
/**
 * Pool entries: this boot's id and the kernel log's last sequence number, read once the entry's address was found
 * free (its last holder had stopped: `createStartedSandbox`) and before the entry was created. From then on only its
 * launcher, which sends nothing, runs in it. So a run that takes it reads the log's direct attempts from there
 * (`direct-attempts.ts`) instead of reading the whole log at its start.
 */
export const LABEL_POOL_KERNEL_LOG = 'dev.clawbox.pool-kernel-log';

/**
 * On sandboxes, pool entries and network holders: the address of the gateway they use. A gateway that no container
 * names this way serves nobody, and may give its address to a gateway with other settings when all are taken.
 */
export const LABEL_GATEWAY_IP = 'dev.clawbox.gateway-ip';

/** On a sandbox that joined a network holder's namespace (network-holder.ts): the holder's id. */
export const LABEL_NETWORK_HOLDER = 'dev.clawbox.network-holder';

export type Role = 'sandbox' | 'gateway' | 'network' | 'pool' | 'holder';

export function labelsFor(role: Role, extra: Record<string, string> = {}): Record<string, string> {
  return { [LABEL_MANAGED]: '1', [LABEL_ROLE]: role, ...extra };
}

/** Docker API filter for objects of one role (or all of clawbox's). */
export function labelFilter(role?: Role): { label: string[] } {
  return { label: role ? [`${LABEL_MANAGED}=1`, `${LABEL_ROLE}=${role}`] : [`${LABEL_MANAGED}=1`] };
}
