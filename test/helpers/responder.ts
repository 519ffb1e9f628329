/** Runs the reference rpc backend (dist/examples/rpc-responder.js) as a child process for e2e tests. */
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { AMQP_URL, PROJECT_ROOT } from './bridge.js';
import { asText, startChild } from './child.js';

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
    return (
      typeof parsed === 'object' && parsed !== null && 'ready' in parsed && parsed.ready === true
    );
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
  const { child } = await startChild(process.execPath, args, {
    name: `responder for ${options.queue}`,
    parse: asText,
    ready: isReadyLine,
    readyTimeoutMs: options.readyTimeoutMs ?? 15_000,
  });
  return {
    child: child.process,
    pid: child.pid,
    queue: options.queue,
    stderr: child.stderr,
    exited: child.exited,
    stop: () => child.stop(),
  };
}
