/**
 * The single table of metric definitions (the README's Metrics section, the external contract): name, help, type, labels,
 * buckets and how the primary aggregates them across workers. Label values come only from the
 * config (route names, `unmatched`) and closed outcome sets, never from request input.
 */

/** Sub-millisecond to 10 s: a bridge answers in ~1 ms when healthy and gives up at its timeouts. */
const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** 64 B to 16 MiB. */
const SIZE_BUCKETS = [64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216];

export type MetricKind = 'counter' | 'gauge' | 'histogram';

export interface MetricDef {
  readonly name: string;
  readonly help: string;
  readonly kind: MetricKind;
  readonly labelNames: readonly string[];
  readonly buckets?: readonly number[];
}

export const WORKER_METRICS = {
  httpRequests: {
    name: 'bridge_http_requests_total',
    help: 'HTTP requests answered, by route and status (499: the client went away first).',
    kind: 'counter',
    labelNames: ['route', 'status'],
  },
  httpDuration: {
    name: 'bridge_http_request_duration_seconds',
    help: 'Time from the request line to the answer.',
    kind: 'histogram',
    labelNames: ['route'],
    buckets: LATENCY_BUCKETS,
  },
  httpBodyBytes: {
    name: 'bridge_http_request_body_bytes',
    help: 'Size of request bodies that were read completely.',
    kind: 'histogram',
    labelNames: ['route'],
    buckets: SIZE_BUCKETS,
  },
  publishes: {
    name: 'bridge_amqp_publishes_total',
    help: 'Publish attempts by outcome: confirmed, nacked, returned (unroutable), timeout, unavailable, overloaded.',
    kind: 'counter',
    labelNames: ['route', 'outcome'],
  },
  confirmDuration: {
    name: 'bridge_amqp_confirm_duration_seconds',
    help: 'Time from publish to the broker confirm.',
    kind: 'histogram',
    labelNames: [],
    buckets: LATENCY_BUCKETS,
  },
  inFlight: {
    name: 'bridge_amqp_in_flight',
    help: 'Requests admitted and not yet answered (bodies streaming, confirms and replies awaited), summed over workers.',
    kind: 'gauge',
    labelNames: [],
  },
  connected: {
    name: 'bridge_amqp_connected',
    help: 'Workers connected to the broker with an open channel.',
    kind: 'gauge',
    labelNames: [],
  },
  blocked: {
    name: 'bridge_amqp_blocked',
    help: 'Workers whose broker connection is blocked by a memory or disk alarm.',
    kind: 'gauge',
    labelNames: [],
  },
  connections: {
    name: 'bridge_amqp_connections',
    help: 'Workers connected to each broker node (host:port of the amqp.urls entry in use).',
    kind: 'gauge',
    labelNames: ['node'],
  },
  reconnects: {
    name: 'bridge_amqp_reconnects_total',
    help: 'Broker connections made again after one was lost (failover to another node or the same one back), summed over workers.',
    kind: 'counter',
    labelNames: [],
  },
  channelReplacements: {
    name: 'bridge_amqp_channel_replacements_total',
    help: 'Confirm channels replaced on the same connection because a publish was nacked before any to its route was confirmed on them (a quorum queue channel stuck on a dead leader; also a full reject-publish queue, at most every 5 s), summed over workers.',
    kind: 'counter',
    labelNames: [],
  },
  stalled: {
    name: 'bridge_amqp_stalled',
    help: 'Workers whose broker has confirmed nothing for amqp.stallMs while publishes wait (frozen node, stuck disk).',
    kind: 'gauge',
    labelNames: [],
  },
  rpcReplies: {
    name: 'bridge_rpc_replies_total',
    help: 'Replies for rpc and celery routes: ok, timeout (none in time), late (arrived after its caller was gone; dropped).',
    kind: 'counter',
    labelNames: ['route', 'outcome'],
  },
  xmlRejected: {
    name: 'bridge_xml_rejected_total',
    help: 'Bodies refused by the XML check, by reason.',
    kind: 'counter',
    labelNames: ['route', 'reason'],
  },
  authFailures: {
    name: 'bridge_auth_failures_total',
    help: 'Requests refused by partner access control: 401 (missing, malformed, wrong, expired, replayed) and 403 (route, source).',
    kind: 'counter',
    labelNames: ['route', 'reason'],
  },
  rateLimited: {
    name: 'bridge_rate_limited_total',
    help: 'Requests answered 429 because the partner was over its rateLimit.',
    kind: 'counter',
    labelNames: ['partner'],
  },
  partnerRequests: {
    name: 'bridge_partner_requests_total',
    help: 'Requests whose partner credentials verified, by partner and HTTP status (their 403 and 429 included).',
    kind: 'counter',
    labelNames: ['partner', 'status'],
  },
} as const satisfies Record<string, MetricDef>;

export const PRIMARY_METRICS = {
  workers: {
    name: 'bridge_workers',
    help: 'Worker processes running.',
    kind: 'gauge',
    labelNames: [],
  },
  workerRestarts: {
    name: 'bridge_worker_restarts_total',
    help: 'Workers reforked after an unexpected exit.',
    kind: 'counter',
    labelNames: [],
  },
  scrapeErrors: {
    name: 'bridge_scrape_errors_total',
    help: 'Workers that did not answer a /metrics collection in time (their last values were used).',
    kind: 'counter',
    labelNames: [],
  },
  reloadSuccess: {
    name: 'bridge_config_reload_success',
    help: 'Whether the last config reload (SIGHUP) succeeded: 1, or 0 when it was refused or abandoned and the previous config still runs.',
    kind: 'gauge',
    labelNames: [],
  },
  reloadSuccessTime: {
    name: 'bridge_config_last_reload_success_timestamp_seconds',
    help: 'When the running config was loaded: the start, or the last successful reload (Unix seconds).',
    kind: 'gauge',
    labelNames: [],
  },
  certificateExpiry: {
    name: 'bridge_tls_certificate_expiry_timestamp_seconds',
    help: 'When the certificate the partner port presents expires (Unix seconds); absent without tls. Alert well before it.',
    kind: 'gauge',
    labelNames: ['subject'],
  },
  buildInfo: {
    name: 'bridge_build_info',
    help: 'Always 1: the bridge version, Node.js version and uWebSockets.js build (version, npm package, native TLS) that are running.',
    kind: 'gauge',
    labelNames: ['version', 'node', 'uws', 'uws_package', 'tls'],
  },
} as const satisfies Record<string, MetricDef>;

/**
 * How often prom-client's event-loop-delay histogram samples (its default is every 10 ms). Each
 * sample wakes the process: at 10 ms that cost an idle bridge process about 6.5 ms of CPU per
 * second on a 2-core VM, a fifth of everything the bridge spent per request at 1,000 requests/s.
 * 100 ms still catches any stall that matters to a partner (they wait seconds, not milliseconds).
 */
export const EVENT_LOOP_MONITORING_PRECISION_MS = 100;

/** Label for requests to paths no route matches. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * prom-client default metrics left out of the exposition: gauges whose names end in `_total`,
 * which `promtool check metrics` rejects ("non-counter metrics should not have _total suffix");
 * the same counts stay available, by type, in `nodejs_active_handles` and its siblings.
 */
export const DROPPED_DEFAULT_METRICS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const;

/**
 * The `bridge:metrics` id of the snapshot a worker sends unasked at the end of its drain, so a
 * worker retired by a reload or a stop leaves its exact final counts behind (not those of the
 * last scrape).
 */
export const FINAL_SNAPSHOT_ID = -1;
