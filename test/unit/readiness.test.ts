/** /readyz derivation (src/primary/readiness.ts): ready only when every worker is listening, connected and not draining. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { WorkerStatus } from '../../src/shared/ipc.js';
import {
  readiness,
  type SlotView,
  WORKER_SILENCE_LIMIT_MS,
  workerReadiness,
} from '../../src/primary/readiness.js';

const HEALTHY: WorkerStatus = { listening: true, amqp: 'connected', draining: false };

/** A slot whose worker runs as pid 1000 + slot and reported `status` (on top of a healthy one). */
function view(slot: number, status: Partial<WorkerStatus> | undefined): SlotView {
  return {
    slot,
    pid: 1000 + slot,
    status: status === undefined ? undefined : { ...HEALTHY, ...status },
  };
}

/** A slot with no process: its worker died and waits for the refork. */
function emptySlot(slot: number): SlotView {
  return { slot, pid: undefined, status: undefined };
}

describe('workerReadiness', { timeout: 10_000 }, () => {
  it('is ready when listening, connected and not draining', () => {
    assert.deepEqual(workerReadiness(view(0, {})), {
      slot: 0,
      pid: 1000,
      ready: true,
      reasons: [],
    });
  });

  it('names each reason a worker is not ready', () => {
    const cases: Array<[SlotView, string[]]> = [
      [emptySlot(0), ['not running']],
      [view(1, undefined), ['starting']],
      [view(2, { listening: false }), ['not listening']],
      [view(3, { amqp: 'connecting' }), ['broker connecting']],
      [view(4, { amqp: 'disconnected' }), ['broker disconnected']],
      [view(5, { draining: true }), ['draining']],
    ];
    for (const [v, reasons] of cases) {
      const w = workerReadiness(v);
      assert.equal(w.ready, false, JSON.stringify(v));
      assert.deepEqual(w.reasons, reasons, JSON.stringify(v));
      assert.equal(w.slot, v.slot);
      assert.equal(w.pid, v.pid);
    }
  });

  it('names a blocked broker as blocked, with the alarm it stands for', () => {
    const w = workerReadiness(view(0, { amqp: 'blocked' }));
    assert.equal(w.ready, false);
    assert.equal(w.reasons.length, 1);
    assert.match(w.reasons[0] ?? '', /blocked/);
    assert.match(w.reasons[0] ?? '', /alarm/);
  });

  it('lists every reason at once', () => {
    const w = workerReadiness(view(0, { listening: false, amqp: 'disconnected', draining: true }));
    assert.deepEqual(w.reasons, ['not listening', 'broker disconnected', 'draining']);
  });
});

describe('workerReadiness and silence', { timeout: 10_000 }, () => {
  it('names a worker that has not reported for longer than the limit as not responding', () => {
    const quiet: SlotView = { ...view(0, {}), silentMs: WORKER_SILENCE_LIMIT_MS + 1500 };
    const r = workerReadiness(quiet);
    assert.equal(r.ready, false);
    assert.deepEqual(r.reasons, ['not responding (no report for 7 s)']);
  });

  it('keeps a worker that reported within the limit ready', () => {
    assert.equal(
      workerReadiness({ ...view(0, {}), silentMs: WORKER_SILENCE_LIMIT_MS }).ready,
      true,
    );
  });
});

describe('readiness', { timeout: 10_000 }, () => {
  it('is ready when every worker is', () => {
    const r = readiness([view(0, {}), view(1, {}), view(2, {})]);
    assert.equal(r.ready, true);
    assert.equal(r.workers.length, 3);
    assert.ok(r.workers.every((w) => w.ready));
  });

  it('is not ready when one worker is not, and says which and why', () => {
    const r = readiness([view(0, {}), view(1, { amqp: 'blocked' }), view(2, {})]);
    assert.equal(r.ready, false);
    assert.deepEqual(
      r.workers.filter((w) => !w.ready).map((w) => [w.slot, w.pid]),
      [[1, 1001]],
    );
    assert.match(r.workers[1]?.reasons.join(', ') ?? '', /blocked/);
  });

  it('is not ready while a slot waits for its refork', () => {
    const r = readiness([view(0, {}), emptySlot(1)]);
    assert.equal(r.ready, false);
    assert.deepEqual(r.workers[1]?.reasons, ['not running']);
  });

  it('is not ready without workers', () => {
    assert.deepEqual(readiness([]), { ready: false, workers: [] });
  });
});
