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
  /**
   * How long a channel replaced by `replaceChannel` stays open: long enough for every confirm
   * and reply still due on it (the confirm timeout plus the longest reply wait).
   */
  readonly retireMs?: number;
  /**
   * While connected elsewhere than its first URL, how often a worker tries that URL again, to
   * move back once it answers (see `#tryHome`). Default 10 s.
   */
  readonly homeCheckMs?: number;
}

/** Default of BrokerLinkOptions.homeCheckMs. */
const HOME_CHECK_MS = 10_000;

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
  /** Moved back to its first URL's node (`host:port`) after a failover had taken it elsewhere. */
  'moved-home': [node: string];
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
  #replacing = false;
  /** Replaced channels still open for the answers due on them, each with its closing timer. */
  readonly #retiring = new Map<ConfirmChannel, NodeJS.Timeout>();
  /** Immediate attempts left at the other URLs after a lost connection (see `start`). */
  #failoverAttempts = 0;
  /** A second manager connecting to the first URL while the current one still serves. */
  #homeManager: AmqpConnectionManager | undefined;
  #homeTimer: NodeJS.Timeout | undefined;
  /** Managers moved away from, kept until the answers due on their channel are in. */
  readonly #retiringManagers = new Map<AmqpConnectionManager, NodeJS.Timeout>();

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
    const manager = this.#createManager();
    this.#manager = manager;
    this.#wire(manager);
  }

  /** The worker's URLs from its own first one on: where it connects first, and its failover order. */
  #urls(): string[] {
    const { amqp: opts, firstUrl = 0 } = this.#options;
    const first = firstUrl % opts.urls.length;
    return [...opts.urls.slice(first), ...opts.urls.slice(0, first)];
  }

  #createManager(): AmqpConnectionManager {
    const { amqp: opts, connectionName } = this.#options;
    // amqp-connection-manager tries the list in order from its start, and moves on to the next
    // entry after each failure, so the rotation only decides where each worker begins.
    return amqp.connect(this.#urls(), {
      heartbeatIntervalInSeconds: opts.heartbeatSeconds,
      reconnectTimeInSeconds: opts.reconnectSeconds,
      connectionOptions: {
        // Nagle's algorithm cost RPC round trips 35x here (docs/failure-modes.md #11).
        noDelay: true,
        clientProperties: { connection_name: connectionName },
      },
    });
  }

  /** The current manager's events drive the link; a manager moved away from is not heard any more. */
  #wire(manager: AmqpConnectionManager): void {
    const opts = this.#options.amqp;
    const waitSeconds = opts.reconnectSeconds;
    manager.on('connect', ({ connection, url }) => {
      if (manager !== this.#manager) return;
      this.#failoverAttempts = 0;
      manager.reconnectTimeInSeconds = waitSeconds;
      // ACM types the connection as amqplib's Connection; at runtime it is the ChannelModel.
      this.#model = connection as unknown as ChannelModel;
      this.#reopenAttempts = 0;
      this.#node = nodeOf(url);
      this.emit('connected', this.#node, this.#everConnected);
      this.#everConnected = true;
      void this.#openChannel(this.#model);
      this.#scheduleHomeCheck();
    });
    manager.on('disconnect', ({ err }) => {
      if (manager !== this.#manager) return;
      this.#model = undefined;
      this.#node = undefined;
      if (this.#reopenTimer !== undefined) clearTimeout(this.#reopenTimer);
      this.#reopenTimer = undefined;
      this.#forgetRetiring();
      // The manager reads reconnectTimeInSeconds right after this event to wait before its next
      // attempt: with other nodes listed, try each of them once at once, since the node that went
      // away says nothing about them. The stale quorum-queue leader a channel opened this early can
      // meet is handled by replaceChannel (docs/failure-modes.md #18).
      if (this.#closing === undefined && opts.urls.length > 1) {
        this.#failoverAttempts = opts.urls.length - 1;
        manager.reconnectTimeInSeconds = 0;
      }
      this.#dropChannel(undefined);
      this.#setState('disconnected');
      this.emit('problem', { what: 'broker connection lost', err });
    });
    manager.on('connectFailed', ({ err }) => {
      if (manager !== this.#manager) return;
      this.#failoverAttempts = Math.max(0, this.#failoverAttempts - 1);
      if (this.#failoverAttempts === 0) manager.reconnectTimeInSeconds = waitSeconds;
      this.#setState('disconnected');
      this.emit('problem', { what: 'broker connection failed', err });
    });
    manager.on('blocked', ({ reason }) => {
      if (manager !== this.#manager) return;
      this.#setState('blocked');
      this.emit('problem', { what: 'broker blocked publishing', err: new Error(reason) });
    });
    manager.on('unblocked', () => {
      if (manager !== this.#manager) return;
      this.#setState(this.#channel ? 'connected' : 'connecting');
    });
  }

  /** The node of the worker's first URL. */
  #homeNode(): string {
    return nodeOf(this.#urls()[0]);
  }

  #scheduleHomeCheck(): void {
    if (this.#homeTimer !== undefined || this.#closing !== undefined) return;
    if (this.#options.amqp.urls.length < 2 || this.#node === this.#homeNode()) return;
    this.#homeTimer = setTimeout(() => {
      this.#homeTimer = undefined;
      this.#tryHome();
    }, this.#options.homeCheckMs ?? HOME_CHECK_MS);
    this.#homeTimer.unref();
  }

  /**
   * Moves the worker back to its first URL after a failover took it elsewhere, so that a
   * bridge's workers stay spread over the cluster's nodes. A second manager connects there while
   * the current connection keeps serving; once its channel is ready (topology asserted, reply
   * consumer set up) it becomes the one publishes use, and the old connection is closed only
   * after `retireMs`, when every confirm and reply due on it has come: nothing in flight is cut.
   * When the first URL does not answer, the attempt is dropped and made again later.
   */
  #tryHome(): void {
    const home = this.#homeNode();
    if (this.#closing !== undefined || this.#homeManager !== undefined) return;
    if (this.#node === undefined || this.#node === home) return;
    if (this.#channel === undefined || this.#replacing) {
      this.#scheduleHomeCheck();
      return;
    }
    const candidate = this.#createManager();
    this.#homeManager = candidate;
    const abandon = (): void => {
      if (this.#homeManager !== candidate) return;
      this.#homeManager = undefined;
      candidate.removeAllListeners();
      void candidate.close().catch(() => undefined);
      this.#scheduleHomeCheck();
    };
    candidate.on('connectFailed', abandon);
    candidate.on('disconnect', abandon);
    candidate.on('connect', ({ connection, url }) => {
      const current = this.#channel;
      if (nodeOf(url) !== home || current === undefined || this.#closing !== undefined) {
        abandon();
        return;
      }
      const model = connection as unknown as ChannelModel;
      void this.#openChannel(model, current, () => this.#adoptHome(candidate, model, home)).then(
        () => {
          if (this.#homeManager === candidate) abandon();
        },
      );
    });
  }

  /** The home connection's channel is ready: it becomes the link's, the old manager retires. */
  #adoptHome(candidate: AmqpConnectionManager, model: ChannelModel, node: string): boolean {
    const old = this.#manager;
    if (this.#homeManager !== candidate || old === undefined) return false;
    this.#homeManager = undefined;
    candidate.removeAllListeners();
    this.#manager = candidate;
    this.#model = model;
    this.#node = node;
    this.#reopenAttempts = 0;
    if (this.#reopenTimer !== undefined) clearTimeout(this.#reopenTimer);
    this.#reopenTimer = undefined;
    this.#forgetRetiring();
    this.#wire(candidate);
    // The old connection's channel is the one being replaced: it goes with its manager.
    this.#retiringManagers.set(
      old,
      setTimeout(() => {
        this.#retiringManagers.delete(old);
        void old.close().catch(() => undefined);
      }, this.#options.retireMs ?? 0),
    );
    this.emit('connected', node, true);
    this.emit('moved-home', node);
    return true;
  }

  /**
   * Opens a fresh confirm channel on the current connection and makes it the one publishes use;
   * the replaced channel stays open for `retireMs`, so that the confirms and replies still due
   * on it arrive. RabbitMQ 3.10 keeps a channel's view of a quorum queue's leader from its first
   * publish to that queue: a channel that first published while the queue's record still named a
   * dead leader gets every publish to it nacked until that node returns, and only a new channel
   * looks the leader up again (docs/failure-modes.md #18). False when there is no channel to
   * replace or a replacement is under way.
   */
  replaceChannel(): boolean {
    const model = this.#model;
    const current = this.#channel;
    if (model === undefined || current === undefined || this.#closing !== undefined) return false;
    if (this.#replacing) return false;
    this.#replacing = true;
    void this.#openChannel(model, current).finally(() => {
      this.#replacing = false;
    });
    return true;
  }

  #retire(channel: ConfirmChannel): void {
    const timer = setTimeout(() => {
      this.#retiring.delete(channel);
      channel.close().catch(() => undefined);
    }, this.#options.retireMs ?? 0);
    this.#retiring.set(channel, timer);
  }

  /** The connection is gone: its retired channels went with it. */
  #forgetRetiring(): void {
    for (const timer of this.#retiring.values()) clearTimeout(timer);
    this.#retiring.clear();
  }

  /**
   * `replacing`: the channel this one takes over from (it stays current until this one is ready).
   * `adopt`: the new channel is on another connection, which this makes the link's; false if not.
   */
  async #openChannel(
    model: ChannelModel,
    replacing?: ConfirmChannel,
    adopt?: () => boolean,
  ): Promise<void> {
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
        if (
          closeInfo !== undefined &&
          this.#channel === undefined &&
          this.#model === model &&
          this.#closing === undefined
        )
          this.#scheduleReopen(model);
      });
      await assertTopology(channel, this.#options.topology);
      for (const setup of this.#setups) await setup(channel);
      const wanted =
        this.#closing === undefined &&
        (replacing === undefined || this.#channel === replacing) &&
        (adopt === undefined ? this.#model === model : adopt());
      if (!wanted) {
        await channel.close().catch(() => undefined);
        return;
      }
      if (replacing !== undefined && adopt === undefined) this.#retire(replacing);
      this.#channel = channel;
      this.#reopenAttempts = 0;
      this.#setState(this.#state === 'blocked' ? 'blocked' : 'connected');
      this.emit('channel', channel);
    } catch (err) {
      this.emit('problem', { what: 'opening the confirm channel failed (topology?)', err });
      // A failed topology assertion closes the channel; its 'close' handler schedules a retry.
      if (channel === undefined && this.#channel === undefined && this.#model === model)
        this.#scheduleReopen(model);
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
      if (this.#homeTimer) clearTimeout(this.#homeTimer);
      this.#forgetRetiring();
      const retiring = [...this.#retiringManagers.keys()];
      for (const timer of this.#retiringManagers.values()) clearTimeout(timer);
      this.#retiringManagers.clear();
      const home = this.#homeManager;
      this.#homeManager = undefined;
      home?.removeAllListeners();
      await Promise.all(
        [...retiring, ...(home === undefined ? [] : [home])].map((m) =>
          m.close().catch(() => undefined),
        ),
      );
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
