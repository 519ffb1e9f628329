/**
 * Deadlines without a timer each: things that all get the same timeout expire in the order they
 * started, so one timer, armed for the oldest unfinished item, finds every expiry. No timer runs
 * while nothing waits: on this kind of VM every wake-up of an idle process costs about 0.1 ms of
 * CPU (docs/performance.md), which a fixed-rate sweep would spend for nothing. While items wait,
 * the timer also comes at least every COMPACT_MS to drop finished ones, so a slow item at the
 * front (a trickling upload) does not keep everything that finished after it alive. Used for body
 * uploads (requestTimeoutMs) and reply waits (one queue per timeout value).
 */

/** Longest a finished item stays referenced, once the queue has grown past COMPACT_AT. */
const COMPACT_MS = 500;
const COMPACT_AT = 256;

export interface Expiring {
  /** performance.now() at which it expires. */
  readonly deadline: number;
  /** True once it ended by itself: the queue then just drops it. */
  readonly finished: boolean;
}

export class DeadlineQueue<T extends Expiring> {
  #items: T[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The deadline the timer is armed for. */
  #armedFor = Infinity;
  readonly #expire: (item: T) => void;

  /** `expire` runs for every item whose deadline passed while it was unfinished, oldest first. */
  constructor(expire: (item: T) => void) {
    this.#expire = expire;
  }

  /** Adds an item; items must come in deadline order (same timeout, added as they start). */
  add(item: T): void {
    // Most items finish before the next one comes (a body that arrived with its head): drop them.
    while (this.#head < this.#items.length && (this.#items[this.#head] as T).finished)
      this.#head += 1; // head < length
    this.#items.push(item);
    if (this.#timer === undefined)
      this.#arm(Math.min(item.deadline, performance.now() + COMPACT_MS));
  }

  /** Items not dropped yet (finished ones included). */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Stops the timer (shutdown); items stay. */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(deadline: number): void {
    this.#armedFor = deadline;
    // +1: setTimeout may fire a fraction of a millisecond early against performance.now().
    this.#timer = setTimeout(this.#fire, Math.max(0, Math.ceil(deadline - performance.now()) + 1));
    this.#timer.unref();
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.sweep(performance.now());
  };

  /** Expires what is due now and re-arms for the oldest item still waiting. */
  sweep(now: number): void {
    const items = this.#items;
    while (this.#head < items.length) {
      const item = items[this.#head] as T; // head < length
      if (!item.finished && item.deadline > now) break;
      this.#head += 1;
      if (!item.finished) this.#expire(item);
    }
    if (this.#head === items.length) {
      items.length = 0;
      this.#head = 0;
      return;
    }
    if (items.length - this.#head > COMPACT_AT) {
      // Finished items behind an unfinished one: keep only the waiting, in order.
      this.#items = items.slice(this.#head).filter((item) => !item.finished);
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    const first = this.#items[this.#head];
    if (first === undefined) return;
    const next = Math.min(first.deadline, now + COMPACT_MS);
    if (this.#timer === undefined || next < this.#armedFor) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#arm(next);
    }
  }
}
