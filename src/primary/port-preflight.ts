/**
 * Before forking, bind the partner port once *without* SO_REUSEPORT. uWS listens with
 * SO_REUSEPORT, so an unrelated process already on the port would otherwise silently get a share
 * of partner traffic (docs/failure-modes.md 1.2); our plain bind fails with EADDRINUSE instead. Port 0 picks a
 * free port for all workers.
 */
import { createServer } from 'node:net';

class PortInUseError extends Error {
  constructor(host: string, port: number, options?: ErrorOptions) {
    super(
      `${host}:${port} is already in use by another process; refusing to share it (SO_REUSEPORT would split traffic)`,
      options,
    );
    this.name = 'PortInUseError';
  }
}

/** Resolves with the port that is free (the chosen one for port 0); rejects PortInUseError. */
export function preflightPort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? new PortInUseError(host, port, { cause: err }) : err);
    });
    server.listen({ host, port, exclusive: true }, () => {
      const addr = server.address();
      const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
      server.close(() => resolve(bound));
    });
  });
}
