import { connect, type Socket } from 'node:net';
import type { ControlReply, ControlRequest } from '../proxy/control-server.js';
import type { SandboxRegistration, SandboxTraffic } from '../proxy/sandbox-registry.js';

type Pending = { resolve: (reply: ControlReply) => void; reject: (err: Error) => void; timer: NodeJS.Timeout };
type RequestBody = ControlRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/**
 * How long a lost control connection is tried again by default: a gateway restarted by its restart policy is back
 * in about a second.
 */
const RECONNECT_WITHIN_MS = 30_000;
const RECONNECT_EVERY_MS = 100;

/**
 * The runner's end of the gateway's control socket (see `proxy/control-server.ts`).
 *
 * It remembers what it told the gateway (the sandboxes registered and not yet unregistered, the host addresses).
 * When the connection closes under it (the gateway crashed and its restart policy started it again, or someone ran
 * `docker restart`), it connects again and tells the new gateway process all of it, so the runs in flight go on.
 * Until then the new process knows none of them and refuses their traffic: the gap fails closed. `restarts`
 * counts the comebacks, for the runs to report. A gateway that is not back within 30 s is given up: every call
 * then fails at once.
 */
export class GatewayControl {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private buffered = '';
  private socket: Socket | null;
  /** Set once the connection is given up (or closed by this process): later calls fail at once. */
  private lost: Error | null = null;
  /** While the connection is being made again; calls wait for it. */
  private reconnecting: Promise<void> | null = null;
  private readonly registered = new Map<string, SandboxRegistration>();
  private hostAddresses: readonly string[] | null = null;
  /** close() was called while sandboxes were registered: the connection ends after the last one's unregister. */
  private closing = false;
  /** How many times the gateway came back and was told this process's registrations again. */
  restarts = 0;

  private constructor(
    private readonly path: string,
    socket: Socket,
    private readonly timeoutMs: number,
    private readonly reconnectWithinMs: number,
  ) {
    this.socket = socket;
    this.attach(socket);
  }

  /** `timeoutMs` bounds each request; `reconnectWithinMs` how long a lost connection is tried again. */
  static async open(path: string, options: { readonly timeoutMs?: number; readonly reconnectWithinMs?: number } = {}): Promise<GatewayControl> {
    return new GatewayControl(path, await connectTo(path), options.timeoutMs ?? 5000, options.reconnectWithinMs ?? RECONNECT_WITHIN_MS);
  }

  /** Connected now, neither given up nor reconnecting. */
  get connected(): boolean {
    return this.socket !== null && this.lost === null;
  }

  async register(registration: SandboxRegistration): Promise<void> {
    await this.callAcrossRestart({ op: 'register', sandbox: registration });
    this.registered.set(registration.client, registration);
  }

  /**
   * The gateway's totals for the sandbox. After a restart they count from the registration told again; an
   * unregister cut off by the restart itself gets the new process's answer for a sandbox it never had: zeros.
   */
  async unregister(client: string): Promise<SandboxTraffic> {
    // Forgotten first: a registration whose unregister failed must not be told to a gateway that comes back.
    this.registered.delete(client);
    try {
      const reply = await this.callAcrossRestart({ op: 'unregister', client });
      return reply.traffic ?? { allowed: 0, denied: 0, bytes_up: 0, bytes_down: 0, not_allowed: [] };
    } finally {
      if (this.closing && this.registered.size === 0) this.shutDown();
    }
  }

  async setHostAddresses(addresses: readonly string[]): Promise<void> {
    await this.call({ op: 'host-addresses', addresses });
    this.hostAddresses = addresses;
  }

  async ping(): Promise<void> {
    await this.call({ op: 'ping' });
  }

  /**
   * Ends the connection, once the sandboxes registered through it are unregistered: a caller that replaces a
   * checked environment (every 30 s) must not cut off the runs still using the old one, nor their recovery.
   */
  close(): void {
    this.closing = true;
    if (this.registered.size === 0) this.shutDown();
  }

