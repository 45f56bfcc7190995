import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { SandboxRegistration, SandboxTraffic } from './sandbox-registry.js';

/**
 * The runner's private line to the gateway: a Unix socket (mode 0600, on a host directory mounted only into the
 * gateway container), one JSON object per line each way. Sandboxes never see it.
 *
 *   → {"id":1,"op":"register","sandbox":{...SandboxRegistration}}   ← {"id":1,"ok":true}
 *   → {"id":2,"op":"unregister","client":"10.213.0.7"}              ← {"id":2,"ok":true,"traffic":{...}}
 *   → {"id":3,"op":"host-addresses","addresses":["192.0.2.7",...]}  ← {"id":3,"ok":true}
 *   → {"id":4,"op":"ping"}                                          ← {"id":4,"ok":true}
 */
export interface ControlHandlers {
  register(registration: SandboxRegistration): void | Promise<void>;
  unregister(client: string): SandboxTraffic | Promise<SandboxTraffic>;
  setHostAddresses(addresses: readonly string[]): void | Promise<void>;
}

export type ControlRequest =
  | { readonly id: number; readonly op: 'register'; readonly sandbox: SandboxRegistration }
  | { readonly id: number; readonly op: 'unregister'; readonly client: string }
  | { readonly id: number; readonly op: 'host-addresses'; readonly addresses: readonly string[] }
  | { readonly id: number; readonly op: 'ping' };

export type ControlReply =
  | { readonly id: number; readonly ok: true; readonly traffic?: SandboxTraffic }
  | { readonly id: number; readonly ok: false; readonly error: string };

const MAX_LINE = 64 * 1024;

/**
 * `sandbox.gateway.exit_when_unused`: `onUnused` is called once no runner has been connected for `afterMs`. A run
 * holds its runner's connection from its environment check to its end, and a resident runner or a library caller
 * holds one while it lives, so no connection means no run: the gateway can go, and the next run starts it again.
 */
export interface UnusedExit {
  readonly afterMs: number;
  readonly onUnused: () => void;
}

/** The exit to arm, if any: a limit above 0 and someone to tell. */
export function unusedExit(afterMs: number | undefined, onUnused: (() => void) | undefined): UnusedExit | undefined {
  return afterMs !== undefined && afterMs > 0 && onUnused ? { afterMs, onUnused } : undefined;
}

export function createControlServer(path: string, handlers: ControlHandlers, log: Logger, unused?: UnusedExit): Promise<Server> {
  rmSync(path, { force: true });
  let connected = 0;
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  const watch = (): void => {
    if (!unused || closed) return;
    if (timer !== null) clearTimeout(timer);
    timer = connected > 0 ? null : setTimeout(unused.onUnused, unused.afterMs);
    // The gateway's own listeners keep it alive; this timer alone must not.
    timer?.unref();
  };
  const server = createServer((socket) => {
    connected += 1;
    watch();
    socket.once('close', () => {
      connected -= 1;
      watch();
    });
    serve(socket, handlers, log);
  });
  server.once('close', () => {
    closed = true;
    if (timer !== null) clearTimeout(timer);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      chmodSync(path, 0o600);
      server.removeListener('error', reject);
      watch();
      resolve(server);
    });
  });
}

function serve(socket: Socket, handlers: ControlHandlers, log: Logger): void {
  socket.on('error', () => socket.destroy());
  let buffered = '';
  // Replies leave in request order even when a handler is asynchronous (the cluster primary asks its workers).
  let queue: Promise<void> = Promise.resolve();
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    if (buffered.length > MAX_LINE && !buffered.includes('\n')) {
      socket.end(`${JSON.stringify({ id: 0, ok: false, error: `request line longer than ${MAX_LINE} bytes` })}\n`);
      return;
    }
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      queue = queue.then(async () => {
        const reply = await answer(line, handlers, log);
        if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
      });
    }
  });
}

async function answer(line: string, handlers: ControlHandlers, log: Logger): Promise<ControlReply> {
  let request: ControlRequest;
  try {
    request = JSON.parse(line) as ControlRequest;
  } catch {
    return { id: 0, ok: false, error: 'request is not JSON' };
  }
  const id = typeof request.id === 'number' ? request.id : 0;
  try {
    switch (request.op) {
      case 'ping':
        return { id, ok: true };
      case 'register':
        await handlers.register(request.sandbox);
        log.debug({ client: request.sandbox.client, sandbox: request.sandbox.sandbox }, 'sandbox registered');
        return { id, ok: true };
      case 'unregister':
        return { id, ok: true, traffic: await handlers.unregister(request.client) };
      case 'host-addresses':
        if (!Array.isArray(request.addresses)) return { id, ok: false, error: 'addresses must be a list' };
        await handlers.setHostAddresses(request.addresses);
        return { id, ok: true };
      default:
        return { id, ok: false, error: `unknown op ${JSON.stringify((request as { op?: unknown }).op)}` };
    }
  } catch (err) {
    return { id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}
