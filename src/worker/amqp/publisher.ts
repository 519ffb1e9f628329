/**
 * Confirm-gated publishing on the link's confirm channel: encodes a message with its route's
 * template, queues the frames for this turn's socket write, and settles each publish from the
 * broker's own answers, told apart by their frames: basic.ack (confirmed, or unroutable when a
 * basic.return came first), basic.nack, channel loss, or no answer within confirmTimeoutMs
 * (found by one timer armed for the oldest publish, not a timer per publish). Also notices a
 * stalled broker: publishes waiting `stallMs` with no confirm arriving at all (a frozen node or a
 * stuck disk, which heartbeats take tens of seconds to notice) -- admission then refuses at once.
 */
import { EventEmitter } from 'node:events';
import type { ConfirmChannel, Message } from 'amqplib';
import { BridgeError, ERRORS, type ErrorCode } from '../../shared/errors.js';
import type { RequestRecord } from '../request.js';
import { ConfirmWindow, type Pending, type Settlement } from './confirm-window.js';
import {
  isMissingExchangeOnPublish,
  type BrokerLink,
  type ChannelCloseInfo,
} from './connection.js';
import { FrameWriter } from './frame-writer.js';
import type { PublishFields, PublishTemplate } from './frames.js';
import { wireOf, type Wire } from './wire.js';

export interface PublisherOptions {
  readonly confirmTimeoutMs: number;
  /** 0: never call the broker stalled. */
  readonly stallMs: number;
}

export interface PublisherEvents {
  /** The broker stalled (true: publishes wait and no confirm came for stallMs) or came back. */
  stall: [stalled: boolean];
  /**
   * The confirm channel is being replaced: a publish to this exchange and routing key was nacked
   * before any had been confirmed on the channel (see `BrokerLink.replaceChannel`).
   */
  replace: [exchange: string, routingKey: string];
}

/** AMQP reply code of a basic.return for a mandatory message no queue is bound for. */
const NO_ROUTE = 312;

/** The header that identifies a publish when the broker hands it back with basic.return. */
const TRACK_HEADER = 'x-request-id';

/**
 * Channel replacements after nacks (see #suspect): the first at once, then at gaps growing by
 * half up to the last. A quorum queue's record names its new leader within about a second of a
 * `kill -9` (0.25–0.7 s measured, docs/failure-modes.md #18), so the first gaps are short; a queue
 * that is merely full (reject-publish) settles at one channel open every few seconds.
 */
const REPLACE_GAP_FIRST_MS = 50;
const REPLACE_GAP_GROWTH = 1.5;
const REPLACE_GAP_MAX_MS = 5000;

class PendingPublish implements Pending {
  seq = 0;
  returned = false;
  settled = false;
  readonly deadline: number;
  readonly trackId: string;
  readonly started: number;
  readonly routingKey: string;
  readonly template: PublishTemplate;
  readonly record: RequestRecord;
  readonly confirmed: () => void;
  readonly failed: (err: BridgeError) => void;

  constructor(
    started: number,
    timeoutMs: number,
    trackId: string,
    template: PublishTemplate,
    routingKey: string,
    record: RequestRecord,
    confirmed: () => void,
    failed: (err: BridgeError) => void,
  ) {
    this.started = started;
    this.deadline = started + timeoutMs;
    this.trackId = trackId;
    this.template = template;
    this.routingKey = routingKey;
    this.record = record;
    this.confirmed = confirmed;
    this.failed = failed;
  }
}

/** One open confirm channel with what publishing on it needs. */
interface OpenChannel {
  readonly channel: ConfirmChannel;
  readonly wire: Wire;
  readonly writer: FrameWriter;
  readonly window: ConfirmWindow<PendingPublish>;
  /** Templates (routes) with a publish confirmed on this channel. */
  readonly proven: Set<PublishTemplate>;
}

const writers = new WeakMap<Wire['socket'], FrameWriter>();

export class Publisher extends EventEmitter<PublisherEvents> {
  readonly #link: BrokerLink;
  readonly #options: PublisherOptions;
  #open: OpenChannel | undefined;
  /** Replaced channels with publishes still waiting for their confirm. */
  readonly #draining = new Set<OpenChannel>();
  /** Templates whose nack on an unproven channel asked for a replacement, until one is confirmed. */
  readonly #suspects = new Set<PublishTemplate>();
  #replaceGapMs = REPLACE_GAP_FIRST_MS;
  #lastReplaceAt = -Infinity;
  #replaceTimer: NodeJS.Timeout | undefined;
  /** Armed for the oldest publish's deadline while any publish waits. */
  #deadlineTimer: NodeJS.Timeout | undefined;
  /** Exchanges that confirmed a publish on this connection: a 404 on publish cannot be theirs. */
  #existingExchanges = new Set<string>();
  #confirmed = 0;
  /** performance.now() of the last basic.ack or basic.nack. */
  #lastConfirmAt = -Infinity;
  #stalled = false;
  #lastProbeAt = -Infinity;
  /** Armed while publishes wait and the broker is not (yet) called stalled. */
  #stallTimer: NodeJS.Timeout | undefined;

