/**
 * How each measured stack and backend is started on 127.0.0.1 and stopped by PID: the bridge,
 * the Fastify and Python peers, the uWS hello-world ceiling, the rpc responder, the Celery worker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import {
  freePort,
  processTree,
  ROOT,
  startBridge,
  stopChild,
  withNofile,
  workerPids,
  type BridgeStartOptions,
} from './harness.js';
import { SYSTEM_PYTHON } from './system.js';

/** Where the Python peers live: they are run from the source tree (nothing to compile). */
const PEERS_DIR = path.join(ROOT, 'bench', 'peers');

/** What a scenario asks of a stack: the route behaviour and the queue it sends to. */
export type Mode = 'publish' | 'rpc' | 'celery-ff' | 'celery-wait';

export interface StartContext {
  readonly mode: Mode;
  readonly queue: string;
  readonly queueType: 'classic' | 'quorum';
  /** Worker processes of the bridge and of the Node peers. */
  readonly workers: number;
  /** Cores: gunicorn's sync workers, one per core. */
  readonly cores: number;
  /** `ulimit -n` for every process started (C10k). */
  readonly nofile: number;
}

/** A running HTTP server under test. */
export interface HttpStack {
  readonly url: string;
  readonly rootPid: number;
  /** The processes that serve requests (the bridge's and Fastify's workers; the one process otherwise). */
  servingPids(): number[];
  /** Answers so far by HTTP status, where the stack counts them (the bridge's metrics). */
  statuses?(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

/** A process started by the bench, with the tail of its output for error messages. */
export interface Spawned {
  readonly child: ChildProcess;
  readonly pid: number;
  output(): string;
  /** Resolves with the first stdout line `match` accepts; rejects on exit or after `timeoutMs`. */
  line(match: (line: string) => boolean, timeoutMs: number): Promise<string>;
  stop(): Promise<void>;
}

export interface SpawnOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  readonly nofile?: number;
  readonly label: string;
}

function spawnProcess(cmd: string, argv: readonly string[], options: SpawnOptions): Spawned {
  const env: Record<string, string | undefined> = { ...process.env, ...options.env };
  // Debian's interpreter must not be pointed at another stdlib by a pyenv/virtualenv setting.
  delete env['PYTHONHOME'];
  delete env['PYTHONPATH'];
  const [c, a] = withNofile(options.nofile, cmd, argv);
  const child = spawn(c, a, { cwd: options.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  let partial = '';
  const waiters: Array<(line: string) => void> = [];
  const keep = (t: string): void => {
    tail = (tail + t).slice(-4000);
  };
  child.stdout?.setEncoding('utf8').on('data', (t: string) => {
    keep(t);
    partial += t;
    let nl: number;
    while ((nl = partial.indexOf('\n')) !== -1) {
      const l = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      for (const w of [...waiters]) w(l);
    }
  });
  child.stderr?.setEncoding('utf8').on('data', keep);
  const line = (match: (l: string) => boolean, timeoutMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const done = (err: Error | undefined, l?: string): void => {
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(waiter), 1);
        child.off('exit', onExit);
        if (err === undefined) resolve(l ?? '');
        else reject(err);
      };
      const waiter = (l: string): void => {
        if (match(l)) done(undefined, l);
      };
      const onExit = (): void =>
        done(new Error(`${options.label} exited before it was ready:\n${tail}`));
      const timer = setTimeout(
        () => done(new Error(`${options.label} not ready after ${timeoutMs} ms:\n${tail}`)),
        timeoutMs,
      );
      waiters.push(waiter);
      child.once('exit', onExit);
    });
  return {
    child,
    pid: child.pid ?? -1,
    output: () => tail,
    line,
    stop: () => stopChild(child, 10_000),
  };
}

/** Polls GET `url` until it answers 200 (no readiness event exists for these peers). */
async function untilHttpOk(
  url: string,
  proc: Spawned,
  label: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null)
      throw new Error(`${label} exited during start:\n${proc.output()}`);
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(1000) })).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new Error(`${label} did not answer ${url} within ${timeoutMs} ms:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function readyPort(line: string): number | undefined {
  try {
    const parsed: unknown = JSON.parse(line);
    if (
      typeof parsed === 'object' &&
      parsed !== null &&
      'port' in parsed &&
      typeof parsed.port === 'number'
    )
      return parsed.port;
  } catch {
    // not the ready line
  }
  return undefined;
}

export const routePath = (mode: Mode): string =>
  mode === 'publish' || mode === 'celery-ff' ? '/notify' : '/order';

/** The bridge's one route for a scenario's mode (shared with bench/profile.ts). */
export function bridgeRoute(ctx: Pick<StartContext, 'mode' | 'queue'>): Record<string, unknown> {
  switch (ctx.mode) {
    case 'publish':
      return { path: '/notify', mode: 'publish', exchange: '', routingKey: ctx.queue };
    case 'rpc':
      return {
        path: '/order',
        mode: 'rpc',
        exchange: '',
        routingKey: ctx.queue,
        timeoutMs: 10_000,
      };
    case 'celery-ff':
      return {
        path: '/notify',
        mode: 'celery',
        task: 'api.core.main',
        queue: ctx.queue,
        wait: false,
      };
    case 'celery-wait':
      // The same 5 s the Python peers give `.get(timeout=5)`.
      return {
        path: '/order',
        mode: 'celery',
        task: 'api.core.main',
        queue: ctx.queue,
        wait: true,
        timeoutMs: 5000,
      };
    default: {
      const never: never = ctx.mode;
      throw new Error(`unknown mode ${String(never)}`);
    }
  }
}

export async function startBridgeStack(
  ctx: StartContext,
  how: Omit<BridgeStartOptions, 'nofile'> = {},
  /** Served over HTTPS with these files (bench/uws-builds.ts; the 20.57 build only). */
  tls?: { readonly certFile: string; readonly keyFile: string },
): Promise<HttpStack> {
  const args = ctx.queueType === 'quorum' ? { 'x-queue-type': 'quorum' } : {};
  const queues =
    ctx.mode === 'publish' || ctx.mode === 'rpc'
      ? [{ name: ctx.queue, durable: true, arguments: args }]
      : [];
  const bridge = await startBridge(
    {
      workers: ctx.workers,
      topology: { queues },
      routes: [bridgeRoute(ctx)],
      ...(tls === undefined ? {} : { tls }),
    },
    { ...how, nofile: ctx.nofile },
  );
  const workers = await workerPids(bridge.adminPort);
  return {
    url: `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${bridge.port}${routePath(ctx.mode)}`,
    rootPid: bridge.pid,
    servingPids: () => workers,
    statuses: () => bridgeStatuses(bridge.adminPort),
    stop: () => bridge.stop(),
  };
}

/** The bridge's answers so far by HTTP status, all routes together (bridge_http_requests_total). */
export async function bridgeStatuses(adminPort: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(
    /^bridge_http_requests_total\{[^}]*status="(\d+)"[^}]*\} (\S+)$/gm,
  )) {
    out.set(m[1] ?? '', (out.get(m[1] ?? '') ?? 0) + Number(m[2]));
  }
  return out;
}

/** A Node peer that prints `{"ready":true,"port":N}` once all its processes listen. */
async function startNodePeer(
  script: string,
  argv: readonly string[],
  ctx: StartContext,
  label: string,
): Promise<HttpStack> {
  const proc = spawnProcess(
    process.execPath,
    [path.join(ROOT, 'dist', 'bench', 'peers', script), ...argv],
    { nofile: ctx.nofile, label },
  );
  let port: number | undefined;
  try {
    port = readyPort(await proc.line((l) => readyPort(l) !== undefined, 30_000));
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port ?? 0}${routePath(ctx.mode)}`,
    rootPid: proc.pid,
    servingPids: () => processTree(proc.pid).slice(1),
    stop: () => proc.stop(),
  };
}

