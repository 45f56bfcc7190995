import { parseHost } from '../src/net/host.js';
import { inspectClientHello } from './tls-sni.js';

export type FirstBytesVerdict = { readonly ok: true; readonly head: Buffer } | { readonly ok: false; readonly reason: string };

/**
 * Holds the client's first bytes until we know whether they are a TLS ClientHello, and if so whether its SNI
 * names the host the policy allowed. Without this, `CONNECT allowed.test:443` followed by a ClientHello for
 * `denied.test` would reach whatever virtual host the allowed server's front end routes that name to (domain
 * fronting). We never terminate TLS: only the cleartext ClientHello is read.
 * Pure: the tunnel feeds it the bytes it reads. The wait is bounded by the hello size cap in `inspectClientHello`
 * and by the tunnel's idle time-out.
 */
export class FirstBytesGate {
  private buffered: Buffer = Buffer.alloc(0);

  /** `allowedName`: the name the policy allowed, or null for an IP-literal target. */
  constructor(private readonly allowedName: string | null) {}

  /** Adds bytes the client sent; the verdict once there is one (then `head` is every byte held), else null. */
  feed(chunk: Buffer): FirstBytesVerdict | null {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const hello = inspectClientHello(this.buffered);
    switch (hello.kind) {
      case 'need-more':
        return null;
      case 'not-tls':
        return { ok: true, head: this.buffered };
      case 'malformed':
        return { ok: false, reason: `malformed TLS ClientHello: ${hello.error}` };
      case 'hello':
        return sniVerdict(hello.sni, this.allowedName, this.buffered);
    }
  }

  /** The client half-closed before a verdict: nothing at all passes as is; a cut-off ClientHello does not. */
  end(): FirstBytesVerdict {
    return this.buffered.length === 0 ? { ok: true, head: this.buffered } : { ok: false, reason: 'TLS ClientHello cut short' };
  }
}

function sniVerdict(sni: string | null, allowedName: string | null, head: Buffer): FirstBytesVerdict {
  if (sni === null) return { ok: true, head };
  const parsed = parseHost(sni, { brackets: 'forbidden' });
  if (!parsed.ok) return { ok: false, reason: `TLS ClientHello names an invalid host: ${parsed.error}` };
  if (parsed.host.kind === 'name' && parsed.host.name === allowedName) return { ok: true, head };
  const target = allowedName ?? 'an IP address';
  return { ok: false, reason: `TLS ClientHello names ${sni.slice(0, 255)}, not the tunnel's target ${target}` };
}
