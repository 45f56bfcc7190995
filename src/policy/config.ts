/** What the policy compiler needs from the config; kept apart from the YAML schema so tests can build policies. */
export interface PolicyConfig {
  readonly networkPolicy: 'deny-by-default' | 'allow-all';
  /** Raw entries as written in config; `compilePolicy` parses them with `parseHostPattern`. */
  readonly allowedHosts: readonly string[];
  readonly deniedHosts: readonly string[];
  /** Ports an entry without `:port` allows. Default [80, 443]. */
  readonly defaultPorts: readonly number[];
  /** The gateway's and the host's own addresses (canonical IP text): denied unless an allowed entry names the exact IP. */
  readonly selfAddresses: readonly string[];
  /** The gateway's listening ports: denied on any self address, always (no proxy loops). */
  readonly listenerPorts: readonly number[];
}
