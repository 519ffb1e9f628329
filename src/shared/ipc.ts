/**
 * The typed messages between primary and workers over node:cluster IPC, with type guards for
 * the receiving side (IPC payloads are `unknown` until narrowed).
 */
import type { UwsLoad } from './uws.js';
import type { Config } from './config-schema.js';

/** Workers repeat their status this often, so the primary can tell a hung worker from a quiet one. */
export const WORKER_HEARTBEAT_MS = 1000;

export type AmqpState = 'connecting' | 'connected' | 'disconnected' | 'blocked';

/** What a worker tells the primary about itself; the primary derives /readyz from it. */
export interface WorkerStatus {
  readonly listening: boolean;
  readonly amqp: AmqpState;
  readonly draining: boolean;
  /** Publishes wait and the broker confirmed nothing for amqp.stallMs. */
  readonly stalled?: boolean;
  /** The broker's latest complaint (e.g. `NOT_FOUND - no queue …` from the topology), passwords redacted. */
  readonly problem?: string;
}

export type PrimaryToWorker =
  | {
      readonly type: 'bridge:start';
      readonly config: Config;
      readonly slot: number;
      /** How many workers serve: each enforces its share of a partner's rate limit. */
      readonly workers: number;
      readonly port: number;
      /** The uWebSockets.js build to load: the primary's choice (a native one, or the JS fallback the operator allowed). */
      readonly uws: UwsLoad;
      /**
       * Listen only once the channel is open and the topology asserted, however long that takes
       * (a reload's replacement: the primary gives up on it instead). Otherwise a worker listens
       * after at most a few seconds anyway, so partners get 503s rather than refused connections.
       */
      readonly listenWhenConnected: boolean;
    }
  | { readonly type: 'bridge:drain' }
  /** Asks for the worker's metrics as prom-client JSON; answered with bridge:metrics. */
  | { readonly type: 'bridge:metrics-req'; readonly id: number };

export type WorkerToPrimary =
  /** Sent once the worker's listener is attached: messages sent before that would be lost. */
  | { readonly type: 'bridge:hello' }
  | { readonly type: 'bridge:status'; readonly status: WorkerStatus }
  | { readonly type: 'bridge:listen-failed'; readonly detail: string }
  | { readonly type: 'bridge:fatal'; readonly detail: string }
  | { readonly type: 'bridge:metrics'; readonly id: number; readonly metrics: unknown };

function hasType(msg: unknown): msg is { type: string } {
  return (
    typeof msg === 'object' && msg !== null && typeof (msg as { type?: unknown }).type === 'string'
  );
}

export function isPrimaryToWorker(msg: unknown): msg is PrimaryToWorker {
  return (
    hasType(msg) &&
    (msg.type === 'bridge:start' ||
      msg.type === 'bridge:drain' ||
      msg.type === 'bridge:metrics-req')
  );
}

export function isWorkerToPrimary(msg: unknown): msg is WorkerToPrimary {
  return (
    hasType(msg) &&
    (msg.type === 'bridge:hello' ||
      msg.type === 'bridge:status' ||
      msg.type === 'bridge:listen-failed' ||
      msg.type === 'bridge:fatal' ||
      msg.type === 'bridge:metrics')
  );
}
