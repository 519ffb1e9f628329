/**
 * The HTTP ceiling: uWebSockets.js hello world in N forked processes sharing one port through
 * SO_REUSEPORT, as the bridge's workers do. It reads each POST body to its end, then answers 200.
 *
 * Usage: node dist/bench/peers/uws-hello.js --workers 2
 * Prints `{"ready":true,"port":N}` once every process listens.
 */
import cluster from 'node:cluster';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { uwsBuildFromEnv } from '../../src/shared/config.js';
import { describeRefusals, loadNativeUws } from '../../src/shared/uws.js';

const { values } = parseArgs({ options: { workers: { type: 'string', default: '1' } } });

interface Listening {
  readonly port: number;
}

function isListening(m: unknown): m is Listening {
  return typeof m === 'object' && m !== null && typeof (m as { port?: unknown }).port === 'number'; // narrowed by the typeof check
}

if (cluster.isPrimary) {
  const workers = Number(values.workers);
  // A port bound as 0 cannot be shared through SO_REUSEPORT afterwards (the second bind fails):
  // pick a free port first, then every process binds it, as the bridge's primary does.
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const address = probe.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  probe.close();
  let listening = 0;
  let stopping = false;
  cluster.on('message', (_worker, m: unknown) => {
    if (isListening(m) && ++listening === workers)
      process.stdout.write(`${JSON.stringify({ ready: true, port: m.port })}\n`);
  });
  cluster.on('exit', (_w, code) => {
    if (!stopping) process.stderr.write(`uws-hello: a worker exited (${code}) outside a stop\n`);
  });
  const stop = (): void => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  for (let i = 0; i < workers; i++) cluster.fork({ HELLO_PORT: String(port) });
} else {
  // The build the bridge would pick here (BRIDGE_UWS_BUILD chooses one, as for the bridge).
  const { loaded, refusals } = loadNativeUws(uwsBuildFromEnv());
  if (loaded === undefined)
    throw new Error(`no uWebSockets.js build loads: ${describeRefusals(refusals)}`);
  const { uws } = loaded;
  const app = uws.App().any('/*', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    res.onData((_chunk, last) => {
      if (last && !aborted) res.cork(() => res.writeStatus('200 OK').end('Hello World!'));
    });
  });
  app.listen('127.0.0.1', Number(process.env['HELLO_PORT'] ?? 0), (socket) => {
    if (socket === false) throw new Error('uws-hello: cannot listen');
    process.send?.({ port: uws.us_socket_local_port(socket) });
  });
  process.on('SIGTERM', () => process.exit(0));
}
