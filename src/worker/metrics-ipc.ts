/**
 * The worker's half of the metrics round trip (the primary's half is
 * src/primary/metrics-aggregator.ts): answers the primary's `bridge:metrics-req` with a
 * snapshot, and hands over a final one before the worker exits.
 */
import process from 'node:process';
import { isPrimaryToWorker, type WorkerToPrimary } from '../shared/ipc.js';
import type { Logger } from '../shared/log.js';
import { FINAL_SNAPSHOT_ID } from '../shared/metrics.js';
import type { WorkerMetrics } from './metrics.js';

/** How long the final snapshot may hold the exit when the IPC channel is stuck. */
const FINAL_SNAPSHOT_DEADLINE_MS = 1000;

export function answerMetricsRequests(metrics: WorkerMetrics, log: Logger): void {
  process.on('message', (msg: unknown) => {
    if (!isPrimaryToWorker(msg) || msg.type !== 'bridge:metrics-req') return;
    const { id } = msg;
    metrics.snapshot().then(
      (snapshot) => {
        const answer: WorkerToPrimary = { type: 'bridge:metrics', id, metrics: snapshot };
        if (process.connected) process.send?.(answer);
      },
      (err: unknown) => log.error('metrics snapshot failed', { err }),
    );
  });
}

/**
 * Hands the primary this worker's final counts before it exits (FINAL_SNAPSHOT_ID), so a reload
 * or stop loses nothing counted since the last scrape. Bounded: a stuck channel cannot hold the exit.
 */
export async function sendFinalSnapshot(metrics: WorkerMetrics, log: Logger): Promise<void> {
  if (!process.connected) return;
  try {
    const msg: WorkerToPrimary = {
      type: 'bridge:metrics',
      id: FINAL_SNAPSHOT_ID,
      metrics: await metrics.snapshot(),
    };
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, FINAL_SNAPSHOT_DEADLINE_MS);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      if (process.send?.(msg, undefined, undefined, done) === undefined) done();
    });
  } catch (err) {
    log.warn('final metrics snapshot not sent', { err });
  }
}
