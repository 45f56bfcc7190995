/**
 * Which gateway workers accept new TCP connections (`--workers N`, `proxy/cluster.ts`).
 *
 * Measured here: with every worker accepting on the shared listening socket, one client's sequential tunnels are
 * taken by whichever worker wins each accept, and that alternation cost about 19 % of the low-load latency
 * (p50 346–358 µs against 282–294 µs when one worker takes them all; setup 193 against 157 µs). So at low load one
 * worker, the lead, accepts alone and the others (standbys) do not listen. When the lead gets busy it asks for
 * them, and the burst that called them is balanced: while they join and for `settleSamples` after they listen,
 * any worker that accepts a connection with more than its share of the load hands it to the least loaded one (the
 * primary passes it on; `handOverByLoad`, with the loads the workers share, `worker-loads.ts`), so that a burst of
 * long-lived connections is neither left on one core before the standbys listen nor split by whichever process
 * the kernel woke first after. Then the kernel splits what comes, with no hand-over to pay: a steady flow of short
 * connections evens itself out, whoever is free accepts. Where the workers share no loads, the lead hands every
 * other new connection over until the standbys listen. When it has been quiet for a while it lets them go again.
 *
 * These are pure decisions: the cluster feeds them connection counts and the primary's answers.
 * The counts are of busy connections: open ones less those that moved no byte over the last activity samples
 * (`proxy/open-connections.ts`), so held keep-alives and quiet tunnels do not look like overlap.
 */

export interface SteeringLimits {
  /**
   * Busy connections in the lead at which it asks for the standbys: as soon as connections overlap. A connection
   * counts until its socket's close event, a loop turn after its last byte, so one client's sequential tunnels
   * show 2 (the one closing and the next): overlap is 3. Not by CPU: those sequential tunnels alone use up to 0.9 of a
   * core here (each meets cold caches), and standbys would not help them (each tunnel taken by another process
   * costs more: that is the alternation above).
   */
  readonly joinAt: number;
  /** The lead lets them go after this many samples in a row with at most `quietAt` busy connections. */
  readonly quietAt: number;
  readonly quietSamples: number;
  /**
   * Samples after the standbys start listening during which the lead still hands over by load: the rest of the
   * burst that called them, which the kernel would otherwise split by whichever process it woke first.
   */
  readonly settleSamples: number;
}

/** Sampled every `SAMPLE_MS`: the standbys leave after 2 s of quiet. */
export const SAMPLE_MS = 100;
/**
 * Every this many samples (500 ms) the lead also looks at which connections moved bytes, a pass over all of them
 * (measured with 9,000 held: 0.6–1.5 ms a pass, so 1–3 ms of CPU a second).
 */
export const ACTIVITY_SAMPLE_EVERY = 5;
export const STEERING_LIMITS: SteeringLimits = {
  joinAt: 3,
  quietAt: 2,
  quietSamples: 20,
  settleSamples: 2,
};

/**
 * Whether a worker that accepted a connection while a burst is balanced (`LeadSteering.balancing`) hands it to the
 * least loaded of the others: `own` its load counting this one, `least` that worker's (`worker-loads.ts`). When it
 * has more than one more, and more than a sixteenth of the two's total more: a handed-over connection costs a
 * round trip through the primary before its first byte is read, so the short-lived connections of a busy gateway,
 * whose counts swing by a few from moment to moment, are not passed round for a difference that is gone a
 * moment later.
 */
export function handOverByLoad(own: number, least: number): boolean {
  return own > least + Math.max(1, Math.floor((own + least) / 16));
}

/** What the lead asks the primary for: the standbys to accept too, or to stop. */
export type StandbyRequest = 'join' | 'leave';

export class LeadSteering {
  /** Whether the lead wants the standbys accepting... */
  private wanted: boolean;
  /** ...and whether the primary has said they are (or are not) as wanted. */
  private confirmed = true;
  private quiet = 0;
  private handOverNext = false;
  /** Samples left in which the lead balances by load though the standbys listen. */
  private settling = 0;

  constructor(
    standbysAccepting: boolean,
    private readonly limits: SteeringLimits = STEERING_LIMITS,
  ) {
    this.wanted = standbysAccepting;
  }

  /**
   * A new connection, with `busy` the lead's busy connections counting it and `least` the connections of the least
   * loaded standby (null where the workers share no memory, `worker-loads.ts`). `handOver`: give this one to a
   * standby: while they join and for `settleSamples` after, by load (`handOverByLoad`); without loads, every other
   * one while they join. `request`: what to ask the primary now.
   */
  onConnection(busy: number, least: number | null): { readonly handOver: boolean; readonly request: StandbyRequest | null } {
    const request = !this.wanted && busy >= this.limits.joinAt ? this.want(true) : null;
    if (!this.balancing) return { handOver: false, request };
    if (least !== null) return { handOver: handOverByLoad(busy, least), request };
    if (this.confirmed) return { handOver: false, request };
    this.handOverNext = !this.handOverNext;
    return { handOver: this.handOverNext, request };
  }

  /** One sample of the lead's busy connections: 'leave' after a quiet spell (joining is `onConnection`'s). */
  onSample(busy: number): StandbyRequest | null {
    if (this.confirmed && this.settling > 0) this.settling -= 1;
    if (!this.wanted) return null;
    if (busy > this.limits.quietAt) {
      this.quiet = 0;
      return null;
    }
    this.quiet += 1;
    return this.quiet >= this.limits.quietSamples ? this.want(false) : null;
  }

  /** The primary's answer: the standbys now accept (or not). An answer to an earlier request is ignored. */
  standbysAre(accepting: boolean): void {
    if (accepting !== this.wanted || this.confirmed) return;
    this.confirmed = true;
    this.settling = accepting ? this.limits.settleSamples : 0;
  }

  /**
   * Whether accepted connections are balanced by load now: while the standbys join and for `settleSamples` after.
   * The lead publishes it (`WorkerLoads.balancing`) so that a standby that accepts in that window balances too.
   */
  get balancing(): boolean {
    return this.wanted && (!this.confirmed || this.settling > 0);
  }

  /** Whether `onConnection(busy, …)` would balance by load: whether the caller need read the loads for it. */
  balancesNext(busy: number): boolean {
    return this.balancing || (!this.wanted && busy >= this.limits.joinAt);
  }

  /** Whether the lead is handing connections over (standbys wanted, not yet confirmed). */
  get joining(): boolean {
    return this.wanted && !this.confirmed;
  }

  private want(accepting: boolean): StandbyRequest {
    this.wanted = accepting;
    this.confirmed = false;
    this.quiet = 0;
    this.handOverNext = false;
    return accepting ? 'join' : 'leave';
  }
}
