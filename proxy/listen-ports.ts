/**
 * Port 0 in a cluster's listen addresses, chosen once in the primary.
 *
 * Every worker gets its listening sockets from the primary by the arguments it listens with. With port 0 a
 * standby that stops accepting and listens again (`accept-steering.ts`) would be given a new socket on another
 * port, and the DNS front's TCP socket, which takes the number its UDP socket got, could not pick again once
 * another worker holds that UDP socket. So the primary binds each 0 to a free number (for DNS one free for UDP
 * and TCP both), releases them, and the workers listen on those numbers. Another process could take one in that
 * moment: the start then fails with LISTEN_FAILED naming the port, as for any port in use.
 */
import dgram from 'node:dgram';
import { createServer, isIPv6, type AddressInfo } from 'node:net';
import type { GatewayConfig } from '../src/config/schema.js';
import { ClawboxError } from '../src/errors.js';

const DNS_ATTEMPTS = 20;

export async function choosePorts(gateway: GatewayConfig): Promise<GatewayConfig> {
  const held: Array<{ close(): void }> = [];
  try {
    // Each probe stays bound until all are chosen, so that no two fronts get the same number.
    const http = gateway.http.port === 0 ? await chosen('http', gateway.http.host, freeTcpPort(gateway.http.host, held)) : gateway.http.port;
    const socks = gateway.socks.port === 0 ? await chosen('socks', gateway.socks.host, freeTcpPort(gateway.socks.host, held)) : gateway.socks.port;
    const dns = gateway.dns.port === 0 ? await chosen('dns', gateway.dns.host, freeDnsPort(gateway.dns.host, held)) : gateway.dns.port;
    return {
      ...gateway,
      http: { ...gateway.http, port: http },
      socks: { ...gateway.socks, port: socks },
      dns: { ...gateway.dns, port: dns },
    };
  } finally {
    for (const socket of held) socket.close();
  }
}

function chosen(front: string, host: string, port: Promise<number>): Promise<number> {
  return port.catch((err: unknown) => {
    const reason = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    throw new ClawboxError('LISTEN_FAILED', `cannot listen on sandbox.gateway.${front} ${host}:0: ${reason}`, { cause: err });
  });
}

async function freeTcpPort(host: string, held: Array<{ close(): void }>, port = 0): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  held.push(server);
  return (server.address() as AddressInfo).port;
}

async function freeDnsPort(host: string, held: Array<{ close(): void }>): Promise<number> {
  let lastError: unknown = null;
  for (let attempt = 0; attempt < DNS_ATTEMPTS; attempt += 1) {
    const udp = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, host, () => resolve(udp.address().port));
    });
    try {
      await freeTcpPort(host, held, port);
      held.push(udp);
      return port;
    } catch (err) {
      udp.close();
      lastError = err;
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
    }
  }
  throw lastError instanceof Error ? lastError : new Error(`no port free for UDP and TCP on ${host}`);
}
