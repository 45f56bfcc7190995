import type { Server, Socket } from 'node:net';
import { LinkedList, type Linked } from './linked-list.js';

/**
 * Samples in a row that saw no byte move, after which an open connection counts as idle (`OpenConnections.busy`):
 * with the lead sampling every 500 ms (`ACTIVITY_SAMPLE_EVERY` in `accept-steering.ts`), one that moved no byte
 * for 1 to 1.5 s.
 */
export const IDLE_AFTER_SAMPLES = 2;

/** An open connection, and what the activity samples saw of it. */
interface OpenSocket extends Linked<OpenSocket> {
  readonly socket: Socket;
  /** Bytes read and written at the last sample. */
  moved: number;
  /** Samples in a row that saw no byte move. */
  stillFor: number;
}

/**
 * The gateway's open TCP connections: for closing them at shutdown, and for the cluster's accept steering, which
 * asks how many are busy. Idle ones (held keep-alives, quiet tunnels) do not count as busy: three of them would
 * otherwise look like overlapping connections for as long as they stay open, and keep every worker accepting.
 */
export class OpenConnections {
  private readonly sockets = new LinkedList<OpenSocket>();
  private idle = 0;
  /** Handed to another worker and not closed yet (`leaving`). */
  private departing = 0;

  /**
   * `movedElsewhere`: bytes a connection moved outside its node:net socket (the native relay's, `tcp-relay.ts`), since
   * node:net's counters stop at the hand-over. Asked of the relay by the socket, not kept in a table here: a WeakMap
   * from socket to a counter kept every relayed socket alive through the young-generation collections (see
   * `BySlot` in tcp-relay.ts).
   */
  constructor(
    private readonly movedElsewhere: (socket: Socket) => number = () => 0,
    /** Told `busy` whenever it may have changed (a cluster worker publishes it, `worker-loads.ts`). */
    private readonly onBusy: (busy: number) => void = () => undefined,
  ) {}

  get size(): number {
    return this.sockets.size;
  }

  /**
   * Open connections less those idle at the last sample and those handed over. New ones are busy until a sample
   * sees them still.
   */
  get busy(): number {
    return this.sockets.size - this.idle - this.departing;
  }

  /**
   * `socket` was handed to another worker: it is not this process's load, though it stays open here until the
   * handle has left. Counted, a burst the lead hands over would look as if it stayed, and the lead would stop
   * handing over before the loads are even.
   */
  leaving(socket: Socket): void {
    this.departing += 1;
    socket.once('close', () => {
      this.departing -= 1;
    });
    this.onBusy(this.busy);
  }

  /** Keeps every connection `server` accepts (or is given, as `emit('connection')`) until its socket closes. */
  track(server: Server): void {
    server.on('connection', (socket: Socket) => {
      const open: OpenSocket = { socket, moved: 0, stillFor: 0, prev: null, next: null };
      this.sockets.push(open);
      this.onBusy(this.busy);
      socket.once('close', () => {
        this.sockets.remove(open);
        if (open.stillFor >= IDLE_AFTER_SAMPLES) this.idle -= 1;
        this.onBusy(this.busy);
      });
    });
  }

  /**
   * One activity sample: which connections moved no byte since the last one. A pass over every open connection,
   * so the lead takes one every 500 ms, not at each 100 ms steering sample.
   */
  sampleActivity(): void {
    let idle = 0;
    for (const open of this.sockets.toArray()) {
      const { socket } = open;
      // bytesWritten is undefined once the socket is destroyed (a close event is on its way).
      const moved = socket.bytesRead + (socket.bytesWritten ?? 0) + this.movedElsewhere(socket);
      open.stillFor = moved === open.moved ? open.stillFor + 1 : 0;
      open.moved = moved;
      if (open.stillFor >= IDLE_AFTER_SAMPLES) idle += 1;
    }
    this.idle = idle;
    this.onBusy(this.busy);
  }

  destroyAll(): void {
    for (const open of this.sockets.toArray()) open.socket.destroy();
  }
}
