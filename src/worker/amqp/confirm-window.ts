/**
 * Confirm tracking for one confirm channel, in publish order: delivery tags are counted here
 * (the channel's n-th publish is tag n), so a basic.ack or basic.nack -- with or without
 * `multiple` -- settles exactly the publishes it names, a basic.return marks its publish first
 * (RabbitMQ sends it before the ack), and deadlines are found by looking at the oldest publish
 * only: every publish gets the same timeout, so they expire in the order they were made. No
 * timer or closure per publish.
 */

/** One publish awaiting its confirm. */
export interface Pending {
  /** Delivery tag; set by `add`. */
  seq: number;
  /** `performance.now()` at which it times out. */
  readonly deadline: number;
  /** Identifies a returned message (its x-request-id header). */
  readonly trackId: string;
  returned: boolean;
  settled: boolean;
}

/** How a publish ended, from the broker's side. */
export type Settlement = 'ack' | 'nack' | 'timeout' | 'lost';

export class ConfirmWindow<P extends Pending> {
  #entries: P[] = [];
  #head = 0;
  #nextSeq = 1;
  #waiting = 0;
  readonly #settle: (pending: P, how: Settlement) => void;

  /** `settle` runs exactly once per added publish. */
  constructor(settle: (pending: P, how: Settlement) => void) {
    this.#settle = settle;
  }

  /** Publishes awaiting a confirm. */
  get size(): number {
    return this.#waiting;
  }

  /** The oldest publish still waiting, if any. */
  get oldest(): P | undefined {
    this.#dropSettled();
    return this.#entries[this.#head];
  }

  /** Registers the next publish on the channel; call in publish order, once per basic.publish. */
  add(pending: P): void {
    pending.seq = this.#nextSeq++;
    this.#entries.push(pending);
    this.#waiting += 1;
  }

  /** basic.ack / basic.nack from the broker. */
  confirm(tag: number, multiple: boolean, how: 'ack' | 'nack'): void {
    if (multiple) {
      while (this.#head < this.#entries.length) {
        const p = this.#entries[this.#head] as P; // head < length
        if (p.seq > tag) break;
        this.#head += 1;
        this.#finish(p, how);
      }
    } else {
      const first = this.#entries[this.#head];
      if (first === undefined || tag < first.seq) return;
      const p = this.#entries[this.#head + (tag - first.seq)];
      if (p !== undefined) this.#finish(p, how);
    }
    this.#dropSettled();
  }

  /** basic.return: the publish with this track id was unroutable (its ack follows). */
  markReturned(trackId: string): void {
    // Returns come right after their publish, while older publishes may still wait for disk:
    // search from the newest.
    for (let i = this.#entries.length - 1; i >= this.#head; i--) {
      const p = this.#entries[i] as P; // head <= i < length
      if (!p.settled && p.trackId === trackId) {
        p.returned = true;
        return;
      }
    }
  }

  /** Times out every publish whose deadline passed (the oldest first). */
  expire(now: number): void {
    while (this.#head < this.#entries.length) {
      const p = this.#entries[this.#head] as P; // head < length
      if (!p.settled && p.deadline > now) break;
      this.#head += 1;
      this.#finish(p, 'timeout');
    }
    this.#compact();
  }

  /** The channel closed: every publish still waiting lost its confirm. */
  loseAll(): void {
    const entries = this.#entries;
    const head = this.#head;
    this.#entries = [];
    this.#head = 0;
    for (let i = head; i < entries.length; i++) this.#finish(entries[i] as P, 'lost'); // i < length
  }

  #finish(p: P, how: Settlement): void {
    if (p.settled) return;
    p.settled = true;
    this.#waiting -= 1;
    this.#settle(p, how);
  }

  #dropSettled(): void {
    while (this.#head < this.#entries.length && (this.#entries[this.#head] as P).settled)
      this.#head += 1; // head < length
    this.#compact();
  }

  #compact(): void {
    if (this.#head === this.#entries.length) {
      this.#entries.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }
}
