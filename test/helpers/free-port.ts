/** A loopback port for a child that needs a fixed one (a private broker, Prometheus, upgrade.sh). */
import { once } from 'node:events';
import { createServer } from 'node:net';

/** A port nothing listens on right now (bound and released; good enough on loopback). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
