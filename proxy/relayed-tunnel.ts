import type { Socket } from 'node:net';
import { clock, type Watched } from './idle-sweep.js';
import { FirstBytesGate, type FirstBytesVerdict } from './sni-gate.js';
import type { RelayedBytes, TcpRelay } from './tcp-relay.js';
import { recordClose, recordSniDeny, type TunnelContext } from './tunnel.js';
import type { Tunnel } from './types.js';

/**
 * A tunnel whose upstream the native relay dialed (`tcp-relay.ts`): the same contract as `createTunnel`'s (see
 * `Tunnel.pipe`), with the bytes moved by the native part. JavaScript reads only the client's first bytes, for the
 * SNI check; downloads flow from the start (a server that speaks first is heard at once).
 * The idle limit: the sweep's entry is stamped by those first bytes, and on expiry asks the native part how long
 * the tunnel has really been idle, watching it again if a byte moved meanwhile.
 */
export function createRelayedTunnel(relay: TcpRelay, id: number, ctx: TunnelContext): Tunnel {
  let closed = false;
  let client: Socket | null = null;
  let activity: Watched | null = null;

  const end = (bytes: RelayedBytes, error: string | undefined): void => {
    if (activity !== null) ctx.idle.unwatch(activity);
    client?.destroy();
    recordClose(ctx, bytes.up, bytes.down, error);
  };
  const close = (error?: string): void => {
    if (closed) return;
    closed = true;
    end(relay.abort(id), error);
  };
  // The native part ended it (and closed its descriptors): an upstream FIN passed on, or a socket's error.
  const ended = (bytes: RelayedBytes, error: string | undefined): void => {
    if (closed) return;
    closed = true;
    end(bytes, error);
  };

  return {
    close,
    release: () => null, // a relayed tunnel is never an HTTP exchange's
    localEndpoint: () => relay.local(id),
    pipe(socket: Socket, head?: Buffer): void {
      if (closed) {
        socket.destroy();
        return;
      }
      client = socket;
      // The client socket is node:net's until the end: its close (by whoever) ends the tunnel, and closes the native
      // part's duplicate of its descriptor, without which the connection would stay open.
      socket.on('error', (err: NodeJS.ErrnoException) => close(err.code ?? err.message));
      socket.on('close', () => close());
      const watched: Watched = {
        lastActive: 0,
        prev: null,
        next: null,
        expire: () => {
          const idleMs = relay.idleMs(id);
          if (closed || idleMs < 0 || idleMs >= ctx.idle.limitMs) {
            close('idle timeout');
            return;
          }
          ctx.idle.watch(watched);
          watched.lastActive = clock.now - idleMs;
        },
      };
      activity = watched;
      ctx.idle.watch(watched);
      const failed = relay.start(id, socket, ended);
      if (failed !== null) {
        close(failed);
        return;
      }
      let gate: FirstBytesGate | null = new FirstBytesGate(ctx.sniHost);
      const judged = (verdict: FirstBytesVerdict): void => {
        gate = null;
        socket.removeListener('data', onData);
        socket.removeListener('end', onEnd);
        if (!verdict.ok) {
          recordSniDeny(ctx, verdict.reason);
          close(verdict.reason);
          return;
        }
        const error = relay.pass(id, socket, verdict.head);
        if (error !== null) close(error);
      };
      const onData = (chunk: Buffer): void => {
        watched.lastActive = clock.now;
        const verdict = gate?.feed(chunk) ?? null;
        if (verdict !== null) judged(verdict);
      };
      // The client half-closed before a verdict. Its FIN stays readable: the native part passes it on after `head`.
      const onEnd = (): void => {
        if (gate !== null) judged(gate.end());
      };
      socket.on('data', onData);
      socket.on('end', onEnd);
      if (head !== undefined && head.length > 0) {
        const verdict = gate.feed(head);
        if (verdict !== null) {
          judged(verdict);
          return;
        }
      }
      socket.resume(); // the CONNECT and SOCKS5 front ends hand the socket over paused
    },
  };
}
