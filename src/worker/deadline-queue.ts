/**
 * Deadlines without a timer each: things that all get the same timeout expire in the order they
 * started, so a periodic sweep only ever looks at the oldest. Used for body uploads
 * (requestTimeoutMs) and reply waits (one queue per timeout value).
 */

export interface Expiring {
  /** performance.now() at which it expires. */
  readonly deadline: number;
  /** True once it ended by itself: the sweep then just drops it. */
  readonly finished: boolean;
}

export class DeadlineQueue<T extends Expiring> {
  #items: T[] = [];
  #head = 0;

  /** Adds an item; items must come in deadline order (same timeout, added as they start). */
  add(item: T): void {
    this.#items.push(item);
  }

  /** Calls `expire` for every unfinished item whose deadline passed, oldest first. */
  sweep(now: number, expire: (item: T) => void): void {
    const items = this.#items;
    while (this.#head < items.length) {
      const item = items[this.#head] as T; // head < length
      if (!item.finished && item.deadline > now) break;
      this.#head += 1;
      if (!item.finished) expire(item);
    }
    if (this.#head === items.length) {
      items.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Items not swept yet (finished ones included). */
  get length(): number {
    return this.#items.length - this.#head;
  }
}
