import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * A gateway process's other threads at a lower scheduling priority (nice 5), its event loop's thread as it was.
 *
 * Those threads are V8's helpers (optimising compiles, parallel scavenges, concurrent marking and sweeping), the
 * platform's delayed-task and signal threads and libuv's pool, which the gateway leaves idle: its resolver speaks
 * DNS over its own socket and its audit writes are synchronous. None of their work is on a connection's path, but
 * on two shared cores a helper that holds one delays whoever wakes there next: the event loop, or the client and
 * upstream it is talking to. Traced with `perf sched` at one client right after a 64-client load (the latency
 * harness; V8 recompiles a dozen hot functions then): 24 of the 35 stalls over 0.9 ms had a helper on a core (one
 * TurboFan compile held it 2.3 ms while the client it had woken waited in its queue). At nice 19 a woken thread
 * takes the core from a helper at once. Measured in the harness, four runs each of three 3 s loads at 64 clients,
 * then rounds of 2,000 one-client tunnels: the rounds' p99 median 0.54 ms, none over 0.7 (0.64 and 4 of 12 at the
 * default priority); the third load's tunnels/s and p99 no worse (6,104-7,135 and 15.8-17.8 ms against 5,918-6,584
 * and 17.8-19.8). Its cost: while both cores are busy the compiles wait, so a fresh process's first seconds at full
 * load run longer in the interpreter (its first 3 s: 4,244-5,180 tunnels/s against 4,967-5,793; a fresh HTTP path's
 * first second 9.9-12.2k requests/s against 13.0-15.9k). SCHED_IDLE (a native call) did no better than nice 19.
 * bench/README.md, *Helper threads below the event loop*. Work the event loop waits for must not be theirs: a
 * parallel scavenge was (`--no-parallel-scavenge` in `heap-tuning.ts`).
 *
 * Why nice 5 and not 19, as it was until 2026-11-29: even on the event loop's thread alone, a young-generation
 * collection that comes while helpers compile waits for them, in a part of its pause that `--trace-gc-nvp` gives to
 * none of its phases (the pause less its phases), and at nice 19 a helper on a busy core waits long for the CPU.
 * Measured with 64 keep-alive HTTP clients on a fresh two-worker gateway (1 s, then two 5 s loads; two alternations
 * of each nice), that unaccounted part per worker, summed; its pauses over 2 ms; the longest: nice 19 111-334 ms,
 * 7-17, 36-101 ms; nice 10 35-103 ms, 4-8, 5-31 ms; nice 5 6-22 ms, 0-1, 2.3-7.5 ms; nice 0 14-21 ms, 0-2, 2.7-4.0
 * ms. The first second's p99: 30.8 and 44.3 ms at 19, 15.7 and 19.1 at 5, 15.3 and 18.6 at 0. One client's rounds
 * right after (the latency harness, four later rounds a run) moved within their spread: p99 0.51-0.70 ms at 19,
 * 0.47-0.80 at 5, 0.42-0.71 at 0. bench/README.md, *Collections that waited for a helper at nice 19*.
 *
 * Unprivileged and one-way: any process may lower its own threads' priority, none may raise it back without
 * CAP_SYS_NICE (or a raised RLIMIT_NICE), so this is set once, when the process starts serving. Threads started
 * later (libuv's pool, where a build starts it after this) take the priority of the thread that starts them: the
 * event loop's.
 */
export const HELPER_THREAD_NICE = 5;

export type HelperThreadPriority = { readonly nice: number; readonly threads: number } | { readonly unavailable: string };

/** Lowers every thread of this process but the event loop's (the process's first thread, whose id is its pid). */
export function lowerHelperThreadPriority(nice: number = HELPER_THREAD_NICE, taskDir = '/proc/self/task'): HelperThreadPriority {
  let ids: string[];
  try {
    ids = readdirSync(taskDir);
  } catch (err) {
    return { unavailable: `cannot list this process's threads in ${taskDir} (${errorCode(err)})` };
  }
  let threads = 0;
  for (const id of ids.map(Number)) {
    if (id === process.pid) continue;
    try {
      setPriority(id, nice);
      threads += 1;
    } catch (err) {
      // A thread that ended since the listing has nothing to lower; anything else is a reason to say so.
      if (errorCode(err) !== 'ESRCH') return { unavailable: `cannot lower thread ${id} to nice ${nice} (${errorCode(err)}); ${threads} lowered before it` };
    }
  }
  return { nice, threads };
}

/** For the listening line: `nice 5 (6 threads)`, or why not. */
export function describeHelperThreadPriority(result: HelperThreadPriority): string {
  return 'unavailable' in result ? `not lowered: ${result.unavailable}` : `nice ${result.nice} (${result.threads} threads)`;
}

/** A Node system error's code: `os.setPriority` puts it in `info.code`, `fs` on the error itself. */
function errorCode(err: unknown): string {
  const e = err as { code?: unknown; info?: { code?: unknown }; message?: unknown };
  if (typeof e.info?.code === 'string') return e.info.code;
  if (typeof e.code === 'string' && e.code !== 'ERR_SYSTEM_ERROR') return e.code;
  return String(e.message ?? err);
}
