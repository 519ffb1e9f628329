/**
 * Spawns the built bridge (dist/src/primary/main.js) as a child process on ephemeral loopback
 * ports and waits for its "ready to serve" log line. Every test awaits `stop()` in `t.after()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntil } from './poll.js';

/** The project root (this file is compiled to dist/test/helpers/). */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
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
  /** Every JSON log line so far (stdout), in order. */
  readonly logs: LogLine[];
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
export function baseConfig(routes: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
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
  /** Wait for this many workers to report the broker connected (via /readyz). Default true. */
  readonly waitReady?: boolean;
  readonly timeoutMs?: number;
}

export async function startBridge(config: unknown, options: StartOptions = {}): Promise<RunningBridge> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bridge-test-'));
  const configFile = path.join(dir, 'config.yaml');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const child = spawn(process.execPath, [MAIN, '--config', configFile], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  let stderr = '';
  let buffered = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (text: string) => {
    buffered += text;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const raw = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine; // the bridge logs one JSON object per line
      } catch {
        line = { msg: raw, level: 'unparsed' };
      }
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.match(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr += text;
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null, // 'exit' hands (code, signal)
    signal: signal as NodeJS.Signals | null,
  }));

  const waitForLog = (match: (line: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> => {
    const past = logs.find(match);
    if (past) return Promise.resolve(past);
    return new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(waiter), 1);
        reject(new Error(`timed out waiting for a log line; last lines:\n${logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${stderr}`));
      }, timeoutMs);
      const waiter = {
        match,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      waiters.push(waiter);
      void exited.then(() => {
        if (waiters.includes(waiter)) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`bridge exited before the log line; last lines:\n${logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${stderr}`));
        }
      });
    });
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    })());

  let ready: LogLine;
  try {
    ready = await waitForLog((l) => l.msg === 'ready to serve', options.timeoutMs ?? 20_000);
  } catch (err) {
    await stop();
    throw err;
  }
  const port = Number(ready['port']);
  const adminPort = Number(ready['adminPort']);
  const bridge: RunningBridge = {
    child,
    pid: child.pid ?? -1,
    port,
    adminPort,
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    configFile,
    logs,
    stderr: () => stderr,
    waitForLog,
    rewriteConfig: (next) => writeFileSync(configFile, JSON.stringify(next, null, 2)),
    exited,
    stop,
  };
  if (options.waitReady !== false) await waitUntilReady(bridge, options.timeoutMs ?? 20_000);
  return bridge;
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
