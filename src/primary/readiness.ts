/** Derives /readyz from the workers' reported states. */
import type { WorkerStatus } from '../shared/ipc.js';

export interface SlotView {
  readonly slot: number;
  readonly pid: number | undefined;
  readonly status: WorkerStatus | undefined;
  /** Milliseconds since the worker last reported (it reports every WORKER_HEARTBEAT_MS). */
  readonly silentMs?: number;
}

/** A worker that has not reported for this long is hung (blocked event loop, SIGSTOP): not ready. */
export const WORKER_SILENCE_LIMIT_MS = 5000;

export interface WorkerReadiness {
  readonly slot: number;
  readonly pid: number | undefined;
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

export interface Readiness {
  readonly ready: boolean;
  readonly workers: readonly WorkerReadiness[];
}

export function workerReadiness(view: SlotView): WorkerReadiness {
  const reasons: string[] = [];
  const s = view.status;
  if (view.pid === undefined) reasons.push('not running');
  else if (s === undefined) reasons.push('starting');
  else {
    if (!s.listening) reasons.push('not listening');
    if (s.amqp === 'blocked') reasons.push('broker blocked (memory or disk alarm)');
    else if (s.amqp !== 'connected') reasons.push(`broker ${s.amqp}`);
    else if (s.stalled === true) reasons.push('broker stalled (no confirm for amqp.stallMs)');
    if (s.draining) reasons.push('draining');
    if (view.silentMs !== undefined && view.silentMs > WORKER_SILENCE_LIMIT_MS) {
      reasons.push(`not responding (no report for ${Math.round(view.silentMs / 1000)} s)`);
    }
  }
  return { slot: view.slot, pid: view.pid, ready: reasons.length === 0, reasons };
}

export function readiness(views: readonly SlotView[]): Readiness {
  const workers = views.map(workerReadiness);
  return { ready: workers.length > 0 && workers.every((w) => w.ready), workers };
}
