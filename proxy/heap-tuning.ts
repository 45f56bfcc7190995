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
 * memory reducer's is read when the heap is set up, and set here it changed nothing (*After a pause*); it goes on
 * the command line instead (GATEWAY_COMMAND_LINE_V8_FLAGS).
 */
export function tuneHeapForGateway(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}

/**
 * V8 flags that only work on a gateway process's command line (V8 reads them when it sets the heap up). Every way a
 * gateway starts passes them: the cluster primary forks its workers with them, the runner's gateway containers and
 * the image's entrypoint start node with them, and `bin/clawbox proxy` adds them for a gateway of one process (tests
 * check each).
 *
 * A floor of 64 MB under the old generation's limit (`--initial-old-space-size`, which V8 keeps as the least limit
 * after every full collection, not only until the first). Every connection node:net accepted left about 500 bytes
 * that outlived two young-generation collections and died only in a full one (a bare node:net echo server shows it
 * too): its Socket constructor copies its options with an object spread and adds four properties, and V8 11.3 gives
 * such a copy hidden classes of its own each time (src/copy-with.ts). Since 25553cf the gateway builds its sockets
 * from frozen options and leaves 2 bytes (`frozen-accept.ts`); the floor and the figures that follow are from
 * before. With live data of about 12 MB a worker, V8's own limit came 4-8 MB above it, so at one client a full
 * collection ran every ~6,000 tunnels, and the tunnel it stopped took 8-15 ms. With the floor, one every ~24,000
 * (50,000 in the latency harness; the median of the rounds' max 2.8-2.9 against 4.7 ms without it). Under load V8's
 * limit is higher anyway (64 HTTP clients: one full collection per worker in 30 s either way). Its cost: up to the
 * floor of garbage held between collections, +34 MB PSS for two workers after a burst, and 9.7 against 8.4 KB per
 * idle tunnel.
 * bench/README.md, *A floor under the old generation*.
 *
 * The memory reducer off. When a process goes quiet for a few seconds V8's memory reducer runs full collections that
 * also drop compiled code, so the first connections after every pause run through the interpreter and recompile the
 * hot path (65-75 functions over the next 2,000 tunnels in the latency harness; 5-18 with the reducer off, and that
 * round's p99 1.3-3.8 ms against 0.95-1.4). An egress gateway is quiet between tool calls by nature, and that first
 * call after a pause is the one a user waits for. What the reducer would have given back is measured in
 * bench/README.md, *After a pause*.
 *
 * The young generation at a fixed 8 MB a semi-space (`--min-semi-space-size=8 --max-semi-space-size=8`). Left to
 * itself V8 shrinks it to its least (1 MB semi-spaces) at a full collection that comes while allocation is slow, as
 * between tool calls, and grows it again only as objects survive its collections, which short tunnels hardly leave:
 * one client's tunnels (a SOCKS5 tunnel allocates about 16 KB) then met a young-generation collection every ~200
 * tunnels, 8-15 in each round of 2,000 in the bench's latency scenario (counted with `perf sched`), each one then
 * waking four helper threads; the SOCKS5 rounds' p99 1.02-1.05 ms. Kept at V8's largest (16 MB) since b5b553f: 2-6
 * per round, p99 0.59-0.71 ms (*A young generation that stays large*).
 * Why 8 and not 16 since scavenges run on the event loop's thread alone (below): nothing is left that each scavenge
 * pays once, so its pause is the copying of what it finds alive, and at one client that was mostly the ~500 bytes
 * per connection above, gathered since the one before (gone since 25553cf: in the latency harness at 8 MB, six
 * rounds of CONNECT and SOCKS5 in turn, 27-28 scavenges of 0.38-0.42 ms, summed 11 ms; the sizes below were compared
 * before it). The pause followed the young generation's size and the pauses' sum did not: latency harness, three
 * runs each, scavenges during six rounds of 2,000 one-client tunnels 14-15 of 2.3-2.6 ms (the longest 2.8-3.9) at
 * 16 MB, 28-29 of 1.3-1.4 ms (1.7-1.9) at 8, 57-58 of 0.8-0.9 ms (1.0-1.4) at 4; summed 33-39, 37-40 and 45-50 ms
 * per six rounds. And memory: 9,000 idle tunnels held 6.0-6.3 KB each at 8, 9.7-10.3 at 16 (`npm run bench --
 * idle`, alternating, two runs each; squid 31.2-31.3): the semi-space pages that the hold's allocations touch count
 * in two workers' resident memory. Four alternating pairs of `npm run bench --
 * rate` moved nothing the other way beyond the machine's drift: tunnels/s 1.42-1.67x squid at 8 against 1.33-1.57x
 * at 16, CPU per tunnel 0.76-0.90x against 0.81-0.99x, one client's max 0.71-1.04x against 0.65-1.61x, its p99
 * 0.88-1.80x against 0.87-1.09x (1.80: three rounds of five over 1 ms, in a run where three of dante's were too).
 * After 9,000 held tunnels (latency harness, three alternations): SOCKS5 p99 652 against 732 us, CONNECT 556 against
 * 540, the rounds' max 4.6 against 3.8 ms. The two full runs since (OOO / PPP) had one client's p99 at 1.02-1.07x
 * squid's and SOCKS5's at 1.05-1.14x dante's, against 0.95-0.99x and 0.85-0.88x in the two before, and its max at
 * 1.06x and 0.58x against 1.16-1.38x: within what the alternations showed as drift, not measured apart from it.
 * bench/README.md, *A young generation of 8 MB*.
 *
 * Young-generation collections on the event loop's thread alone (`--no-parallel-scavenge`). V8 splits a scavenge
 * among its helper threads and the event loop waits for the last share; the gateway ran those threads at nice 19
 * then (`helper-threads.ts`; nice 5 since 644afd3, and parallel scavenges were not measured again), so on a busy
 * machine a helper holding a share waited behind every nice-0 process there while the event loop, and every
 * connection on it, waited for the helper. Measured with 64 keep-alive HTTP clients
 * on a fresh two-worker gateway (11 s of load each, two runs): scavenges summed 636-697 ms of pauses, the longest 65-136 ms,
 * in parallel; 392-455 and 33-38 ms on the event loop's thread (with the helpers left at nice 0, in parallel: 442
 * and 31). One client's tunnels lost nothing: over 15 rounds of each kind in the latency harness, the rounds' p99
 * (median) 548 µs for CONNECT and 636 for SOCKS5, against 588 and 668 in parallel.
 * bench/README.md, *Scavenges that waited for a helper at nice 19*.
 */
