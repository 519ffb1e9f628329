/**
 * Confirm-gated publishing on the link's raw confirm channel: maps ack / nack / basic.return /
 * channel loss / timeout to an outcome, and owns the per-worker `maxInFlight` admission gate.
 */
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { BridgeError } from '../../shared/errors.js';
import type { PublishOutcome } from '../../shared/types.js';
import type { BrokerLink } from './connection.js';

export interface PublisherOptions {
  readonly maxInFlight: number;
  readonly confirmTimeoutMs: number;
}

/** Called once per publish with its outcome (and confirm time when the broker answered). */
export type PublishObserver = (label: string, outcome: PublishOutcome, confirmSeconds: number | undefined) => void;

/** The header that identifies a publish when the broker hands it back with basic.return. */
export const TRACK_HEADER = 'x-request-id';

interface PendingPublish {
  returned: boolean;
}

/** Classifies the failure of one publish into the error the partner sees (the one mapping). */
export function publishErrorOutcome(err: BridgeError): PublishOutcome {
  switch (err.code) {
    case 'BRIDGE_PUBLISH_NACKED':
      return 'nacked';
    case 'BRIDGE_UNROUTABLE':
      return 'returned';
    case 'BRIDGE_CONFIRM_TIMEOUT':
      return 'timeout';
    case 'BRIDGE_OVERLOADED':
      return 'overloaded';
    default:
      return 'unavailable';
  }
}

export class Publisher {
  #inFlight = 0;
  readonly #pending = new Map<string, PendingPublish>();
  readonly #link: BrokerLink;
  readonly #options: PublisherOptions;
  /** Set by main.ts to feed metrics. */
  observe: PublishObserver = () => undefined;

  constructor(link: BrokerLink, options: PublisherOptions) {
    this.#link = link;
    this.#options = options;
    link.on('channel', (channel: ConfirmChannel) => {
      // Unroutable mandatory messages come back as basic.return and are then *acked*; the
      // return always precedes the ack on the channel, so marking here is race-free (PITFALLS #2).
      channel.on('return', (msg: Message) => {
        const id: unknown = msg.properties.headers?.[TRACK_HEADER];
        if (typeof id === 'string') {
          const pending = this.#pending.get(id);
          if (pending) pending.returned = true;
        }
      });
    });
  }

  /** Requests admitted and not yet released: publishes awaiting confirms, bodies streaming in. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Admission before the body is read: undefined when admitted (then `release()` exactly once),
   * else the 503 to answer at once. Never lets a request wait for a broker that is not there.
   */
  admit(): BridgeError | undefined {
    const link = this.#link;
    if (link.state === 'blocked') {
      return new BridgeError('BRIDGE_BROKER_UNAVAILABLE', 'the broker is blocking publishers (memory or disk alarm)');
    }
    if (!link.ready && !link.reopening) return new BridgeError('BRIDGE_BROKER_UNAVAILABLE', 'not connected to the broker');
    if (this.#inFlight >= this.#options.maxInFlight) {
      return new BridgeError('BRIDGE_OVERLOADED', `maxInFlight (${this.#options.maxInFlight}) requests are in flight`);
    }
    this.#inFlight += 1;
    return undefined;
  }

  release(): void {
    this.#inFlight -= 1;
  }

  /**
   * Publishes and resolves once the broker confirmed it, having routed it to at least one queue.
   * Rejects with a BridgeError: nack or return → 502; channel/connection lost → 503 (outcome
   * unknown, the partner retries with the same Idempotency-Key); no confirm in time → 504.
   * `options.headers[TRACK_HEADER]` must be unique among in-flight publishes.
   */
  async publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish, label = ''): Promise<void> {
    const link = this.#link;
    let channel = link.channel;
    if (channel === undefined && link.reopening) {
      // A channel error (e.g. another route's missing exchange) is being recovered from: that
      // takes milliseconds, so wait for it within the confirm budget rather than refuse.
      channel = await link.nextChannel(this.#options.confirmTimeoutMs).catch(() => undefined);
    }
    if (channel === undefined || link.state === 'blocked') {
      this.observe(label, 'unavailable', undefined);
      throw new BridgeError('BRIDGE_BROKER_UNAVAILABLE', 'not connected to the broker');
    }
    const started = performance.now();
    try {
      await this.#publishOn(channel, exchange, routingKey, content, options);
      this.observe(label, 'confirmed', (performance.now() - started) / 1000);
    } catch (err) {
      const outcome = err instanceof BridgeError ? publishErrorOutcome(err) : 'unavailable';
      this.observe(label, outcome, outcome === 'nacked' || outcome === 'returned' ? (performance.now() - started) / 1000 : undefined);
      throw err;
    }
  }

  #publishOn(
    channel: ConfirmChannel,
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
  ): Promise<void> {
    const link = this.#link;
    const trackId = String(options.headers?.[TRACK_HEADER]);
    const entry: PendingPublish = { returned: false };
    this.#pending.set(trackId, entry);

    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err: BridgeError | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pending.delete(trackId);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(
        () =>
          settle(
            new BridgeError('BRIDGE_CONFIRM_TIMEOUT', `the broker did not confirm within ${this.#options.confirmTimeoutMs} ms`),
          ),
        this.#options.confirmTimeoutMs,
      );
      try {
        channel.publish(exchange, routingKey, content, options, (err: unknown) => {
          if (err === null || err === undefined) {
            settle(
              entry.returned
                ? new BridgeError('BRIDGE_UNROUTABLE', `no queue is bound for routing key "${routingKey}" on exchange "${exchange}"`)
                : undefined,
            );
          } else {
            settle(this.#classify(channel, err, exchange));
          }
        });
        // After publish: the hold must be queued behind amqplib's own flush (write-coalescer.ts).
        link.coalesceWrites();
      } catch (err) {
        // amqplib throws synchronously when the channel closed between our check and the call.
        settle(new BridgeError('BRIDGE_BROKER_UNAVAILABLE', 'the broker channel is closed', { cause: err }));
      }
    });
  }

  #classify(channel: ConfirmChannel, err: unknown, exchange: string): BridgeError {
    const closed = this.#link.closeInfoOf(channel);
    if (closed === undefined && err instanceof Error && err.message === 'message nacked') {
      // amqplib reports a broker nack with exactly this message (lib/channel.js).
      return new BridgeError('BRIDGE_PUBLISH_NACKED', 'the broker refused the message (nack), e.g. a full queue', {
        cause: err,
      });
    }
    if (closed?.replyCode === 404) {
      return new BridgeError('BRIDGE_UNROUTABLE', `exchange "${exchange}" does not exist (broker: ${closed.message})`, {
        cause: err,
      });
    }
    return new BridgeError('BRIDGE_BROKER_UNAVAILABLE', 'the broker connection or channel was lost before the confirm', {
      cause: err,
    });
  }
}