  private shutDown(): void {
    this.lost ??= new Error('the control connection was closed by this process');
    this.socket?.end();
  }

  private attach(socket: Socket): void {
    socket.setEncoding('utf8');
    // An idle control connection must not keep a caller's process alive; it is ref'd while a request waits.
    socket.unref();
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => undefined); // 'close' follows, and handles it
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.buffered = '';
      const err = new CutOff('the gateway closed its control connection (it stopped or was restarted)');
      this.failAll(err);
      if (this.lost === null) this.reconnecting = this.reconnect(err);
    });
  }

  /** Connects again and tells the gateway everything it held for this process; gives up after reconnectWithinMs. */
  private async reconnect(cause: Error): Promise<void> {
    const deadline = Date.now() + this.reconnectWithinMs;
    while (this.lost === null) {
      const socket = await connectTo(this.path).catch(() => null);
      if (socket !== null && this.lost !== null) socket.destroy(); // closed by this process meanwhile
      else if (socket !== null) {
        this.socket = socket;
        this.attach(socket);
        try {
          if (this.hostAddresses !== null) await this.send({ op: 'host-addresses', addresses: this.hostAddresses });
          for (const registration of this.registered.values()) await this.send({ op: 'register', sandbox: registration });
          this.restarts += 1;
          this.reconnecting = null;
          return;
        } catch (err) {
          // Closed again while being told (another restart): that close started the next attempt.
          if (this.socket !== socket) return;
          // A registration refused: the gateway that came back is not the one that took it. Fail closed.
          this.lost = new Error(`${cause.message}; it came back but refused this process's sandboxes: ${(err as Error).message}`);
          socket.destroy();
          break;
        }
      }
      if (Date.now() >= deadline) {
        this.lost ??= new Error(`${cause.message} and was not back within ${this.reconnectWithinMs / 1000} s`);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_EVERY_MS).unref());
    }
    this.reconnecting = null;
  }

  /**
   * A request whose connection closed before its answer (the gateway restarted under it) is sent once more, to the
   * gateway that comes back. Both kinds are safe to repeat: a register (its tool has not started yet) reaches the
   * new process, and an unregister finds nothing there to remove.
   */
  private async callAcrossRestart(body: RequestBody): Promise<Extract<ControlReply, { ok: true }>> {
    try {
      return await this.call(body);
    } catch (err) {
      if (!(err instanceof CutOff)) throw err;
      return this.call(body);
    }
  }

  /** Waits while the connection is being made again (a second restart starts a second attempt), then sends. */
  private async call(body: RequestBody): Promise<Extract<ControlReply, { ok: true }>> {
    while (this.reconnecting !== null) await this.reconnecting;
    return this.send(body);
  }

  private send(body: RequestBody): Promise<Extract<ControlReply, { ok: true }>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const socket = this.socket;
      if (this.lost !== null || socket === null) {
        reject(new Error(`gateway did not take ${body.op}: ${(this.lost ?? new Error('the control connection is closed')).message}`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        if (this.pending.size === 0) this.socket?.unref();
        reject(new Error(`gateway did not answer ${body.op} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      socket.ref();
      this.pending.set(id, {
        resolve: (reply) => (reply.ok ? resolve(reply) : reject(new Error(`gateway refused ${body.op}: ${reply.error}`))),
        reject,
        timer,
      });
      socket.write(`${JSON.stringify({ id, ...body })}\n`);
    });
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf('\n')) >= 0) {
      const reply = JSON.parse(this.buffered.slice(0, newline)) as ControlReply;
      this.buffered = this.buffered.slice(newline + 1);
      const waiting = this.pending.get(reply.id);
      if (!waiting) continue;
      this.pending.delete(reply.id);
      clearTimeout(waiting.timer);
      if (this.pending.size === 0) this.socket?.unref();
      waiting.resolve(reply);
    }
  }

  private failAll(err: Error): void {
    for (const [id, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      waiting.reject(err);
      this.pending.delete(id);
    }
  }
}

/** The connection closed before the request's answer came. */
class CutOff extends Error {}

function connectTo(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
