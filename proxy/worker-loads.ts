/**
 * How many connections each gateway worker serves, in memory every process of the cluster maps
 * (`proxy/native/shared-cells.c`): each worker publishes its own, and reads the others' when it accepts a connection
 * while a burst is balanced (the lead's window, `LeadSteering.balancing`, which the lead publishes here too), to hand
 * it to the least loaded one if it has more than its share (`handOverByLoad` in `accept-steering.ts`).
 *
 * Why: with two workers accepting on one socket, the kernel wakes both and each takes connections until the queue
 * is empty, so a burst is split by which process the scheduler runs first. Measured here, 64 connections opened at
 * once: 42/24, 51/15, 33/33 in three trials; in `npm run bench -- http` a round split 18/46 served 19.8k requests/s
 * at p99 10.3 ms, one split 28/37 26.1k at p99 6.0 ms. A keep-alive connection stays with the worker that took it.
 *
 * The primary makes the memory and gives every worker its descriptor (`INHERITED_FD`); a replacement worker
 * gets the dead one's slot, which the primary clears first. Cells are read and written with Atomics; a worker
 * writes only its own slot, except `incoming` (below) and the lead the window's cell.
 */
import { closeSync } from 'node:fs';
import { loadNativeAddon } from './native-addon.js';

interface NativeSharedCells {
  create(bytes: number): number;
  map(fd: number, bytes: number): ArrayBuffer | string;
}

/** Per worker slot: whether a worker serves from it, its busy connections, and connections on their way to it. */
const LIVE = 0;
const BUSY = 1;
/**
 * Handed over to this worker and not yet adopted by it: added by the sender, taken off by the receiving worker when it
 * adopts the connection (or by the primary when it cannot pass it on).
 */
const INCOMING = 2;
const CELLS_PER_SLOT = 3;
/** After the slots, one cell for the whole cluster: whether the lead has the workers balance what they accept. */
const cellsFor = (slots: number): number => slots * CELLS_PER_SLOT + 1;

/** The descriptor number a worker finds the memory at: stdin, stdout, stderr, then the IPC channel, then this. */
export const INHERITED_FD = 4;
/** The environment variables that tell a worker its slot and the number of slots. */
export const SLOT_ENV = 'CLAWBOX_WORKER_SLOT';
export const SLOTS_ENV = 'CLAWBOX_WORKER_SLOTS';

export class WorkerLoads {
  private readonly cells: Int32Array;

  private constructor(
    memory: ArrayBuffer,
    readonly slots: number,
  ) {
    this.cells = new Int32Array(memory, 0, cellsFor(slots));
  }

  /** In the primary: the memory for `slots` workers and its descriptor, or why there is none. */
  static create(slots: number): { readonly loads: WorkerLoads; readonly fd: number } | string {
    const native = loadNativeAddon<NativeSharedCells>('shared-cells');
    if (typeof native === 'string') return native;
    const bytes = cellsFor(slots) * 4;
    const fd = native.create(bytes);
    if (fd < 0) return `memfd_create failed (errno ${-fd})`;
    const memory = native.map(fd, bytes);
    if (typeof memory === 'string') {
      closeSync(fd);
      return memory;
    }
    return { loads: new WorkerLoads(memory, slots), fd };
  }

  /** In a worker: the primary's memory at `INHERITED_FD` and this worker's slot, or why not (then it does not balance). */
  static inherited(env: NodeJS.ProcessEnv = process.env): { readonly loads: WorkerLoads; readonly slot: number } | string {
    const slots = Number(env[SLOTS_ENV]);
    const slot = Number(env[SLOT_ENV]);
    if (!Number.isInteger(slots) || !Number.isInteger(slot) || slot < 0 || slot >= slots) return 'the primary gave no shared memory';
    const native = loadNativeAddon<NativeSharedCells>('shared-cells');
    if (typeof native === 'string') return native;
    const memory = native.map(INHERITED_FD, cellsFor(slots) * 4);
    if (typeof memory === 'string') return memory;
    // The mapping keeps the memory; the descriptor is not needed again.
    closeSync(INHERITED_FD);
    return { loads: new WorkerLoads(memory, slots), slot };
  }

  setLive(slot: number, live: boolean): void {
    Atomics.store(this.cells, slot * CELLS_PER_SLOT + LIVE, live ? 1 : 0);
  }

  publishBusy(slot: number, busy: number): void {
    Atomics.store(this.cells, slot * CELLS_PER_SLOT + BUSY, busy);
  }

  addIncoming(slot: number, delta: number): void {
    Atomics.add(this.cells, slot * CELLS_PER_SLOT + INCOMING, delta);
  }

  /** Set by the lead while it wants a burst balanced (`LeadSteering.balancing`): the standbys balance too. */
  set balancing(on: boolean) {
    Atomics.store(this.cells, this.slots * CELLS_PER_SLOT, on ? 1 : 0);
  }

  get balancing(): boolean {
    return Atomics.load(this.cells, this.slots * CELLS_PER_SLOT) === 1;
  }

  /** Connections handed to `slot` that have not reached it yet: part of its load as the others see it. */
  incoming(slot: number): number {
    return Atomics.load(this.cells, slot * CELLS_PER_SLOT + INCOMING);
  }

  /** A dead worker's slot, before its replacement takes it. */
  clear(slot: number): void {
    for (let cell = 0; cell < CELLS_PER_SLOT; cell++) Atomics.store(this.cells, slot * CELLS_PER_SLOT + cell, 0);
  }

  /** The live worker other than `self` with the fewest connections (busy and on their way), or null if none. */
  leastLoadedOther(self: number): { readonly slot: number; readonly load: number } | null {
    let best = -1;
    let bestLoad = 0;
    for (let slot = 0; slot < this.slots; slot++) {
      const at = slot * CELLS_PER_SLOT;
      if (slot === self || Atomics.load(this.cells, at + LIVE) === 0) continue;
      const load = Atomics.load(this.cells, at + BUSY) + Atomics.load(this.cells, at + INCOMING);
      if (best < 0 || load < bestLoad) {
        best = slot;
        bestLoad = load;
      }
    }
    return best < 0 ? null : { slot: best, load: bestLoad };
  }
}
