import { connect, type Socket } from 'node:net';
import type { ControlReply, ControlRequest } from '../proxy/control-server.js';
import type { SandboxRegistration, SandboxTraffic } from '../proxy/sandbox-registry.js';

type Pending = { resolve: (reply: ControlReply) => void; reject: (err: Error) => void; timer: NodeJS.Timeout };
type RequestBody = ControlRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/** The runner's end of the gateway's control socket (see `proxy/control-server.ts`). */
export class GatewayControl {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private buffered = '';
  /** Set once the connection is gone: later calls fail at once instead of waiting out their time-out. */
  private lost: Error | null = null;

  private constructor(private readonly socket: Socket, private readonly timeoutMs: number) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => {
      this.lost ??= err;
      this.failAll(err);
    });
    socket.on('close', () => {
      this.lost ??= new Error('the gateway closed its control connection (it stopped or was restarted)');
      this.failAll(this.lost);
    });
  }

  static open(path: string, timeoutMs = 5000): Promise<GatewayControl> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        // An idle control connection must not keep a caller's process alive; it is ref'd while a request waits.
        socket.unref();
        resolve(new GatewayControl(socket, timeoutMs));
      });
      socket.once('error', reject);
    });
  }

  async register(registration: SandboxRegistration): Promise<void> {
    await this.call({ op: 'register', sandbox: registration });
  }

  async unregister(client: string): Promise<SandboxTraffic> {
    const reply = await this.call({ op: 'unregister', client });
    return reply.traffic ?? { allowed: 0, denied: 0, bytes_up: 0, bytes_down: 0, not_allowed: [] };
  }

  async setHostAddresses(addresses: readonly string[]): Promise<void> {
    await this.call({ op: 'host-addresses', addresses });
  }

  async ping(): Promise<void> {
    await this.call({ op: 'ping' });
  }

  close(): void {
    this.lost ??= new Error('the control connection was closed by this process');
    this.socket.end();
  }

  private call(body: RequestBody): Promise<Extract<ControlReply, { ok: true }>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.lost !== null) {
        reject(new Error(`gateway did not take ${body.op}: ${this.lost.message}`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        if (this.pending.size === 0) this.socket.unref();
        reject(new Error(`gateway did not answer ${body.op} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.socket.ref();
      this.pending.set(id, {
        resolve: (reply) => (reply.ok ? resolve(reply) : reject(new Error(`gateway refused ${body.op}: ${reply.error}`))),
        reject,
        timer,
      });
      this.socket.write(`${JSON.stringify({ id, ...body })}\n`);
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
      if (this.pending.size === 0) this.socket.unref();
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
