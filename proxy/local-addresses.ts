import { readFileSync } from 'node:fs';
import { endianness, networkInterfaces } from 'node:os';
import { parseHost } from '../src/net/host.js';

/**
 * The host's and the gateway's own addresses: a sandbox must not reach services of the machine it runs on.
 * Link-local addresses are left out: they are denied by a built-in rule anyway, and every container start adds
 * one (a veth interface), which would make the list change all the time.
 */
export function localAddresses(extra: readonly string[] = []): string[] {
  const found = Object.values(networkInterfaces())
    .flat()
    .flatMap((info) => (info && !info.address.toLowerCase().startsWith('fe80:') ? [info.address] : []));
  const texts = [...found, ...defaultRouters(), ...extra].flatMap((raw) => {
    const parsed = parseHost(raw, { brackets: 'forbidden' });
    return parsed.ok && parsed.host.kind === 'ip' ? [parsed.host.ip.text] : [];
  });
  return [...new Set(texts)].sort();
}

/**
 * IPv4 default routers from /proc/net/route. Inside a container the default router is the host's bridge address,
 * which a gateway in a container cannot otherwise know is the host (docker-compose.yml runs it so).
 */
export function defaultRouters(routeTable = '/proc/net/route'): string[] {
  let text: string;
  try {
    text = readFileSync(routeTable, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[1] === '00000000' && /^[0-9A-F]{8}$/i.test(fields[2] ?? '') && fields[2] !== '00000000')
    .map((fields) => {
      // The kernel prints the address as a host-order integer in hex.
      const bytes = [...Buffer.from(fields[2], 'hex')];
      return (endianness() === 'LE' ? bytes.reverse() : bytes).join('.');
    });
}

