import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings for a process that serves gateway connections, set before it accepts any.
 *
 * Allocation-site pretenuring off. V8 watches where objects are allocated, and when most objects from one site
 * survive young-generation collections it allocates that site's later objects straight into the old generation.
 * A gateway meets exactly that pattern whenever many connections are held for a while (a burst of long downloads,
 * 9,000 idle tunnels in the bench): the sites that make a connection's socket and its state turn "long-lived" for
 * good, and every later short connection then has old-generation parents pointing at its young parts, which the
 * young-generation collector takes for live and copies out (promotes) until a full collection. Measured with the rate
 * harness after 9,000 tunnels had been held and closed (two workers, 64 clients): 2,427-2,701 bytes promoted per
 * tunnel with pretenuring, 599-654 without (640-643 in a process that never held them), scavenges of 6.5-7.7
 * against 2.5-3.0 ms; CPU per tunnel moved within the machine's drift. node-floor shows the same on a smaller scale
 * (941 → 1,627 bytes). bench/README.md, *Tunnels promoted again after a burst of held connections*.
 *
 * `setFlagsFromString` rather than a command-line flag: the gateway runs as `clawbox proxy` from any shell, in its
 * container and as cluster workers, and V8 reads this flag when it collects and compiles, so setting it before the
 * first connection covers them all (measured: the figures above are this call's). Not every flag works so: the
 * memory reducer's is read when the heap is set up, and set here it changed nothing (*After a pause*).
 */
export function tuneHeapForGateway(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
