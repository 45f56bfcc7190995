/**
 * The upstreams' addresses: loopback aliases in 198.18.0.0/15 (RFC 2544's benchmarking range) that the bench
 * adds to lo. Every peer's config allows exactly these, nothing else.
 */
export const ECHO = { host: '198.18.0.1', port: 7007 } as const;
export const SOURCE = { host: '198.18.0.2', port: 7008 } as const;
export const HTTP = { host: '198.18.0.3', port: 8080 } as const;
export const DNS_STUB = { host: '198.18.0.53', port: 53 } as const;
export const ALIASES = [ECHO.host, SOURCE.host, HTTP.host, DNS_STUB.host] as const;
/** Names the DNS scenario asks for; the stub answers every name with ECHO.host. */
export const DNS_ZONE = 'bench.test';
/** The echo upstream closes after echoing this many bytes (see upstreams.c: the server closes first). */
export const PAYLOAD = 64;

export const hostPort = (a: { readonly host: string; readonly port: number }): string => `${a.host}:${a.port}`;
