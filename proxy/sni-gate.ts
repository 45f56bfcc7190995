import type { Socket } from 'node:net';
import { parseHost } from '../src/net/host.js';
import { inspectClientHello } from './tls-sni.js';

export type FirstBytesVerdict = { readonly ok: true; readonly head: Buffer } | { readonly ok: false; readonly reason: string };

/**
 * Holds the client's first bytes until we know whether they are a TLS ClientHello, and if so whether its SNI
 * names the host the policy allowed. Without this, `CONNECT allowed.test:443` followed by a ClientHello for
 * `denied.test` would reach whatever virtual host the allowed server's front end routes that name to (domain
 * fronting). We never terminate TLS: only the cleartext ClientHello is read.
 * The wait is bounded by the hello size cap in `inspectClientHello` and by the tunnel's idle time-out.
 */
export function checkFirstBytes(
  socket: Socket,
  head: Buffer,
  allowedName: string | null,
  done: (verdict: FirstBytesVerdict) => void,
): void {
  let buffered = head;

  const judge = (): FirstBytesVerdict | null => {
    const hello = inspectClientHello(buffered);
    switch (hello.kind) {
      case 'need-more':
        return null;
      case 'not-tls':
        return { ok: true, head: buffered };
      case 'malformed':
        return { ok: false, reason: `malformed TLS ClientHello: ${hello.error}` };
      case 'hello':
        return sniVerdict(hello.sni, allowedName, buffered);
    }
  };

  const early = buffered.length > 0 ? judge() : null;
  if (early) {
    done(early);
    return;
  }
  const finish = (verdict: FirstBytesVerdict): void => {
    // Stop reading before handing over: the caller's pipe() must be the one to resume the socket.
    socket.pause();
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    done(verdict);
  };
  const onData = (chunk: Buffer): void => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const verdict = judge();
    if (verdict) finish(verdict);
  };
  // A client that half-closes before a verdict: nothing at all passes as is; a cut-off ClientHello does not.
  const onEnd = (): void => {
    finish(buffered.length === 0 ? { ok: true, head: buffered } : { ok: false, reason: 'TLS ClientHello cut short' });
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.resume(); // the fast CONNECT path hands the socket over paused
}

function sniVerdict(sni: string | null, allowedName: string | null, head: Buffer): FirstBytesVerdict {
  if (sni === null) return { ok: true, head };
  const parsed = parseHost(sni, { brackets: 'forbidden' });
  if (!parsed.ok) return { ok: false, reason: `TLS ClientHello names an invalid host: ${parsed.error}` };
  if (parsed.host.kind === 'name' && parsed.host.name === allowedName) return { ok: true, head };
  const target = allowedName ?? 'an IP address';
  return { ok: false, reason: `TLS ClientHello names ${sni.slice(0, 255)}, not the tunnel's target ${target}` };
}
