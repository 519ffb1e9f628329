/** Pure: how long to wait before reforking a worker, and when deaths amount to a crash loop. */

export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 100, maxMs: 10_000 };

/** Delay before the refork that follows `failures` consecutive early deaths (1 → baseMs). */
export function reforkDelayMs(failures: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  if (failures <= 0) return 0;
  return Math.min(policy.maxMs, policy.baseMs * 2 ** (failures - 1));
}

/** Remembers recent deaths; a crash loop is `limit` deaths within `windowMs`. */
export class CrashLoopDetector {
  #deaths: number[] = [];
  readonly #limit: number;
  readonly #windowMs: number;

  constructor(limit = 5, windowMs = 30_000) {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  /** Records a death at `nowMs`; returns true when that makes a crash loop. */
  record(nowMs: number): boolean {
    this.#deaths = this.#deaths.filter((t) => nowMs - t < this.#windowMs);
    this.#deaths.push(nowMs);
    return this.#deaths.length >= this.#limit;
  }
}
