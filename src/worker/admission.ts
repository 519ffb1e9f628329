/**
 * Every per-worker limit on taking a request. Before a byte of body is read: the broker must be
 * reachable, not blocked and not stalled (no confirm for stallMs while publishes wait), at most
 * `maxUploads` bodies may be streaming in and fewer than `maxInFlight` requests may be waiting on
 * the broker, and no request is admitted while the oldest publish has waited half of
 * `confirmTimeoutMs` for its confirm: a new request would likely wait out the whole timeout and
 * end in a 504 (outcome unknown), so it gets a retryable 503 now. Once its body is in, a request
 * moves from the uploads to the flights (answered, and its publish settled, it leaves): a slow
 * upload never holds a slot of the requests waiting on the broker. Also counts both for the drain.
 */
import { BridgeError } from '../shared/errors.js';
import type { BrokerLink } from './amqp/connection.js';
import type { Publisher } from './amqp/publisher.js';

export interface AdmissionOptions {
  readonly maxInFlight: number;
  readonly confirmTimeoutMs: number;
  readonly stallMs: number;
  readonly maxUploads: number;
}

/** Where an admitted request is: its body streaming in, or waiting on the broker. */
export type AdmittedStage = 'upload' | 'flight';

export class Admission {
  #uploads = 0;
  #flights = 0;
  #lastAdmitted = -Infinity;
  #idleWaiters: Array<() => void> = [];
  readonly #link: BrokerLink;
  readonly #publisher: Publisher;
  readonly #maxInFlight: number;
  readonly #maxUploads: number;
  readonly #stallMs: number;
  /** Longest a publish may have waited for its confirm before new requests are refused. */
  readonly #confirmBacklogMs: number;

  constructor(link: BrokerLink, publisher: Publisher, options: AdmissionOptions) {
    this.#link = link;
    this.#publisher = publisher;
    this.#maxInFlight = options.maxInFlight;
    this.#maxUploads = options.maxUploads;
    this.#stallMs = options.stallMs;
    this.#confirmBacklogMs = options.confirmTimeoutMs / 2;
  }

  /** Requests admitted and not yet ended, uploads included. */
  get active(): number {
    return this.#uploads + this.#flights;
  }

  /** Requests whose body is in and that wait on the broker or their answer. */
  get inFlight(): number {
    return this.#flights;
  }

  /**
   * Undefined when admitted as an upload (then `bodyIn()` once its body is in, and
   * `release(stage)` exactly once when the request ended), else the 503 to answer at once.
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
    if (this.#publisher.stalled && !this.#publisher.takeProbe()) {
      return new BridgeError(
        'BRIDGE_BROKER_UNAVAILABLE',
        `the broker has confirmed nothing for ${this.#stallMs} ms while publishes wait (stalled)`,
      );
    }
    if (this.#flights >= this.#maxInFlight) return this.#overloaded();
    if (this.#uploads >= this.#maxUploads) {
      return new BridgeError(
        'BRIDGE_OVERLOADED',
        `maxUploads (${this.#maxUploads}) request bodies are streaming in`,
      );
    }
    const since = this.#publisher.oldestWaitingSince;
    if (since !== undefined && performance.now() - since > this.#confirmBacklogMs) {
      return new BridgeError(
        'BRIDGE_OVERLOADED',
        `the broker is slow to confirm: a publish has waited more than ${this.#confirmBacklogMs} ms`,
      );
    }
    this.#uploads += 1;
    this.#lastAdmitted = performance.now();
    return undefined;
  }

  /**
   * The body of an admitted upload is in: undefined when it may wait on the broker (then it is a
   * flight), else the 503 to answer (maxInFlight filled up while it uploaded; it stays an upload).
   */
  bodyIn(): BridgeError | undefined {
    if (this.#flights >= this.#maxInFlight) return this.#overloaded();
    this.#uploads -= 1;
    this.#flights += 1;
    return undefined;
  }

  #overloaded(): BridgeError {
    return new BridgeError(
      'BRIDGE_OVERLOADED',
      `maxInFlight (${this.#maxInFlight}) requests are waiting on the broker`,
    );
  }

  release(stage: AdmittedStage): void {
    if (stage === 'upload') this.#uploads -= 1;
    else this.#flights -= 1;
    if (this.active === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves when no request is in flight (at once if none is). */
  idle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
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
