/**
 * A partner's `rateLimit` as enforced by one worker. The contract's limit is for the partner
 * over all workers, and workers share no state, so each worker enforces its share:
 * perSecond / workers exactly, and floor(burst / workers) tokens of burst, but at least 1.
 *
 * What that means in practice: the kernel spreads connections over workers, not requests. A
 * partner whose requests all arrive on one keep-alive connection (or all land on one worker
 * by chance) gets only 1/workers of its configured rate and burst. The limit is a ceiling the
 * bridge never exceeds, not a rate it guarantees.
 *
 * The one place the total can exceed the configuration: with burst < workers every worker
 * still holds 1 token, since a bucket below 1 token would refuse that partner forever on that
 * worker; the total burst is then `workers` tokens.
 */

export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterSeconds: number };

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a whole number of at least 1, got ${value}`);
  }
}

export class TokenBucket {
  /** This worker's share of the burst, in whole tokens. */
  readonly burst: number;
  /** This worker's share of the rate, in tokens per second (may be fractional). */
  readonly perSecond: number;

  // Accounting in integer units of 1 / (workers * 1000) token: one millisecond then adds
  // exactly `limit.perSecond` units, so the shares of all workers add up to the configured
  // rate with no rounding up anywhere, however long the bridge runs.
  readonly #unitsPerToken: number;
  readonly #unitsPerMs: number;
  readonly #capacity: number;
  #units: number;
  #lastMs: number | undefined;

  constructor(limit: RateLimit, workers: number) {
    requirePositiveInteger('rateLimit.perSecond', limit.perSecond);
    requirePositiveInteger('rateLimit.burst', limit.burst);
    requirePositiveInteger('workers', workers);
    this.burst = Math.max(1, Math.floor(limit.burst / workers));
    this.perSecond = limit.perSecond / workers;
    this.#unitsPerToken = workers * 1000;
    this.#unitsPerMs = limit.perSecond;
    this.#capacity = this.burst * this.#unitsPerToken;
    this.#units = this.#capacity; // a new bucket starts full
  }

  /** Takes one token at monotonic time `nowMs`, or says in whole seconds (≥ 1) when to retry. */
  take(nowMs: number): TakeResult {
    this.#refill(nowMs);
    if (this.#units >= this.#unitsPerToken) {
      this.#units -= this.#unitsPerToken;
      return { ok: true };
    }
    const waitMs = Math.ceil((this.#unitsPerToken - this.#units) / this.#unitsPerMs);
    // Retry-After has whole seconds; rounding up means a client that obeys it finds a token.
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  #refill(nowMs: number): void {
    // Whole milliseconds only, so that the units stay integers; the fraction is not lost, it
    // is counted when the clock passes the next millisecond.
    const now = Math.floor(nowMs);
    if (!Number.isFinite(now)) return;
    if (this.#lastMs === undefined) {
      this.#lastMs = now;
      return;
    }
    // A clock that steps back must not mint tokens: the bucket keeps its latest time, and the
    // time until the clock catches up again adds nothing.
    if (now <= this.#lastMs) return;
    const elapsedMs = now - this.#lastMs;
    this.#lastMs = now;
    // Capped before multiplying, so that a long idle time cannot leave the safe-integer range.
    const fullAfterMs = Math.ceil((this.#capacity - this.#units) / this.#unitsPerMs);
    this.#units =
      elapsedMs >= fullAfterMs ? this.#capacity : this.#units + elapsedMs * this.#unitsPerMs;
  }
}
