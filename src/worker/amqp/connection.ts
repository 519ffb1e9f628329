/**
 * The worker's broker link: amqp-connection-manager keeps the connection (failover across URLs,
 * heartbeats, reconnect); this module owns the one confirm channel on it, re-opens that channel
 * after a channel-level error, asserts topology on every (re)open and tracks connected/blocked.
 *
 * We deliberately do not publish through ChannelWrapper: its offline queue is unbounded and it
 * never recreates a channel closed by a channel error (docs/failure-modes.md #4, #5; ACM issues #190, #347).
 */
import { EventEmitter } from 'node:events';
import amqp, { type AmqpConnectionManager } from 'amqp-connection-manager';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import type { Config } from '../../shared/config-schema.js';
import type { AmqpState } from '../../shared/ipc.js';
import { assertTopology } from './topology.js';

export interface BrokerLinkOptions {
  readonly amqp: Config['amqp'];
  readonly topology: Config['topology'];
  /** Shown in the management UI's connection list. */
  readonly connectionName: string;
  /**
   * Which of `amqp.urls` to try first (the worker's slot, modulo their count), so that the
   * workers of a bridge spread over a cluster's nodes instead of all taking the first URL.
   */
  readonly firstUrl?: number;
}

/** Server-side reason a channel was closed: AMQP reply code (e.g. 404 NOT_FOUND) and the method that caused it. */
export interface ChannelCloseInfo {
  readonly replyCode: number | undefined;
  /** AMQP class and method ids of the failed operation (60/40 = basic.publish), when the broker named one. */
  readonly classId: number | undefined;
  readonly methodId: number | undefined;
  readonly message: string;
}

/** True when the broker closed the channel because a basic.publish named an exchange that does not exist. */
export function isMissingExchangeOnPublish(info: ChannelCloseInfo | undefined): boolean {
  return info?.replyCode === 404 && info.classId === 60 && info.methodId === 40;
}

/** Re-declaring the topology after unroutable publishes: at most this often. */
const REASSERT_INTERVAL_MS = 1000;

/** Something went wrong with the broker, for main.ts to log; the link recovers by itself. */
export interface LinkProblem {
  readonly what: string;
  readonly err: unknown;
}

/**
 * What a BrokerLink tells its users. `error` is never emitted (an unhandled one would kill the
 * worker): problems arrive as `problem`.
 */
export interface BrokerLinkEvents {
  state: [state: AmqpState];
  /** Connected to a broker node (`host:port`); `reconnect` when the link had been up before. */
  connected: [node: string, reconnect: boolean];
  /** A fresh confirm channel is open and the topology asserted on it. */
  channel: [channel: ConfirmChannel];
  'channel-closed': [info: ChannelCloseInfo | undefined];
  /** The topology was declared again after the broker returned a publish as unroutable. */
  'topology-reasserted': [];
  problem: [problem: LinkProblem];
}

/** `host:port` of a broker URL, never its credentials: the label of the node a worker is on. */
function nodeOf(url: unknown): string {
  const text = typeof url === 'string' ? url : '';
  try {
    const parsed = new URL(text);
    return `${parsed.hostname}:${parsed.port === '' ? (parsed.protocol === 'amqps:' ? '5671' : '5672') : parsed.port}`;
  } catch {
    return 'unknown';
  }
}

export class BrokerLink extends EventEmitter<BrokerLinkEvents> {
  #state: AmqpState = 'connecting';
  #channel: ConfirmChannel | undefined;
  #model: ChannelModel | undefined;
  #manager: AmqpConnectionManager | undefined;
  #closing: Promise<void> | undefined;
  #reopenTimer: NodeJS.Timeout | undefined;
  #reopenAttempts = 0;
  #reopenInProgress = false;
  #reasserting = false;
  #lastReassert = -Infinity;
  readonly #closeInfo = new WeakMap<ConfirmChannel, ChannelCloseInfo>();
  readonly #setups: Array<(channel: ConfirmChannel) => Promise<void>> = [];
  readonly #options: BrokerLinkOptions;
  #node: string | undefined;
  #everConnected = false;

  constructor(options: BrokerLinkOptions) {
    super();
    this.#options = options;
  }

  get state(): AmqpState {
    return this.#state;
  }

