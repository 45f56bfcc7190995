/** Canonical text of a peer address: IPv4 clients of a dual-stack socket arrive as `::ffff:a.b.c.d`. */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return 'unknown';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}
