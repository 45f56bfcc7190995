/**
 * Which gateway workers accept new TCP connections (`--workers N`, `proxy/cluster.ts`).
 *
 * Measured here: with every worker accepting on the shared listening socket, one client's sequential tunnels are
 * taken by whichever worker wins each accept, and that alternation cost about 19 % of the low-load latency
 * (p50 346–358 µs against 282–294 µs when one worker takes them all; setup 193 against 157 µs). So at low load one
 * worker, the lead, accepts alone and the others (standbys) do not listen. When the lead gets busy it asks for
 * them, and until they listen it hands every other new connection over to one (the primary passes it on), so
 * that a burst of long-lived connections is not left on one core. When it has been quiet for a while it lets
 * them go again.
 *
 * This is the lead's decision alone, pure: the cluster feeds it connection counts and the primary's answers.
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
};

/** What the lead asks the primary for: the standbys to accept too, or to stop. */
export type StandbyRequest = 'join' | 'leave';

export class LeadSteering {
  /** Whether the lead wants the standbys accepting... */
  private wanted: boolean;
  /** ...and whether the primary has said they are (or are not) as wanted. */
  private confirmed = true;
  private quiet = 0;
  private handOverNext = false;

  constructor(
    standbysAccepting: boolean,
    private readonly limits: SteeringLimits = STEERING_LIMITS,
  ) {
    this.wanted = standbysAccepting;
  }

  /**
   * A new connection, with `busy` the lead's busy connections counting it. `handOver`: give this one to a
   * standby (every other one while they are joining); `request`: what to ask the primary now.
   */
  onConnection(busy: number): { readonly handOver: boolean; readonly request: StandbyRequest | null } {
    const request = !this.wanted && busy >= this.limits.joinAt ? this.want(true) : null;
    if (!this.wanted || this.confirmed) return { handOver: false, request };
    this.handOverNext = !this.handOverNext;
    return { handOver: this.handOverNext, request };
  }

  /** One sample of the lead's busy connections: 'leave' after a quiet spell (joining is `onConnection`'s). */
  onSample(busy: number): StandbyRequest | null {
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
    if (accepting === this.wanted) this.confirmed = true;
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
