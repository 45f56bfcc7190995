import type { Socket } from 'node:net';
import type { AuditSink, ConnectionFields } from '../src/audit/types.js';
import { checkFirstBytes } from './sni-gate.js';
import type { Tunnel } from './types.js';

export interface TunnelContext {
  readonly fields: ConnectionFields;
  readonly dialed: string;
  /** The name the policy allowed; a ClientHello must not name another. Null for IP-literal targets. */
  readonly sniHost: string | null;
  readonly audit: AuditSink;
  readonly idleTimeoutMs: number;
  readonly startedAt: number;
}

/**
 * Owns an upstream socket from the moment it connects until the close audit line is written. Byte counts come
 * from the upstream socket's own counters, so the data path does no accounting of its own.
 */
export function createTunnel(upstream: Socket | null, ctx: TunnelContext): Tunnel {
  let closed = false;
  let client: Socket | null = null;

  const close = (error?: string): void => {
    if (closed) return;
    closed = true;
    upstream?.destroy();
    client?.destroy();
    ctx.audit.write({
      event: 'close',
      ...ctx.fields,
      dialed: ctx.dialed,
      bytes_up: upstream?.bytesWritten ?? 0,
      bytes_down: upstream?.bytesRead ?? 0,
      duration_ms: Math.round((performance.now() - ctx.startedAt) * 1000) / 1000,
      ...(error === undefined ? {} : { error }),
    });
  };

  if (upstream) {
    upstream.on('error', (err: NodeJS.ErrnoException) => close(err.code ?? err.message));
    // Until a client is attached the upstream's end is the tunnel's end; afterwards the client's close is, so
    // that bytes still queued for the client are delivered (half-close) instead of discarded.
    upstream.on('close', () => {
      if (!client) close();
    });
    upstream.setTimeout(ctx.idleTimeoutMs, () => close('idle timeout'));
  }

  return {
    close,
    pipe(socket: Socket, head?: Buffer): void {
      if (!upstream || closed) {
        socket.destroy();
        return;
      }
      client = socket;
      socket.on('error', (err: NodeJS.ErrnoException) => close(err.code ?? err.message));
      socket.on('close', () => close());
      socket.setTimeout(ctx.idleTimeoutMs, () => close('idle timeout'));
      upstream.pipe(socket);
      checkFirstBytes(socket, head ?? Buffer.alloc(0), ctx.sniHost, (verdict) => {
        if (closed) return;
        if (!verdict.ok) {
          ctx.audit.write({
            event: 'decision',
            ...ctx.fields,
            dialed: ctx.dialed,
            decision: 'deny',
            rule: 'builtin.sni-mismatch',
            reason: verdict.reason,
          });
          close(verdict.reason);
          return;
        }
        if (verdict.head.length > 0) upstream.write(verdict.head);
        socket.pipe(upstream);
      });
    },
  };
}
