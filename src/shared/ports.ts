/**
 * Free loopback ports. We never assume a well-known port (5432, 2379) is free: every port is
 * chosen at create time by binding port 0 on the loopback address, recorded, and checked again
 * before a start. A short race remains between choosing and binding; `start` reports PORT_BUSY.
 */
import net from 'node:net';

export const LOOPBACK_HOST = '127.0.0.1';

export function findFreePort(host = LOOPBACK_HOST): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

/** `count` distinct free ports. */
export async function findFreePorts(count: number, host = LOOPBACK_HOST): Promise<number[]> {
  const ports = new Set<number>();
  // Bounded: the kernel hands out distinct ephemeral ports; 20 tries per port is plenty.
  for (let attempt = 0; ports.size < count && attempt < count * 20; attempt += 1) {
    ports.add(await findFreePort(host));
  }
  if (ports.size < count) throw new Error(`could not find ${count} free ports on ${host}`);
  return [...ports];
}

/** True when nothing listens on host:port and we could bind it now. */
export function isPortFree(port: number, host = LOOPBACK_HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A host as it appears in a URL: IPv6 addresses in brackets. */
export function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
