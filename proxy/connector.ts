import { connect, type OnReadOpts, type Socket } from 'node:net';
import type { AuditSink, ConnectionFields, DecisionEvent } from '../src/audit/types.js';
import { hostToString } from '../src/net/host.js';
import type { IpAddress } from '../src/net/types.js';
import type { Decision, PolicyTable } from '../src/policy/types.js';
import { nextConnId } from './conn-id.js';
import { upstreamFailureOf } from './errors.js';
import { createTunnel, UpstreamRelay, type TunnelContext } from './tunnel.js';
import type { Connector, OpenRequest, OpenResult, Resolver } from './types.js';

export interface ConnectorOptions {
  readonly policies: PolicyTable;
  readonly resolver: Resolver;
  readonly audit: AuditSink;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
}

/**
 * Decide, resolve, re-check, dial: the one path every TCP channel (CONNECT, SOCKS5, absolute-URI HTTP) takes.
 * The address dialed is always one the policy checked; there is no second lookup between check and connect, so
 * DNS rebinding cannot swap in an internal address.
 */
export function createConnector(options: ConnectorOptions): Connector {
  const { policies, resolver, audit } = options;

  return {
    async open(req: OpenRequest): Promise<OpenResult> {
      const conn = nextConnId();
      const base: ConnectionFields = {
        conn,
        channel: req.channel,
        client: req.client,
        host: hostToString(req.host),
        port: req.port,
      };
      // Batched with the turn's other lines; every caller awaits it, so the line is in the trail before the act
      // (the dial, or the refusal sent to the client).
      const record = (decision: Decision | { allow: 'error'; rule: 'upstream'; reason: string }, dialed?: string): Promise<void> => {
        const event: DecisionEvent = {
          event: 'decision',
          ...base,
          ...(dialed === undefined ? {} : { dialed }),
          decision: decision.allow === 'error' ? 'error' : decision.allow ? 'allow' : 'deny',
          rule: decision.rule,
          reason: decision.reason,
        };
        return audit.record(event);
      };

      const policy = policies.forClient(req.client);
      const first = policy.decide(req.host, req.port);
      if (!first.allow) {
        await record(first);
        return { ok: false, kind: 'deny', decision: first };
      }

      let dial: IpAddress;
      let decision: Decision = first;
      if (req.host.kind === 'ip') {
        dial = req.host.ip;
      } else {
        let addresses: readonly IpAddress[];
        try {
          addresses = (await resolver.resolve(req.host.name)).addresses;
        } catch (err) {
          const code = (err as { code?: string }).code;
          const failure = upstreamFailureOf(code);
          const reason = `cannot resolve ${req.host.name}: ${code ?? 'error'}`;
          await record({ allow: 'error', rule: 'upstream', reason });
          return { ok: false, kind: 'upstream', failure, message: reason };
        }
        const resolved = policy.decideResolved(req.host.name, req.port, addresses);
        if (!resolved.allow) {
          await record(resolved);
          return { ok: false, kind: 'deny', decision: resolved };
        }
        dial = resolved.dial;
        decision = resolved;
      }
      await record(decision, dial.text);

      const context: TunnelContext = {
        fields: base,
        dialed: dial.text,
        sniHost: req.host.kind === 'name' ? req.host.name : null,
        audit,
        idleTimeoutMs: options.idleTimeoutMs,
        startedAt: performance.now(),
      };
      const kept = req.reuse?.(dial.text, req.port);
      if (kept) return { ok: true, upstream: kept, tunnel: createTunnel(kept, context), dialed: dial.text };
      // Absolute-URI HTTP hands the upstream to node:http, which reads it as a stream: no relay there.
      const relay = req.channel === 'http' ? undefined : new UpstreamRelay();
      try {
        const upstream = await dialChecked(dial, req.port, options.connectTimeoutMs, relay?.onread);
        return { ok: true, upstream, tunnel: createTunnel(upstream, context, relay), dialed: dial.text };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const failure = upstreamFailureOf(code);
        const message = `cannot connect to ${base.host}:${req.port}: ${code ?? 'error'}`;
        createTunnel(null, context).close(code ?? 'connect failed');
        return { ok: false, kind: 'upstream', failure, message };
      }
    },
  };
}

function dialChecked(ip: IpAddress, port: number, timeoutMs: number, onread?: OnReadOpts): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: ip.text, port, family: ip.family, noDelay: true, ...(onread ? { onread } : {}) });
    const timer = setTimeout(() => {
      const err: NodeJS.ErrnoException = new Error('connect timed out');
      err.code = 'ETIMEDOUT';
      socket.destroy(err);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
  });
}
