/**
 * Remembers Standard Webhooks `webhook-id`s so that a captured request replayed while its
 * timestamp is still acceptable is refused. Call `seen` only after the signature verified:
 * otherwise anyone could fill the memory, or pre-empt a real id, with unsigned requests.
 */

const DEFAULT_MAX_ENTRIES = 100_000;

export interface ReplayGuardOptions {
  readonly maxEntries?: number;
}

export class ReplayGuard {
  // id -> the last second at which it must still be refused. A Map iterates in insertion order,
  // and every insertion uses the same retention, so the oldest expiry is always first.
  readonly #expiries = new Map<string, number>();
  readonly #retentionSeconds: number;
  readonly #maxEntries: number;

  /**
   * `toleranceSeconds` is the verifier's: a request accepted at `now` may carry a timestamp up
   * to `tolerance` ahead, and that timestamp stays acceptable until `now + 2 * tolerance`, so an
   * id is kept that long, not just `tolerance`.
   */
  constructor(toleranceSeconds: number, options: ReplayGuardOptions = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (!Number.isFinite(toleranceSeconds) || toleranceSeconds < 0) {
      throw new Error('replay guard toleranceSeconds must be a non-negative number');
    }
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new Error('replay guard maxEntries must be a positive integer');
    }
    this.#retentionSeconds = 2 * toleranceSeconds;
    this.#maxEntries = maxEntries;
  }

  /** Records `id` and answers whether it was already recorded and not yet expired. */
  seen(id: string, nowSeconds: number): boolean {
    const expiry = this.#expiries.get(id);
    if (expiry !== undefined && expiry >= nowSeconds) return true;
    // An expired entry is re-inserted at the end, keeping the Map ordered by expiry.
    this.#expiries.delete(id);
    this.#prune(nowSeconds);
    if (this.#expiries.size >= this.#maxEntries) {
      // Full: the oldest entry goes. A replay of that id, though still inside the window, will
      // then pass here; it takes more than maxEntries verified requests within the window, and
      // the consumer still deduplicates by message_id (= webhook-id).
      const oldest = this.#expiries.keys().next();
      if (oldest.done !== true) this.#expiries.delete(oldest.value);
    }
    this.#expiries.set(id, nowSeconds + this.#retentionSeconds);
    return false;
  }

  /**
   * Lets `id` through again: its request failed before anything was published, and the sender
   * will resend it under the same id (Standard Webhooks keeps the id across attempts).
   */
  forget(id: string): void {
    this.#expiries.delete(id);
  }

  get size(): number {
    return this.#expiries.size;
  }

  // Amortised O(1): each entry is removed at most once, and the scan stops at the first live one.
  #prune(nowSeconds: number): void {
    for (const [id, expiry] of this.#expiries) {
      if (expiry >= nowSeconds) return;
      this.#expiries.delete(id);
    }
  }
}