  /** The node the connection is up to (`host:port`), undefined while there is none. */
  get node(): string | undefined {
    return this.#node;
  }

  /** The open confirm channel, or undefined while there is none (then: answer 503). */
  get channel(): ConfirmChannel | undefined {
    return this.#channel;
  }

  /** True when a publish now would reach an unblocked broker on an open channel. */
  get ready(): boolean {
    return this.#state === 'connected' && this.#channel !== undefined;
  }

  /**
   * True while the connection is up but its channel is being re-opened after a channel error:
   * a publish can wait the few milliseconds that takes instead of being refused.
   */
  get reopening(): boolean {
    return (
      (this.#reopenTimer !== undefined || this.#reopenInProgress) &&
      this.#channel === undefined &&
      this.#model !== undefined &&
      this.#closing === undefined &&
      this.#state !== 'blocked'
    );
  }

  /** Resolves with the next channel to open; rejects after `timeoutMs` or when the connection drops. */
  nextChannel(timeoutMs: number): Promise<ConfirmChannel> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('channel', onChannel);
        this.off('state', onState);
      };
      const onChannel = (channel: ConfirmChannel): void => {
        done();
        resolve(channel);
      };
      const onState = (state: AmqpState): void => {
        if (state === 'disconnected' || state === 'blocked') {
          done();
          reject(new Error(`broker ${state} while waiting for a channel`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no channel within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('channel', onChannel);
      this.on('state', onState);
    });
  }

  /**
   * Adds a step run on every new channel after topology and before the channel is used (e.g. the
   * direct reply-to consumer, which must exist before a request names it in reply_to).
   */
  addChannelSetup(setup: (channel: ConfirmChannel) => Promise<void>): void {
    this.#setups.push(setup);
  }

  start(): void {
    const { amqp: opts, connectionName, firstUrl = 0 } = this.#options;
    const first = firstUrl % opts.urls.length;
    // amqp-connection-manager tries the list in order from its start, and moves on to the next
    // entry after each failure, so the rotation only decides where each worker begins.
    const urls = [...opts.urls.slice(first), ...opts.urls.slice(0, first)];
    const manager = amqp.connect(urls, {
      heartbeatIntervalInSeconds: opts.heartbeatSeconds,
      reconnectTimeInSeconds: opts.reconnectSeconds,
      connectionOptions: {
        // Nagle's algorithm cost RPC round trips 35x here (docs/failure-modes.md #11).
        noDelay: true,
        clientProperties: { connection_name: connectionName },
      },
    });
    this.#manager = manager;
    manager.on('connect', ({ connection, url }) => {
      // ACM types the connection as amqplib's Connection; at runtime it is the ChannelModel.
      this.#model = connection as unknown as ChannelModel;
      this.#reopenAttempts = 0;
      this.#node = nodeOf(url);
      this.emit('connected', this.#node, this.#everConnected);
      this.#everConnected = true;
      void this.#openChannel(this.#model);
    });
    manager.on('disconnect', ({ err }) => {
      this.#model = undefined;
      this.#node = undefined;
      if (this.#reopenTimer !== undefined) clearTimeout(this.#reopenTimer);
      this.#reopenTimer = undefined;
      this.#dropChannel(undefined);
      this.#setState('disconnected');
      this.emit('problem', { what: 'broker connection lost', err });
    });
    manager.on('connectFailed', ({ err }) => {
      this.#setState('disconnected');
      this.emit('problem', { what: 'broker connection failed', err });
    });
    manager.on('blocked', ({ reason }) => {
      this.#setState('blocked');
      this.emit('problem', { what: 'broker blocked publishing', err: new Error(reason) });
    });
    manager.on('unblocked', () => {
      this.#setState(this.#channel ? 'connected' : 'connecting');
    });
  }

  async #openChannel(model: ChannelModel): Promise<void> {
    let channel: ConfirmChannel | undefined;
    let closeInfo: ChannelCloseInfo | undefined;
    try {
      channel = await model.createConfirmChannel();
      channel.on(
        'error',
        (err: Error & { code?: unknown; classId?: unknown; methodId?: unknown }) => {
          // amqplib emits 'error' before rejecting the channel's pending confirms, so the reason
          // is known when those callbacks run; the listener also stops amqplib from tearing
          // down the whole connection over one channel error (docs/failure-modes.md #5).
          const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
          closeInfo = {
            replyCode: num(err.code),
            classId: num(err.classId),
            methodId: num(err.methodId),
            message: err.message,
          };
          if (channel) this.#closeInfo.set(channel, closeInfo);
        },
      );
      const opened = channel;
      channel.on('close', () => {
        if (this.#channel === opened) this.#dropChannel(closeInfo);
        // Only a broker-side channel error leaves the connection usable; a close without one is
        // the connection going away, and the manager's reconnect opens the next channel.
        if (closeInfo !== undefined && this.#model === model && this.#closing === undefined)
          this.#scheduleReopen(model);
      });
      await assertTopology(channel, this.#options.topology);
      for (const setup of this.#setups) await setup(channel);
      if (this.#model !== model || this.#closing !== undefined) {
        await channel.close().catch(() => undefined);
        return;
      }
      this.#channel = channel;
      this.#reopenAttempts = 0;
      this.#setState(this.#state === 'blocked' ? 'blocked' : 'connected');
      this.emit('channel', channel);
    } catch (err) {
      this.emit('problem', { what: 'opening the confirm channel failed (topology?)', err });
      // A failed topology assertion closes the channel; its 'close' handler schedules a retry.
      if (channel === undefined && this.#model === model) this.#scheduleReopen(model);
    }
  }

  /**
   * Declares the configured topology again, on a channel of its own so that a failure cannot
   * close the confirm channel: a queue deleted under a running bridge makes every publish to it
   * unroutable (502) until it exists again, and the bridge would otherwise only declare it on
   * the next reconnect. At most once per REASSERT_INTERVAL_MS and never twice at once.
   */
  reassertTopology(): void {
    const model = this.#model;
    const { topology } = this.#options;
    if (model === undefined || this.#closing !== undefined || this.#reasserting) return;
    if (topology.queues.length === 0 && topology.bindings.length === 0) return;
    const now = performance.now();
    if (now - this.#lastReassert < REASSERT_INTERVAL_MS) return;
    this.#reasserting = true;
    this.#lastReassert = now;
    void (async () => {
      let channel: Channel | undefined;
      try {
        channel = await model.createChannel();
        // An unhandled channel 'error' would take the whole connection down; the failure is
        // reported through the rejected declaration below.
        channel.on('error', () => undefined);
        await assertTopology(channel, topology);
        this.emit('topology-reasserted');
      } catch (err) {
        this.emit('problem', { what: 're-declaring the topology failed', err });
      } finally {
        await channel?.close().catch(() => undefined);
        this.#reasserting = false;
      }
    })();
  }

  /** Why the broker closed this channel, if it did (undefined for a connection loss). */
  closeInfoOf(channel: ConfirmChannel): ChannelCloseInfo | undefined {
    return this.#closeInfo.get(channel);
  }

  #dropChannel(info: ChannelCloseInfo | undefined): void {
    if (this.#channel === undefined) return;
    this.#channel = undefined;
    if (this.#state === 'connected') this.#setState('connecting');
    this.emit('channel-closed', info);
  }

  #scheduleReopen(model: ChannelModel): void {
    if (this.#reopenTimer !== undefined) return;
    // First retry at once (a 404 from one bad publish should cost milliseconds), then back off
    // so a persistent topology error does not spin.
    const delayMs = Math.min(
      this.#options.amqp.reconnectSeconds * 1000,
      25 * 2 ** this.#reopenAttempts - 25,
    );
    this.#reopenAttempts += 1;
    this.#reopenTimer = setTimeout(() => {
      this.#reopenTimer = undefined;
      if (this.#model !== model || this.#closing !== undefined) return;
      this.#reopenInProgress = true;
      void this.#openChannel(model).finally(() => {
        this.#reopenInProgress = false;
      });
    }, delayMs);
  }

  #setState(state: AmqpState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.emit('state', state);
  }

  /** Closes channel and connection; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#reopenTimer) clearTimeout(this.#reopenTimer);
      const channel = this.#channel;
      this.#channel = undefined;
      try {
        await channel?.close();
      } catch {
        // already closed by the broker: nothing left to release
      }
      await this.#manager?.close();
      this.#model = undefined;
      this.#setState('disconnected');
    })();
    return this.#closing;
  }
}
