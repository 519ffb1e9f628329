/**
 * Spawns the built bridge (dist/src/primary/main.js) as a child process on ephemeral loopback
 * ports and waits for its "ready to serve" log line. Every test awaits `stop()` in `t.after()`.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startChild, type Child } from './child.js';
import { waitUntil } from './poll.js';
import { runtimeFromEnv, type Runtime } from './runtime.js';

/** The project root (this file is compiled to dist/test/helpers/). */
export const PROJECT_ROOT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
);
export const MAIN = path.join(PROJECT_ROOT, 'dist', 'src', 'primary', 'main.js');
export const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672/';

export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

export interface RunningBridge {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly adminPort: number;
  readonly url: string;
  readonly adminUrl: string;
  readonly configFile: string;
  /** Every JSON log line so far (stdout), in order; grows as lines arrive. */
  readonly logs: readonly LogLine[];
  /** Raw stderr text so far. */
  readonly stderr: () => string;
  /** Resolves with the first log line (past or future) matching; rejects after timeoutMs. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Rewrites the config file (for SIGHUP tests). */
  rewriteConfig(config: unknown): void;
  /** Resolves with the exit code/signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, wait for exit (SIGKILL after 20 s), remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** A minimal config object for tests; pass overrides for anything. */
export function baseConfig(
  routes: unknown[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    workers: 2,
    shutdownTimeoutMs: 5000,
    amqp: { urls: [AMQP_URL], heartbeatSeconds: 5, reconnectSeconds: 0.5 },
    routes,
    ...extra,
  };
}

export interface StartOptions {
  readonly env?: Record<string, string>;
  /** Where the bridge runs; default: BRIDGE_TEST_RUNTIME's runtime (the host's Node.js when unset). */
  readonly runtime?: Runtime;
  /** Wait for this many workers to report the broker connected (via /readyz). Default true. */
  readonly waitReady?: boolean;
  readonly timeoutMs?: number;
}

/** A bridge log line: one JSON object per line (anything else is kept as an `unparsed` line). */
export function parseLogLine(raw: string): LogLine {
  try {
    return JSON.parse(raw) as LogLine; // the bridge logs one JSON object per line
  } catch {
    return { msg: raw, level: 'unparsed' };
  }
}

export async function startBridge(
  config: unknown,
  options: StartOptions = {},
): Promise<RunningBridge> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bridge-test-'));
  const configFile = path.join(dir, 'config.yaml');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  let started: { child: Child<LogLine>; ready: LogLine };
  try {
    const runtime = options.runtime ?? (await runtimeFromEnv());
    started = await startChild(runtime.command, [...runtime.prefix, MAIN, '--config', configFile], {
      name: 'bridge',
      env: { ...process.env, ...options.env },
      parse: parseLogLine,
      killAfterMs: 20_000,
      ready: (l) => l.msg === 'ready to serve',
      readyTimeoutMs: options.timeoutMs ?? 20_000,
    });
  } catch (err) {
    removeDir();
    throw err;
  }
  const { child, ready } = started;
  const port = Number(ready['port']);
  const adminPort = Number(ready['adminPort']);
  let stopping: Promise<void> | undefined;
  const bridge: RunningBridge = {
    child: child.process,
    pid: child.pid,
    port,
    adminPort,
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    configFile,
    logs: child.lines,
    stderr: child.stderr,
    waitForLog: child.waitForLine,
    rewriteConfig: (next) => writeFileSync(configFile, JSON.stringify(next, null, 2)),
    exited: child.exited,
    stop: () => (stopping ??= child.stop().then(removeDir)),
  };
  if (options.waitReady !== false) await waitUntilReady(bridge, options.timeoutMs ?? 20_000);
  return bridge;
}

/**
 * The uWebSockets.js build a bridge runs (its start log line): `20.57`, `20.30` or `js-fallback`.
 * Tests of behaviour uWS decides itself (framing, header limits) expect each build's own.
 */
export function uwsBuildOf(bridge: RunningBridge): string {
  const line = bridge.logs.find((l) => l.msg === 'uWebSockets.js build');
  const uws = line?.['uws'];
  const pkg = typeof uws === 'string' ? uws : '';
  if (line?.['native'] === false) return 'js-fallback';
  if (pkg.endsWith('@20.57.0')) return '20.57';
  if (pkg.includes('@20.30.0')) return '20.30';
  throw new Error(`no uWebSockets.js build line in the bridge's log (${pkg})`);
}

/** Polls /readyz (the primary's aggregate of worker events) until it answers 200. */
export async function waitUntilReady(bridge: RunningBridge, timeoutMs = 20_000): Promise<void> {
  await waitUntil(
    'bridge /readyz 200',
    async () => {
      const res = await fetch(`${bridge.adminUrl}/readyz`);
      return { status: res.status, body: await res.text() };
    },
    (r) => r.status === 200,
    { timeoutMs },
  );
}

/** The worker PIDs from the primary's /readyz. */
export async function workerPids(bridge: RunningBridge): Promise<number[]> {
  const res = await fetch(`${bridge.adminUrl}/readyz`);
  const body = (await res.json()) as { workers: Array<{ pid?: number }> }; // admin-server.ts shape
  return body.workers.map((w) => w.pid).filter((p): p is number => typeof p === 'number');
}