export function startFastify(ctx: StartContext): Promise<HttpStack> {
  const queueArg = ctx.mode === 'rpc' ? '--rpc-queue' : '--queue';
  return startNodePeer(
    'fastify-amqplib.js',
    ['--workers', String(ctx.workers), queueArg, ctx.queue],
    ctx,
    'fastify peer',
  );
}

export function startUwsHello(ctx: StartContext): Promise<HttpStack> {
  return startNodePeer('uws-hello.js', ['--workers', String(ctx.workers)], ctx, 'uws hello world');
}

export type PythonServer = 'tornado' | 'gevent-flask' | 'gunicorn-flask';

/** Greenlets of the blocking gevent peer: its broker connections stay far below RabbitMQ's 1,024 descriptors. */
export const GEVENT_POOL = 100;

/** A Python peer on Debian's interpreter, sending Celery tasks to `ctx.queue`. */
export async function startPython(
  server: PythonServer,
  confirm: boolean,
  ctx: StartContext,
): Promise<HttpStack> {
  const port = await freePort();
  const argv =
    server === 'tornado'
      ? ['tornado_app.py', String(port)]
      : server === 'gevent-flask'
        ? ['gevent_flask.py', String(port)]
        : [
            '-m',
            'gunicorn',
            '--workers',
            String(ctx.cores),
            '--worker-class',
            'sync',
            '--bind',
            `127.0.0.1:${port}`,
            'flask_app:app',
          ];
  const label = `${server}${confirm ? ' (confirms)' : ''}`;
  const proc = spawnProcess(SYSTEM_PYTHON, argv, {
    cwd: PEERS_DIR,
    nofile: ctx.nofile,
    label,
    env: {
      BENCH_QUEUE: ctx.queue,
      BENCH_CONFIRM: confirm ? '1' : '0',
      // Blocking gevent opens a broker connection per waiting greenlet: cap them (gevent_flask.py).
      ...(ctx.mode === 'celery-wait' ? { BENCH_GEVENT_POOL: String(GEVENT_POOL) } : {}),
      PYTHONUNBUFFERED: '1',
      PYTHONDONTWRITEBYTECODE: '1',
    },
  });
  try {
    await untilHttpOk(`http://127.0.0.1:${port}/healthz`, proc, label);
    if (server === 'gunicorn-flask') {
      const deadline = Date.now() + 30_000;
      while (processTree(proc.pid).length < ctx.cores + 1 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100)); // no event for forked workers
    }
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port}${routePath(ctx.mode)}`,
    rootPid: proc.pid,
    servingPids: () => (server === 'gunicorn-flask' ? processTree(proc.pid).slice(1) : [proc.pid]),
    stop: () => proc.stop(),
  };
}

/** The reference rpc backend (examples/rpc-responder.ts) on `queue`. */
export async function startResponder(queue: string): Promise<Spawned> {
  const proc = spawnProcess(
    process.execPath,
    [
      path.join(ROOT, 'dist', 'examples', 'rpc-responder.js'),
      '--queue',
      queue,
      '--prefetch',
      '1000',
    ],
    {
      label: 'rpc responder',
    },
  );
  try {
    await proc.line((l) => l.includes('"ready":true'), 15_000);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}

/**
 * A real Celery worker on `queue`, as its users start it (`celery -A app worker`: prefork, one
 * process per core). Ready once the queue has a consumer: `hasConsumer` polls the broker.
 */
export async function startCeleryWorker(
  queue: string,
  nofile: number,
  hasConsumer: () => Promise<boolean>,
): Promise<Spawned> {
  const name = `bench-${process.pid}-${Date.now()}`;
  const proc = spawnProcess(
    SYSTEM_PYTHON,
    [
      '-m',
      'celery',
      '-A',
      'celery_app',
      'worker',
      '-Q',
      queue,
      '--without-heartbeat',
      '--without-gossip',
      '--without-mingle',
      '-n',
      `${name}@%h`,
      '--loglevel',
      'WARNING',
    ],
    {
      cwd: PEERS_DIR,
      nofile,
      label: 'celery worker',
      env: { BENCH_QUEUE: queue, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    },
  );
  const deadline = Date.now() + 30_000;
  while (!(await hasConsumer())) {
    if (proc.child.exitCode !== null || Date.now() > deadline) {
      await proc.stop();
      throw new Error(`celery worker did not start consuming ${queue}:\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 200)); // polling the broker: no event tells a consumer appeared
  }
  return proc;
}
