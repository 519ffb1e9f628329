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
  // id -> the position of its live entry in the insertion queue below, counted from the first
  // insertion ever (so positions survive the queue's compaction).
  readonly #positions = new Map<string, number>();
  // Every insertion in order, with the last second its id must still be refused: all use the
  // same retention, so the oldest is always at the head. A Map alone would do in theory, but V8
  // leaves a deleted entry's slot in place until the table is rebuilt, and iterating from the
  // front walks over every one of them: at the 100,000-entry cap that took 14 µs a call
  // (bench/partner-auth-cost.ts), against 1 µs for this queue. An entry whose id was forgotten
  // or inserted again is stale (the Map no longer points at it) and is skipped at the head.
  #ids: string[] = [];
  #expiries: number[] = [];
  /** Position of `#ids[0]`. */
  #base = 0;
  /** Index in the arrays of the oldest entry still queued. */
  #head = 0;
  /** Queued entries the Map no longer points at (their id was forgotten). */
  #stale = 0;
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
    const position = this.#positions.get(id);
    if (position !== undefined && (this.#expiries[position - this.#base] as number) >= nowSeconds)
      return true;
    while (this.#head < this.#ids.length && (this.#expiries[this.#head] as number) < nowSeconds)
      this.#dropHead();
    // Full: the oldest id goes. A replay of it, though still inside the window, will then pass
    // here; it takes more than maxEntries verified requests within the window, and the consumer
    // still deduplicates by message_id (= webhook-id).
    while (this.#positions.size >= this.#maxEntries) this.#dropHead();
    this.#positions.set(id, this.#base + this.#ids.length);
    this.#ids.push(id);
    this.#expiries.push(nowSeconds + this.#retentionSeconds);
    return false;
  }

  /**
   * Lets `id` through again: its request failed before anything was published, and the sender
   * will resend it under the same id (Standard Webhooks keeps the id across attempts).
   */
  forget(id: string): void {
    if (!this.#positions.delete(id)) return;
    this.#stale += 1;
    // Failed requests in a loop (a broker outage) forget every id they saw: their entries are
    // swept out before they outnumber the live ones by much, so the queue stays bounded.
    if (this.#stale > Math.max(1024, this.#positions.size)) this.#sweepStale();
  }

  get size(): number {
    return this.#positions.size;
  }

  #dropHead(): void {
    const at = this.#head;
    const id = this.#ids[at] as string; // callers check the queue is not empty
    if (this.#positions.get(id) === this.#base + at) this.#positions.delete(id);
    else this.#stale -= 1;
    this.#head = at + 1;
    // Amortised O(1): the dead front is cut off once it is half of the arrays.
    if (this.#head >= 1024 && this.#head * 2 >= this.#ids.length) {
      this.#ids = this.#ids.slice(this.#head);
      this.#expiries = this.#expiries.slice(this.#head);
      this.#base += this.#head;
      this.#head = 0;
    }
  }

  /** Rebuilds the queue from its live entries, numbered after every position used so far. */
  #sweepStale(): void {
    const ids: string[] = [];
    const expiries: number[] = [];
    const base = this.#base + this.#ids.length;
    for (let at = this.#head; at < this.#ids.length; at++) {
      const id = this.#ids[at] as string; // at < length
      if (this.#positions.get(id) !== this.#base + at) continue;
      this.#positions.set(id, base + ids.length);
      ids.push(id);
      expiries.push(this.#expiries[at] as number);
    }
    this.#ids = ids;
    this.#expiries = expiries;
    this.#base = base;
    this.#head = 0;
    this.#stale = 0;
  }
}
