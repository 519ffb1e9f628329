/** Cross-cutting literal unions shared by workers, primary and metrics. Nothing else. */

export type RouteMode = 'publish' | 'rpc' | 'celery';

/** `outcome` label of bridge_amqp_publishes_total (README, Metrics). */
export type PublishOutcome =
  'confirmed' | 'nacked' | 'returned' | 'timeout' | 'unavailable' | 'overloaded';

/** `outcome` label of bridge_rpc_replies_total (README, Metrics). */
export type ReplyOutcome = 'ok' | 'timeout' | 'late';