export const GATEWAY_COMMAND_LINE_V8_FLAGS: readonly string[] = [
  '--no-memory-reducer',
  '--initial-old-space-size=64',
  '--min-semi-space-size=8',
  '--max-semi-space-size=8',
  '--no-parallel-scavenge',
];

/**
 * A gateway worker's node arguments: its parent's (a profile, a debugger) with the gateway's command-line flags. A
 * setting the parent was started with wins over the gateway's (`--initial-old-space-size=128`, `--memory-reducer`):
 * V8 takes the last of two, so ours is left out rather than appended after it.
 */
export function gatewayWorkerExecArgv(parentExecArgv: readonly string[]): string[] {
  const parentSettings = new Set(parentExecArgv.map(v8SettingOf));
  return [...parentExecArgv, ...GATEWAY_COMMAND_LINE_V8_FLAGS.filter((flag) => !parentSettings.has(v8SettingOf(flag)))];
}

/**
 * What a V8 flag sets, however it is spelled: `--no-memory_reducer` and `--memory-reducer` both set memory-reducer.
 * The young generation's least and largest size are one setting, its size: a parent started with either one gets
 * neither of ours, so that it never runs with a least size above the largest.
 */
function v8SettingOf(flag: string): string {
  const name = flag.replace(/^--/, '').split('=')[0].replace(/_/g, '-').replace(/^no-/, '');
  return name === 'min-semi-space-size' || name === 'max-semi-space-size' ? 'semi-space-size' : name;
}
