import { connect, type OnReadOpts, type Socket } from 'node:net';
import type { AuditSink, ConnectionKey, DecisionEvent } from '../src/audit/types.js';
import { hostToString } from '../src/net/host.js';
import type { IpAddress } from '../src/net/types.js';
import type { Decision, PolicyTable } from '../src/policy/types.js';
import { nextConnId } from './conn-id.js';
import { upstreamFailureOf } from './errors.js';
import { IdleSweep, type Watched } from './idle-sweep.js';
import { createRelayedTunnel } from './relayed-tunnel.js';
import type { TcpRelay } from './tcp-relay.js';
import { createTunnel, recordClose, UpstreamRelay, type TunnelContext } from './tunnel.js';
import type { Connector, OpenRequest, OpenResult, Resolver } from './types.js';

export interface ConnectorOptions {
  readonly policies: PolicyTable;
  readonly resolver: Resolver;
  readonly audit: AuditSink;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Dials and relays CONNECT and SOCKS5 tunnels natively; null: through node:net. */
  readonly tcpRelay: TcpRelay | null;
}

/**
 * Decide, resolve, re-check, dial: the one path every TCP channel (CONNECT, SOCKS5, absolute-URI HTTP) takes.
 * The address dialed is always one the policy checked; there is no second lookup between check and connect, so
 * DNS rebinding cannot swap in an internal address.
 * The path is written with callbacks (`openThen`): an audit line that cannot be written is an outcome here (the
 * connection is refused), not a rejected promise a caller could leave uncaught (one did, and crashed the gateway),
 * and the per-connection path makes no promise per step. `open` is the same path as a promise.
 */
export function createConnector(options: ConnectorOptions): Connector {
  const { policies, resolver, audit, tcpRelay } = options;
  const connecting = new IdleSweep(options.connectTimeoutMs);
  const idle = new IdleSweep(options.idleTimeoutMs);

  const openThen = (req: OpenRequest, done: (result: OpenResult) => void): void => {
    const base: ConnectionKey = {
      conn: nextConnId(),
      channel: req.channel,
      client: req.client,
      host: hostToString(req.host),
      port: req.port,
    };
    // The decision line is in the trail before the act (the dial, or the refusal sent to the client): `then` runs
    // after the batch holding it was written. A line that could not be written stops the connection (fail closed).
    const recordThen = (decision: Decision | UpstreamError, dialed: string | undefined, then: () => void): void => {
      const verdict = decision.allow === 'error' ? 'error' : decision.allow ? 'allow' : 'deny';
      const { conn, channel, client, host, port } = base;
      // Literals of one shape per branch, not spreads: a spread builds the object a property at a time, in V8's
      // slow path, on every connection. Same fields, same order as before.
      const event: DecisionEvent =
        dialed === undefined
          ? { event: 'decision', conn, channel, client, host, port, decision: verdict, rule: decision.rule, reason: decision.reason }
          : { event: 'decision', conn, channel, client, host, port, dialed, decision: verdict, rule: decision.rule, reason: decision.reason };
      audit.recordThen(event, (err) => {
        if (err === null) then();
        else done({ ok: false, kind: 'audit', message: `audit trail write failed (${(err as NodeJS.ErrnoException).code ?? err.message}); refused` });
      });
    };

    const policy = policies.forClient(req.client);
    const first = policy.decide(req.host, req.port);
    if (!first.allow) {
      recordThen(first, undefined, () => done({ ok: false, kind: 'deny', decision: first }));
      return;
    }
    const dialAllowed = (decision: Decision, dial: IpAddress): void => {
      recordThen(decision, dial.text, () => {
        const context: TunnelContext = {
          fields: base,
          dialed: dial.text,
          sniHost: req.host.kind === 'name' ? req.host.name : null,
          audit,
          idle,
          startedAt: performance.now(),
        };
        const kept = req.reuse?.(dial.text, req.port);
        if (kept) {
          done({ ok: true, upstream: kept, tunnel: createTunnel(kept, context), dialed: dial.text });
          return;
        }
        // Absolute-URI HTTP hands the upstream to node:http, which reads it as a stream: a node:net socket there. A
        // link-local IPv6 address's zone is node:net's to resolve.
        if (tcpRelay !== null && req.channel !== 'http' && !dial.text.includes('%')) {
          dialRelayed(tcpRelay, dial, req.port, connecting, (code, id) => {
            if (code === null) done({ ok: true, upstream: null, tunnel: createRelayedTunnel(tcpRelay, id, context), dialed: dial.text });
            else failedDial(context, req.port, code, done);
          });
          return;
        }
        const relay = req.channel === 'http' ? undefined : new UpstreamRelay();
        dialChecked(dial, req.port, connecting, relay?.onread, (err, upstream) => {
          if (upstream !== null) done({ ok: true, upstream, tunnel: createTunnel(upstream, context, relay), dialed: dial.text });
          else failedDial(context, req.port, err?.code, done);
        });
      });
    };
    if (req.host.kind === 'ip') {
      dialAllowed(first, req.host.ip);
      return;
    }
    const name = req.host.name;
    resolver.resolve(name).then(
      ({ addresses }) => {
        const resolved = policy.decideResolved(name, req.port, addresses);
        if (resolved.allow) dialAllowed(resolved, resolved.dial);
        else recordThen(resolved, undefined, () => done({ ok: false, kind: 'deny', decision: resolved }));
      },
      (err: unknown) => {
        const code = (err as { code?: string }).code;
        const reason = `cannot resolve ${name}: ${code ?? 'error'}`;
        recordThen({ allow: 'error', rule: 'upstream', reason }, undefined, () =>
          done({ ok: false, kind: 'upstream', failure: upstreamFailureOf(code), message: reason }),
        );
      },
    );
  };

  const open = (req: OpenRequest): Promise<OpenResult> => new Promise((resolve) => openThen(req, resolve));
  // The 'http' overload holds: only CONNECT and SOCKS5 tunnels are dialed by the native relay (see dialAllowed).
  return { openThen, open: open as Connector['open'] };
}

