/** The admin port (plain node:http, loopback by default): /healthz and /readyz. */
import { createServer, type Server } from 'node:http';
import type { Readiness } from './readiness.js';

export interface AdminDeps {
  readonly readiness: () => Readiness;
  /** The exposition in the format asked for (Accept: application/openmetrics-text → OpenMetrics). */
  readonly metrics: (openMetrics: boolean) => Promise<{ contentType: string; body: string }>;
}

const OPENMETRICS = 'application/openmetrics-text';

function json(status: number, body: unknown): { status: number; body: string } {
  return { status, body: JSON.stringify(body) };
}

export function createAdminServer(deps: AdminDeps): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
      const openMetrics = (req.headers.accept ?? '').includes(OPENMETRICS);
      deps.metrics(openMetrics).then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : body);
        },
        (err: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain' });
          res.end(
            `metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`,
          );
        },
      );
      return;
    }
    let out: { status: number; body: string };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      out = json(405, { status: 405, title: 'Method Not Allowed' });
    } else if (path === '/healthz') {
      out = json(200, { status: 'ok', pid: process.pid });
    } else if (path === '/readyz') {
      const r = deps.readiness();
      out = json(r.ready ? 200 : 503, r);
    } else {
      out = json(404, { status: 404, title: 'Not Found' });
    }
    res.writeHead(out.status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : out.body);
  });
}

/** Listens; resolves with the bound port. */
export function listenAdmin(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr !== null ? addr.port : port);
    });
  });
}
