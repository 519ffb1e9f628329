/**
 * Every per-worker limit on taking a request, decided before a byte of body is read: the broker
 * must be reachable and not blocked, at most `maxInFlight` requests may be between admission and
 * their end (answered, and their publish settled), and no request is admitted while the oldest
 * publish has waited half of `confirmTimeoutMs` for its confirm: a new request would likely wait
 * out the whole timeout and end in a 504 (outcome unknown), so it gets a retryable 503 now. Also
 * counts requests in flight for the drain.
 */
import { BridgeError } from '../shared/errors.js';
import type { BrokerLink } from './amqp/connection.js';
import type { Publisher } from './amqp/publisher.js';

export interface AdmissionOptions {
  readonly maxInFlight: number;
  readonly confirmTimeoutMs: number;
}

export class Admission {
  #active = 0;
  #lastAdmitted = -Infinity;
  #idleWaiters: Array<() => void> = [];
  readonly #link: BrokerLink;
  readonly #publisher: Publisher;
  readonly #maxInFlight: number;
  /** Longest a publish may have waited for its confirm before new requests are refused. */
  readonly #confirmBacklogMs: number;

  constructor(link: BrokerLink, publisher: Publisher, options: AdmissionOptions) {
    this.#link = link;
    this.#publisher = publisher;
    this.#maxInFlight = options.maxInFlight;
    this.#confirmBacklogMs = options.confirmTimeoutMs / 2;
  }

  /** Requests admitted and not yet ended. */
  get active(): number {
    return this.#active;
  }

  /**
   * Undefined when admitted (then `release()` exactly once, when the request ended), else the
   * 503 to answer at once.
   */
  admit(): BridgeError | undefined {
    const link = this.#link;
    if (link.state === 'blocked') {
      return new BridgeError(
        'BRIDGE_BROKER_UNAVAILABLE',
        'the broker is blocking publishers (memory or disk alarm)',
      );
    }
    if (!link.ready && !link.reopening)
      return new BridgeError('BRIDGE_BROKER_UNAVAILABLE', 'not connected to the broker');
    if (this.#active >= this.#maxInFlight) {
      return new BridgeError(
        'BRIDGE_OVERLOADED',
        `maxInFlight (${this.#maxInFlight}) requests are in flight`,
      );
    }
    const since = this.#publisher.oldestWaitingSince;
    if (since !== undefined && performance.now() - since > this.#confirmBacklogMs) {
      return new BridgeError(
        'BRIDGE_OVERLOADED',
        `the broker is slow to confirm: a publish has waited more than ${this.#confirmBacklogMs} ms`,
      );
    }
    this.#active += 1;
    this.#lastAdmitted = performance.now();
    return undefined;
  }

  release(): void {
    this.#active -= 1;
    if (this.#active === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves when no request is in flight (at once if none is). */
  idle(): Promise<void> {
    if (this.#active === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Resolves once no request is in flight and none was admitted for `quietMs`: during a drain,
   * requests still arriving on connections opened before the listen socket closed are served
   * (with Connection: close) before those connections are closed under them.
   */
  async quiet(quietMs: number): Promise<void> {
    for (;;) {
      await this.idle();
      const since = performance.now() - this.#lastAdmitted;
      if (since >= quietMs) return;
      await new Promise((resolve) => setTimeout(resolve, quietMs - since)); // waiting for time to pass with no request
    }
  }
}
