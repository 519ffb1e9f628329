/**
 * Replies over RabbitMQ's direct reply-to: one no-ack consumer of `amq.rabbitmq.reply-to` on the
 * worker's channel (set up before the channel is used, as direct reply-to requires), a
 * correlation-id → waiter map with per-request deadlines, and counting of replies nobody waits for.
 *
 * A reply to a request sent on a channel that has since closed is lost (the broker returns it
 * to the responder, PITFALLS #10): so every waiter fails at once with 503 when the channel goes.
 */
import { EventEmitter } from 'node:events';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { BridgeError } from '../../shared/errors.js';
import type { BrokerLink } from './connection.js';

export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

/**
 * Decides what a reply means for its waiter: `undefined` to keep waiting (e.g. Celery's interim
 * STARTED state), or the final value. May throw a BridgeError to fail the request.
 */
export type ReplyInterpreter<T> = (message: ConsumeMessage) => T | undefined;

interface Waiter {
  readonly onMessage: (message: ConsumeMessage) => void;
  readonly fail: (err: BridgeError) => void;
}

export interface PendingReply<T> {
  readonly promise: Promise<T>;
  /** Stops waiting and rejects `promise` with `reason`; a reply arriving later counts as late. */
  cancel(reason: Error): void;
}

/** How many given-up correlation ids are remembered to attribute late replies to their route. */
const GONE_MEMORY = 10_000;

/**
 * Events: `late` (label) for a reply nobody waits for any more -- the label of the request that
 * gave up on it when still remembered, else undefined.
 */
export class ReplyRouter extends EventEmitter {
  readonly #waiters = new Map<string, Waiter>();
  readonly #gone = new Map<string, string>();

  constructor(link: BrokerLink) {
    super();
    link.addChannelSetup(async (channel: ConfirmChannel) => {
      await channel.consume(DIRECT_REPLY_TO, (msg) => msg && this.#deliver(msg), { noAck: true });
    });
    link.on('channel-closed', () => this.#failAll('the broker channel closed before the reply arrived'));
  }

  /** Requests waiting for a reply. */
  get pending(): number {
    return this.#waiters.size;
  }

  /**
   * Starts waiting for replies with `correlationId` (call before publishing the request, so a
   * fast reply is not missed). Rejects with BRIDGE_REPLY_TIMEOUT after `timeoutMs`, or with
   * BRIDGE_BROKER_UNAVAILABLE when the channel closes.
   */
  wait<T>(correlationId: string, timeoutMs: number, interpret: ReplyInterpreter<T>, label = ''): PendingReply<T> {
    let cancel = (_reason: Error): void => undefined;
    const promise = new Promise<T>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(correlationId);
      };
      const timer = setTimeout(() => {
        done();
        this.#remember(correlationId, label);
        reject(new BridgeError('BRIDGE_REPLY_TIMEOUT', `no reply from the backend within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.set(correlationId, {
        onMessage: (message) => {
          let value: T | undefined;
          try {
            value = interpret(message);
          } catch (err) {
            done();
            reject(err instanceof BridgeError ? err : new BridgeError('BRIDGE_BAD_REPLY', 'the reply could not be read', { cause: err }));
            return;
          }
          if (value === undefined) return;
          done();
          resolve(value);
        },
        fail: (err) => {
          done();
          reject(err);
        },
      });
      cancel = (reason) => {
        if (!this.#waiters.has(correlationId)) return;
        done();
        this.#remember(correlationId, label);
        reject(reason);
      };
    });
    // Callers may cancel before they await (e.g. the publish failed): never an unhandled rejection.
    promise.catch(() => undefined);
    return { promise, cancel: (reason) => cancel(reason) };
  }

  #deliver(message: ConsumeMessage): void {
    const id = message.properties.correlationId;
    const waiter = typeof id === 'string' ? this.#waiters.get(id) : undefined;
    if (waiter === undefined) {
      const label = typeof id === 'string' ? this.#gone.get(id) : undefined;
      if (label !== undefined && typeof id === 'string') this.#gone.delete(id);
      this.emit('late', label);
      return;
    }
    waiter.onMessage(message);
  }

  #remember(correlationId: string, label: string): void {
    this.#gone.set(correlationId, label);
    if (this.#gone.size > GONE_MEMORY) {
      const oldest = this.#gone.keys().next();
      if (oldest.done !== true) this.#gone.delete(oldest.value);
    }
  }

  #failAll(detail: string): void {
    const waiters = [...this.#waiters.values()];
    for (const w of waiters) w.fail(new BridgeError('BRIDGE_BROKER_UNAVAILABLE', detail));
  }

  /** Fails every waiter (shutdown). */
  close(): void {
    this.#failAll('the bridge is shutting down');
  }
}
