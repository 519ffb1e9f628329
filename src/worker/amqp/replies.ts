/**
 * Replies over RabbitMQ's direct reply-to: one no-ack consumer of `amq.rabbitmq.reply-to` on the
 * worker's channel (set up before the channel is used, as direct reply-to requires), a
 * correlation-id → waiter map, deadlines kept by per-timeout FIFO queues (waits with the same
 * timeout expire in the order they began), and counting of replies nobody waits for.
 *
 * A reply to a request sent on a channel that has since closed is lost (the broker returns it
 * to the responder, docs/failure-modes.md #10): so every waiter fails at once when the channel goes.
 */
import { EventEmitter } from 'node:events';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { BridgeError } from '../../shared/errors.js';
import { DeadlineQueue } from '../deadline-queue.js';
import type { BrokerLink } from './connection.js';

export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

/**
 * Decides what a reply means for its waiter: `undefined` to keep waiting (e.g. Celery's interim
 * STARTED state), or the final value. May throw a BridgeError to fail the request.
 */
export type ReplyInterpreter<T> = (message: ConsumeMessage) => T | undefined;

/** One request waiting for its reply. */
class ReplyWait<T> {
  readonly promise: Promise<T>;
  readonly correlationId: string;
  readonly label: string;
  readonly deadline: number;
  readonly timeoutMs: number;
  settled = false;

  get finished(): boolean {
    return this.settled;
  }
  #interpret: ReplyInterpreter<T> | undefined;
  #resolve: ((value: T) => void) | undefined;
  #reject: ((err: Error) => void) | undefined;
  readonly #router: ReplyRouter;

  constructor(
    router: ReplyRouter,
    correlationId: string,
    timeoutMs: number,
    interpret: ReplyInterpreter<T>,
    label: string,
  ) {
    this.#router = router;
    this.correlationId = correlationId;
    this.timeoutMs = timeoutMs;
    this.deadline = performance.now() + timeoutMs;
    this.#interpret = interpret;
    this.label = label;
    // Callers await `promise` in the turn they start waiting (requestReply), before a cancel or
    // a reply can settle it: no rejection goes unhandled, and no extra handler per request.
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** Stops waiting and rejects `promise` with `reason`; a reply arriving later counts as late. */
  cancel(reason: Error): void {
    if (this.settled) return;
    this.#router.forget(this);
    this.#finish(undefined, reason);
  }

  /** @internal A reply with this correlation id arrived. */
  deliver(message: ConsumeMessage): void {
    let value: T | undefined;
    try {
      value = (this.#interpret as ReplyInterpreter<T>)(message); // set until settled
    } catch (err) {
      this.#finish(
        undefined,
        err instanceof BridgeError
          ? err
          : new BridgeError('BRIDGE_BAD_REPLY', 'the reply could not be read', { cause: err }),
      );
      return;
    }
    if (value !== undefined) this.#finish(value, undefined);
  }

  /** @internal Settles once and drops what the wait no longer needs (waits can sit in queues). */
  fail(err: Error): void {
    this.#finish(undefined, err);
  }

  #finish(value: T | undefined, err: Error | undefined): void {
    if (this.settled) return;
    this.settled = true;
    this.#router.settled(this);
    const resolve = this.#resolve;
    const reject = this.#reject;
    this.#resolve = undefined;
    this.#reject = undefined;
    this.#interpret = undefined;
    if (err !== undefined) reject?.(err);
    else resolve?.(value as T); // value is the interpreted reply when err is undefined
  }
}

/** How many given-up correlation ids are remembered to attribute late replies to their route. */
const GONE_MEMORY = 10_000;

export interface ReplyRouterEvents {
  /**
   * A reply nobody waits for any more: the label of the request that gave up on it while still
   * remembered, else undefined.
   */
  late: [label: string | undefined];
}

export class ReplyRouter extends EventEmitter<ReplyRouterEvents> {
  readonly #waiters = new Map<string, ReplyWait<unknown>>();
  /** Per timeout, the waits in the order they began (so in deadline order). */
  readonly #queues = new Map<number, DeadlineQueue<ReplyWait<unknown>>>();
  readonly #gone = new Map<string, string>();

  constructor(link: BrokerLink) {
    super();
    link.addChannelSetup(async (channel: ConfirmChannel) => {
      await channel.consume(DIRECT_REPLY_TO, (msg) => msg && this.#deliver(msg), { noAck: true });
    });
    link.on('channel-closed', () =>
      this.#failAll('the broker channel closed before the reply arrived'),
    );
  }

  /** Requests waiting for a reply. */
  get pending(): number {
    return this.#waiters.size;
  }

  /**
   * Starts waiting for replies with `correlationId` (call before publishing the request, so a
   * fast reply is not missed). Rejects with BRIDGE_REPLY_TIMEOUT after `timeoutMs`, or with
   * BRIDGE_CONNECTION_LOST when the channel closes.
   */
  wait<T>(
    correlationId: string,
    timeoutMs: number,
    interpret: ReplyInterpreter<T>,
    label = '',
  ): ReplyWait<T> {
    const wait = new ReplyWait<T>(this, correlationId, timeoutMs, interpret, label);
    this.#waiters.set(correlationId, wait as ReplyWait<unknown>); // stored type-erased, delivered by correlation id
    let queue = this.#queues.get(timeoutMs);
    if (queue === undefined) {
      queue = new DeadlineQueue((expired) => this.#timeOut(expired));
      this.#queues.set(timeoutMs, queue);
    }
    queue.add(wait as ReplyWait<unknown>);
    return wait;
  }

  /** @internal A wait settled: it leaves the map; settled waits leave their queue from the front. */
  settled(wait: { readonly correlationId: string }): void {
    this.#waiters.delete(wait.correlationId);
  }

  /** @internal A wait was given up: a reply for it later is late, counted for its route. */
  forget(wait: { readonly correlationId: string; readonly label: string }): void {
    this.#remember(wait.correlationId, wait.label);
  }

  #deliver(message: ConsumeMessage): void {
    const id: unknown = message.properties.correlationId;
    const waiter = typeof id === 'string' ? this.#waiters.get(id) : undefined;
    if (waiter === undefined) {
      const label = typeof id === 'string' ? this.#gone.get(id) : undefined;
      if (label !== undefined && typeof id === 'string') this.#gone.delete(id);
      this.emit('late', label);
      return;
    }
    waiter.deliver(message);
  }

  #timeOut(wait: ReplyWait<unknown>): void {
    this.#remember(wait.correlationId, wait.label);
    wait.fail(
      new BridgeError(
        'BRIDGE_REPLY_TIMEOUT',
        `no reply from the backend within ${wait.timeoutMs} ms`,
      ),
    );
  }

  #remember(correlationId: string, label: string): void {
    this.#gone.set(correlationId, label);
    if (this.#gone.size > GONE_MEMORY) {
      const oldest = this.#gone.keys().next();
      if (oldest.done !== true) this.#gone.delete(oldest.value);
    }
  }

  #failAll(detail: string): void {
    for (const w of [...this.#waiters.values()])
      w.fail(new BridgeError('BRIDGE_CONNECTION_LOST', detail));
  }

  /** Fails every waiter and stops the deadline timers (shutdown). */
  close(): void {
    for (const queue of this.#queues.values()) queue.close();
    this.#failAll('the bridge is shutting down');
  }
}
