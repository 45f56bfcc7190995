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
 * harness after 9,000 tunnels had been held and closed (two workers, 64 clients): 2,492 bytes promoted per tunnel
 * with pretenuring, 629 without (643 in a process that never held them), scavenges of 6.5 against 2.5 ms, 199
 * against 178 µs of CPU per tunnel. node-floor shows the same on a smaller scale (941 → 1,627 bytes).
 *
 * The memory reducer off. When allocation stops for a few seconds V8 runs full collections to give memory back,
 * in a mode that also throws away compiled code, so the next connections after every pause ran in the interpreter
 * while V8 optimised the same functions again: 65-75 functions recompiled in each round of 2,000 tunnels that
 * followed 10 s without traffic (5-18 without the reducer), and one client's p99 in those rounds 1.3-3.8 ms against
 * 0.95-1.4 ms. A gateway is mostly idle between bursts of tool calls, so that was every first call after a pause.
 * What it costs: the heap a burst grew is not shrunk while the gateway stays idle; it is collected as usual when
 * traffic resumes. (bench/README.md, *After a pause*.)
 *
 * `setFlagsFromString` rather than a command-line flag: the gateway runs as `clawbox proxy` from any shell, in its
 * container and as cluster workers, and V8 reads this flag when it collects and compiles, so setting it before the
 * first connection covers them all.
 */
export function tuneHeapForGateway(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
  setFlagsFromString('--no-memory-reducer');
}
