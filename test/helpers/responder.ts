/** Runs the reference rpc backend (dist/examples/rpc-responder.js) as a child process for e2e tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { AMQP_URL, PROJECT_ROOT } from './bridge.js';

const RESPONDER = path.join(PROJECT_ROOT, 'dist', 'examples', 'rpc-responder.js');

export interface ResponderOptions {
  readonly queue: string;
  /** Hold each reply this long (timeout tests). */
  readonly delayMs?: number;
  /** The reply's `http-status` header (the responder always sends one; default 200). */
  readonly status?: number;
  /** The reply's `x-order-state` header (default `accepted`). */
  readonly state?: string;
  readonly prefetch?: number;
  /** How long to wait for the ready line (default 15 s). */
  readonly readyTimeoutMs?: number;
}

export interface RunningResponder {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly queue: string;
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, wait for the exit (SIGKILL after 10 s). Idempotent. */
  stop(): Promise<void>;
}

function isReadyLine(raw: string): boolean {
  try {
    const parsed: unknown = JSON.parse(raw);
    return typeof parsed === 'object' && parsed !== null && 'ready' in parsed && parsed.ready === true;
  } catch {
    return false;
  }
}

/** Spawns the responder and resolves once it printed its `{"ready":true,…}` line (it is consuming). */
export async function startResponder(options: ResponderOptions): Promise<RunningResponder> {
  const args = [RESPONDER, '--queue', options.queue, '--url', AMQP_URL];
  if (options.delayMs !== undefined) args.push('--delay-ms', String(options.delayMs));
  if (options.status !== undefined) args.push('--status', String(options.status));
  if (options.state !== undefined) args.push('--state', options.state);
  if (options.prefetch !== undefined) args.push('--prefetch', String(options.prefetch));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr += text;
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null, // 'exit' hands (code, signal)
    signal: signal as NodeJS.Signals | null,
  }));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    })());

  const readyTimeoutMs = options.readyTimeoutMs ?? 15_000;
  const ready = new Promise<void>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`responder for ${options.queue} not ready after ${readyTimeoutMs} ms; stderr: ${stderr}`)), readyTimeoutMs);
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (text: string) => {
      buffered += text;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (isReadyLine(line)) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`responder for ${options.queue} exited (code ${String(code)}, signal ${String(signal)}) before it was ready; stderr: ${stderr}`));
    });
  });
  try {
    await ready;
  } catch (err) {
    await stop();
    throw err;
  }
  return { child, pid: child.pid ?? -1, queue: options.queue, stderr: () => stderr, exited, stop };
}