  constructor(link: BrokerLink, options: PublisherOptions) {
    super();
    this.#link = link;
    this.#options = options;
    link.on('channel', (channel) => this.#attach(channel));
    link.on('state', (state) => {
      if (state === 'disconnected') this.#existingExchanges = new Set();
    });
  }

  /** Publishes waiting for their confirm. */
  get unconfirmed(): number {
    let n = this.#open?.window.size ?? 0;
    for (const d of this.#draining) n += d.window.size;
    return n;
  }

  /** The oldest publish waiting on any channel (a replaced channel's are older than the current's). */
  #oldest(): PendingPublish | undefined {
    // Admission asks for every request; replaced channels are rare, so skip the iterator.
    if (this.#draining.size !== 0)
      for (const d of this.#draining) {
        const p = d.window.oldest;
        if (p !== undefined) return p;
      }
    return this.#open?.window.oldest;
  }

  /** Confirms received so far (for the admission's rate estimate). */
  get confirmedTotal(): number {
    return this.#confirmed;
  }

  /** Publishes have waited stallMs with no confirm arriving at all (see `stall` events). */
  get stalled(): boolean {
    return this.#stalled;
  }

  /**
   * While stalled with nothing left waiting (every waiting publish timed out), one request per
   * stallMs may publish to find out whether the broker confirms again: a broker that never
   * confirms an old publish (e.g. a quorum queue left without a leader) must not keep the worker
   * refusing for good, and a frozen one costs one 504 per confirm timeout, not a burst. True
   * when the caller may go ahead as that probe.
   */
  takeProbe(): boolean {
    if (!this.#stalled || this.unconfirmed > 0) return false;
    const now = performance.now();
    if (now - this.#lastProbeAt < this.#options.stallMs) return false;
    this.#lastProbeAt = now;
    return true;
  }

  /** When the oldest publish still waiting was made (performance.now()), if any waits. */
  get oldestWaitingSince(): number | undefined {
    return this.#oldest()?.started;
  }

  /**
   * Publishes one message and resolves once the broker confirmed it, routed to at least one queue.
   * Rejects with a BridgeError: nack or return → 502; channel lost before the confirm → 503
   * (outcome unknown); no confirm within confirmTimeoutMs → 504; not connected → 503. Holds
   * `record` until settled and writes the publish outcome into it. `trackId` is the value of the
   * message's TRACK_HEADER (unique among publishes in flight): it identifies a basic.return.
   */
  publish(
    template: PublishTemplate,
    fields: PublishFields,
    trackId: string,
    record: RequestRecord,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) =>
      this.send(template, fields, trackId, record, resolve, reject),
    );
  }

  /**
   * `publish` for callers that do not wait for the confirm (rpc: the reply proves delivery), with
   * no promise to create: exactly one of `confirmed` and `failed` is called, `failed` with the
   * BridgeError `publish` would reject with.
   */
  send(
    template: PublishTemplate,
    fields: PublishFields,
    trackId: string,
    record: RequestRecord,
    confirmed: () => void,
    failed: (err: BridgeError) => void,
  ): void {
    const pending = new PendingPublish(
      performance.now(),
      this.#options.confirmTimeoutMs,
      trackId,
      template,
      fields.routingKey,
      record,
      confirmed,
      failed,
    );
    const open = this.#open;
    if (open !== undefined && this.#link.state !== 'blocked')
      this.#publishOn(open, template, fields, pending);
    else void this.#publishAfterReopen(template, fields, pending);
  }

  async #publishAfterReopen(
    template: PublishTemplate,
    fields: PublishFields,
    pending: PendingPublish,
  ): Promise<void> {
    if (this.#link.reopening) {
      // A channel error (e.g. another route's missing exchange) is being recovered from: that
      // takes milliseconds, so wait for it within the confirm budget rather than refuse.
      await this.#link.nextChannel(this.#options.confirmTimeoutMs).catch(() => undefined);
    }
    const open = this.#open;
    if (open === undefined || this.#link.state === 'blocked') {
      pending.record.settlePublish(ERRORS.BRIDGE_BROKER_UNAVAILABLE.publishOutcome, undefined);
      pending.failed(new BridgeError('BRIDGE_BROKER_UNAVAILABLE', 'not connected to the broker'));
      return;
    }
    this.#publishOn(open, template, fields, pending);
  }

  #publishOn(
    open: OpenChannel,
    template: PublishTemplate,
    fields: PublishFields,
    pending: PendingPublish,
  ): void {
    const frames = template.encode(open.wire.channelNumber, open.wire.frameMax, fields);
    pending.record.hold();
    open.window.add(pending);
    open.writer.write(frames);
    if (this.#deadlineTimer === undefined) this.#armDeadline(pending.deadline);
    if (this.#stallTimer === undefined && !this.#stalled && this.#options.stallMs > 0)
      this.#armStallCheck(pending.started);
  }

  /** Checks for a stall once `stallMs` has passed since `since` (a publish, or the last confirm). */
  #armStallCheck(since: number): void {
    this.#stallTimer = setTimeout(
      this.#onStallCheck,
      Math.max(0, Math.ceil(since + this.#options.stallMs - performance.now()) + 1),
    );
    this.#stallTimer.unref();
  }

  readonly #onStallCheck = (): void => {
    this.#stallTimer = undefined;
    const oldest = this.#oldest();
    if (oldest === undefined) return;
    const since = Math.max(oldest.started, this.#lastConfirmAt);
    if (performance.now() - since >= this.#options.stallMs) this.#setStalled(true);
    else this.#armStallCheck(since);
  };

  #setStalled(stalled: boolean): void {
    if (stalled === this.#stalled) return;
    this.#stalled = stalled;
    if (!stalled) {
      const oldest = this.#oldest();
      if (oldest !== undefined && this.#stallTimer === undefined)
        this.#armStallCheck(this.#lastConfirmAt);
    }
    this.emit('stall', stalled);
  }

  readonly #confirmArrived = (): void => {
    this.#lastConfirmAt = performance.now();
    if (this.#stalled) this.#setStalled(false);
  };

  /**
   * Publishes all wait the same timeout, so they expire oldest first: one timer for the oldest
   * is enough, and none runs while nothing waits (an idle worker is not woken up for nothing).
   */
  #armDeadline(deadline: number): void {
    this.#deadlineTimer = setTimeout(
      this.#onDeadline,
      Math.max(0, Math.ceil(deadline - performance.now()) + 1),
    );
    this.#deadlineTimer.unref();
  }

  readonly #onDeadline = (): void => {
    this.#deadlineTimer = undefined;
    const now = performance.now();
    for (const d of this.#draining) d.window.expire(now);
    this.#open?.window.expire(now);
    const oldest = this.#oldest();
    if (oldest !== undefined) this.#armDeadline(oldest.deadline);
  };

  #attach(channel: ConfirmChannel): void {
    const wire = wireOf(channel);
    let writer = writers.get(wire.socket);
    if (writer === undefined) {
      writer = new FrameWriter(wire.socket);
      writers.set(wire.socket, writer);
    }
    let lostBecause: ChannelCloseInfo | undefined;
    const window = new ConfirmWindow<PendingPublish>((p, how) =>
      this.#settle(open, p, how, lostBecause),
    );
    const open: OpenChannel = { channel, wire, writer, window, proven: new Set() };
    channel.on('ack', (f: { deliveryTag: number; multiple: boolean }) => {
      this.#confirmArrived();
      window.confirm(f.deliveryTag, f.multiple, 'ack');
    });
    channel.on('nack', (f: { deliveryTag: number; multiple: boolean }) => {
      this.#confirmArrived();
      window.confirm(f.deliveryTag, f.multiple, 'nack');
    });
    // Unroutable mandatory messages come back as basic.return and are then *acked*; the return
    // always precedes the ack on the channel, so marking here is race-free (docs/failure-modes.md #2).
    channel.on('return', (msg: Message) => {
      const id: unknown = msg.properties.headers?.[TRACK_HEADER];
      if (typeof id === 'string') window.markReturned(id);
      // NO_ROUTE: perhaps a declared queue was deleted under us; declare it again.
      // basic.return's fields carry replyCode, which amqplib's MessageFields type leaves out.
      const { replyCode } = msg.fields as { replyCode?: unknown };
      if (replyCode === NO_ROUTE) this.#link.reassertTopology();
    });
    channel.on('close', () => {
      // The channel's 'error' (if any) came first: the reason is known here.
      lostBecause = this.#link.closeInfoOf(channel);
      this.#draining.delete(open);
      window.loseAll();
      if (this.#open !== open) return;
      this.#open = undefined;
      // Nothing waits on a stalled broker any more; the link's state tells what comes next.
      this.#setStalled(false);
    });
    // A replacement on the same connection: the previous channel's publishes still settle there.
    const previous = this.#open;
    if (previous !== undefined && previous.window.size > 0) this.#draining.add(previous);
    this.#open = open;
  }

  /**
   * A publish of `template` was nacked on `open` before any of its publishes was confirmed there:
   * the channel may be stuck on a quorum queue's dead leader (BrokerLink.replaceChannel), so the
   * link replaces it, at once the first time and then at growing gaps while the nacks go on.
   */
  #suspect(open: OpenChannel, p: PendingPublish): void {
    if (open !== this.#open) return;
    this.#suspects.add(p.template);
    if (this.#replaceTimer !== undefined) return;
    const wait = Math.max(0, this.#lastReplaceAt + this.#replaceGapMs - performance.now());
    this.#replaceTimer = setTimeout(() => {
      this.#replaceTimer = undefined;
      if (this.#open !== open || !this.#link.replaceChannel()) return;
      this.#lastReplaceAt = performance.now();
      this.#replaceGapMs = Math.min(this.#replaceGapMs * REPLACE_GAP_GROWTH, REPLACE_GAP_MAX_MS);
      this.emit('replace', p.template.exchange, p.routingKey);
    }, wait);
    this.#replaceTimer.unref();
  }

  #settle(
    open: OpenChannel,
    p: PendingPublish,
    how: Settlement,
    lostBecause: ChannelCloseInfo | undefined,
  ): void {
    if (open !== this.#open && open.window.size === 0) this.#draining.delete(open);
    const seconds = (performance.now() - p.started) / 1000;
    let code: ErrorCode | undefined;
    let detail = '';
    switch (how) {
      case 'ack':
        if (p.returned) {
          code = 'BRIDGE_UNROUTABLE';
          detail = `no queue is bound for routing key "${p.routingKey}" on exchange "${p.template.exchange}"`;
        } else {
          this.#confirmed += 1;
          this.#existingExchanges.add(p.template.exchange);
          open.proven.add(p.template);
          if (this.#suspects.size !== 0 && this.#suspects.delete(p.template))
            if (this.#suspects.size === 0) this.#replaceGapMs = REPLACE_GAP_FIRST_MS;
        }
        break;
      case 'nack':
        if (!open.proven.has(p.template)) this.#suspect(open, p);
        code = 'BRIDGE_PUBLISH_NACKED';
        detail = 'the broker refused the message (nack), e.g. a full queue';
        break;
      case 'timeout':
        code = 'BRIDGE_CONFIRM_TIMEOUT';
        detail = `the broker did not confirm within ${this.#options.confirmTimeoutMs} ms`;
        break;
      case 'lost':
        // A publish to a missing exchange closes the channel (404 on basic.publish): publishes to
        // exchanges that confirmed before were not the cause, and may have been delivered.
        if (
          isMissingExchangeOnPublish(lostBecause) &&
          !this.#existingExchanges.has(p.template.exchange)
        ) {
          code = 'BRIDGE_UNROUTABLE';
          detail = `exchange "${p.template.exchange}" does not exist (broker: ${lostBecause?.message ?? ''})`;
        } else {
          code = 'BRIDGE_CONNECTION_LOST';
          detail = 'the broker connection or channel was lost before the confirm';
        }
        break;
      default: {
        const never: never = how;
        throw new TypeError(`unknown settlement ${String(never)}`);
      }
    }
    const record = p.record;
    if (code === undefined) {
      record.settlePublish('confirmed', seconds);
      p.confirmed();
    } else {
      // The broker answered a nack or a return: that took a confirm's time too.
      record.settlePublish(
        ERRORS[code].publishOutcome,
        how === 'timeout' || how === 'lost' ? undefined : seconds,
      );
      p.failed(new BridgeError(code, detail));
    }
    record.end();
  }

  /** Stops the deadline timer (shutdown). */
  close(): void {
    if (this.#deadlineTimer !== undefined) clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    if (this.#stallTimer !== undefined) clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
    if (this.#replaceTimer !== undefined) clearTimeout(this.#replaceTimer);
    this.#replaceTimer = undefined;
  }
}
