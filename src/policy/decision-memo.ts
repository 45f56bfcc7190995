/**
 * Decisions a compiled policy has already made, by host text then port. Tools call the same few APIs over and over,
 * so nearly every connection asks a question already answered; making the answer anew cost a few allocations per
 * connection (the reason's text, the matched entries), which the young generation then had to collect.
 *
 * A hit is never stale: a compiled policy never changes (a reload or new host addresses compile new ones, each with
 * an empty memo). Bounded: a client cycling through targets fills it, and a full memo is emptied and starts over,
 * so its memory stays within `limit` answers and a flood of distinct targets only costs the flooder its hits.
 * Lookups allocate nothing: the host's text is the parsed one, the port a number.
 */
export class DecisionMemo<D> {
  private readonly byHost = new Map<string, Map<number, D>>();
  private size = 0;

  constructor(private readonly limit: number) {}

  get(host: string, port: number): D | undefined {
    return this.byHost.get(host)?.get(port);
  }

  set(host: string, port: number, decision: D): void {
    if (this.size >= this.limit) {
      this.byHost.clear();
      this.size = 0;
    }
    let ports = this.byHost.get(host);
    if (ports === undefined) {
      ports = new Map();
      this.byHost.set(host, ports);
    }
    if (!ports.has(port)) this.size += 1;
    ports.set(port, decision);
  }

  /** Answers held (for tests). */
  get entries(): number {
    return this.size;
  }
}
