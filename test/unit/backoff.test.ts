/** Refork back-off and crash-loop detection (src/primary/backoff.ts): pure functions of counts and timestamps. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CrashLoopDetector, DEFAULT_BACKOFF, reforkDelayMs } from '../../src/primary/backoff.js';

describe('reforkDelayMs', { timeout: 10_000 }, () => {
  it('does not wait when nothing failed', () => {
    assert.equal(reforkDelayMs(0), 0);
    assert.equal(reforkDelayMs(-1), 0);
  });

  it('starts at baseMs and doubles per consecutive failure', () => {
    assert.deepEqual(DEFAULT_BACKOFF, { baseMs: 100, maxMs: 10_000 });
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7].map((n) => reforkDelayMs(n)),
      [100, 200, 400, 800, 1600, 3200, 6400],
    );
  });

  it('is capped at maxMs, however many failures', () => {
    assert.equal(reforkDelayMs(8), 10_000);
    assert.equal(reforkDelayMs(50), 10_000);
    // 2 ** 1100 is Infinity: the cap must still hold, not turn into NaN or Infinity.
    assert.equal(reforkDelayMs(1100), 10_000);
  });

  it('never shrinks as failures grow', () => {
    let previous = 0;
    for (let n = 0; n <= 64; n++) {
      const delay = reforkDelayMs(n);
      assert.ok(
        Number.isFinite(delay) && delay >= previous,
        `delay(${n}) = ${delay} < ${previous}`,
      );
      previous = delay;
    }
  });

  it('follows a custom policy', () => {
    const policy = { baseMs: 50, maxMs: 300 };
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((n) => reforkDelayMs(n, policy)),
      [0, 50, 100, 200, 300, 300],
    );
  });
});

describe('CrashLoopDetector', { timeout: 10_000 }, () => {
  it('defaults to 5 deaths within 30 s', () => {
    const detector = new CrashLoopDetector();
    assert.deepEqual(
      [0, 1000, 2000, 3000].map((t) => detector.record(t)),
      [false, false, false, false],
    );
    assert.equal(detector.record(29_999), true);
  });

  it('forgets deaths older than the window', () => {
    const detector = new CrashLoopDetector();
    for (const t of [0, 10, 20, 30]) assert.equal(detector.record(t), false);
    // Exactly windowMs after the first death, that death no longer counts: 4 in the window.
    assert.equal(detector.record(30_000), false);
    assert.equal(detector.record(30_005), true);
  });

  it('never trips on deaths spread wider than the window', () => {
    const detector = new CrashLoopDetector();
    for (let i = 0; i < 100; i++) assert.equal(detector.record(i * 7_500), false, `death ${i}`);
  });

  it('keeps reporting the loop while deaths keep coming', () => {
    const detector = new CrashLoopDetector(3, 1000);
    assert.deepEqual(
      [0, 10, 20, 30].map((t) => detector.record(t)),
      [false, false, true, true],
    );
    assert.equal(detector.record(5000), false);
  });

  it('follows a custom limit and window', () => {
    const detector = new CrashLoopDetector(2, 100);
    assert.equal(detector.record(0), false);
    assert.equal(detector.record(100), false);
    assert.equal(detector.record(150), true);
  });
});
