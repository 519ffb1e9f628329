/** Cross-cutting literal unions shared by workers, primary and metrics. Nothing else. */

export type RouteMode = 'publish' | 'rpc' | 'celery';

/** `outcome` label of bridge_amqp_publishes_total (README, Metrics). */
export type PublishOutcome =
  'confirmed' | 'nacked' | 'returned' | 'timeout' | 'unavailable' | 'overloaded';

/** `outcome` label of bridge_rpc_replies_total (README, Metrics). */
export type ReplyOutcome = 'ok' | 'timeout' | 'late';

/** `reason` label of bridge_auth_failures_total: 401 (missing … replayed) and 403 (route, source). */
export type AuthFailureReason =
  'missing' | 'malformed' | 'wrong' | 'expired' | 'replayed' | 'route' | 'source';
