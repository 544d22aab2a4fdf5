/**
 * namegate's sockets (the DNS proxy's, the proxies' upstream connections) only ever see IP
 * literals. This lookup hands them back as they are,
 * so Node never calls dns.lookup (getaddrinfo on libuv's small thread pool; security case
 * NODE-07) and a send skips the tick dns.lookup takes even for literals.
 */
export function literalLookup(
  address: string,
  family: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  callback(null, address, address.includes(':') ? 6 : typeof family === 'number' ? family : 4);
}