/** A dial that failed: its close line (no bytes), then the failure for the front to answer. */
function failedDial(context: TunnelContext, port: number, code: string | undefined, done: (result: OpenResult) => void): void {
  recordClose(context, 0, 0, code ?? 'connect failed');
  done({ ok: false, kind: 'upstream', failure: upstreamFailureOf(code), message: `cannot connect to ${context.fields.host}:${port}: ${code ?? 'error'}` });
}

interface UpstreamError {
  readonly allow: 'error';
  readonly rule: 'upstream';
  readonly reason: string;
}

/**
 * Connects to the checked address; `done` gets the connected socket, or the error (a time-out, from the
 * `connecting` sweep, is ETIMEDOUT).
 */
function dialChecked(
  ip: IpAddress,
  port: number,
  connecting: IdleSweep,
  onread: OnReadOpts | undefined,
  done: (err: NodeJS.ErrnoException | null, socket: Socket | null) => void,
): void {
  // Frozen, and no spread: node:net's Socket constructor copies its options with a spread, which from an options
  // literal promotes ~500 bytes per socket and from a frozen one nothing (`frozen-accept.ts`).
  const socket = connect(
    Object.freeze(
      onread
        ? { host: ip.text, port, family: ip.family, noDelay: true, onread }
        : { host: ip.text, port, family: ip.family, noDelay: true },
    ),
  );
  const pending: Watched = {
    lastActive: 0,
    prev: null,
    next: null,
    expire: () => {
      const err: NodeJS.ErrnoException = new Error('connect timed out');
      err.code = 'ETIMEDOUT';
      socket.destroy(err);
    },
  };
  connecting.watch(pending);
  const onError = (err: NodeJS.ErrnoException): void => {
    connecting.unwatch(pending);
    socket.removeListener('connect', onConnect);
    socket.destroy();
    done(err, null);
  };
  const onConnect = (): void => {
    connecting.unwatch(pending);
    socket.removeListener('error', onError);
    done(null, socket);
  };
  socket.once('connect', onConnect);
  socket.once('error', onError);
}

/** `dialChecked` through the native relay: `done` gets null and the relay's id, or the error code. */
function dialRelayed(
  relay: TcpRelay,
  ip: IpAddress,
  port: number,
  connecting: IdleSweep,
  done: (code: string | null, id: number) => void,
): void {
  let id = 0;
  const pending: Watched = {
    lastActive: 0,
    prev: null,
    next: null,
    expire: () => {
      relay.abort(id);
      done('ETIMEDOUT', id);
    },
  };
  const dialed = relay.dial(ip, port, (code) => {
    connecting.unwatch(pending);
    done(code, id);
  });
  if (typeof dialed === 'string') {
    // Failed at once (no descriptor left, no route): reported a turn later, as a refused connect would be.
    setImmediate(done, dialed, 0);
    return;
  }
  id = dialed;
  connecting.watch(pending);
}
