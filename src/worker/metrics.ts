/**
 * The worker's metrics: prom-client instruments built from shared/metrics.ts, fed from one
 * record per request, and handed to the primary as JSON on request over IPC (the primary
 * aggregates). Label children are bound once per route and label value, so recording a request
 * hashes no label set.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { XmlError } from '../shared/errors.js';
import { DROPPED_DEFAULT_METRICS, UNMATCHED_ROUTE, WORKER_METRICS } from '../shared/metrics.js';
import type { PublishOutcome, ReplyOutcome } from '../shared/types.js';
import type { RecordObserver, RequestRecord } from './request.js';

export interface LiveGauges {
  readonly inFlight: () => number;
  readonly connected: () => boolean;
  readonly blocked: () => boolean;
}

interface Inc {
  inc(value?: number): void;
}
interface Observe {
  observe(value: number): void;
}

/** One route's bound label children, created as label values first occur. */
class RouteInstruments {
  readonly duration: Observe;
  readonly bodyBytes: Observe;
  readonly #requests = new Map<number, Inc>();
  readonly #publishes = new Map<PublishOutcome, Inc>();
  readonly #replies = new Map<ReplyOutcome, Inc>();
  readonly #xml = new Map<string, Inc>();
  readonly #route: string;
  readonly #m: WorkerMetrics;

  constructor(m: WorkerMetrics, route: string) {
    this.#m = m;
    this.#route = route;
    this.duration = m.durationMetric.labels(route);
    this.bodyBytes = m.bodyBytesMetric.labels(route);
  }

  requests(status: number): Inc {
    return child(this.#requests, status, () => this.#m.requestsMetric.labels(this.#route, String(status)));
  }

  publishes(outcome: PublishOutcome): Inc {
    return child(this.#publishes, outcome, () => this.#m.publishesMetric.labels(this.#route, outcome));
  }

  replies(outcome: ReplyOutcome): Inc {
    return child(this.#replies, outcome, () => this.#m.repliesMetric.labels(this.#route, outcome));
  }

  xmlRejected(reason: string): Inc {
    return child(this.#xml, reason, () => this.#m.xmlRejectedMetric.labels(this.#route, reason));
  }
}

function child<K, V>(cache: Map<K, V>, key: K, make: () => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = make();
    cache.set(key, value);
  }
  return value;
}

export class WorkerMetrics implements RecordObserver {
  readonly registry = new Registry();
  readonly requestsMetric: Counter;
  readonly durationMetric: Histogram;
  readonly bodyBytesMetric: Histogram;
  readonly publishesMetric: Counter;
  readonly repliesMetric: Counter;
  readonly xmlRejectedMetric: Counter;
  readonly #confirm: Histogram;
  readonly #routes = new Map<string, RouteInstruments>();

  constructor(live: LiveGauges) {
    const registers = [this.registry];
    const m = WORKER_METRICS;
    this.requestsMetric = new Counter({ ...m.httpRequests, labelNames: [...m.httpRequests.labelNames], registers });
    this.durationMetric = new Histogram({ ...m.httpDuration, labelNames: [...m.httpDuration.labelNames], buckets: [...m.httpDuration.buckets], registers });
    this.bodyBytesMetric = new Histogram({ ...m.httpBodyBytes, labelNames: [...m.httpBodyBytes.labelNames], buckets: [...m.httpBodyBytes.buckets], registers });
    this.publishesMetric = new Counter({ ...m.publishes, labelNames: [...m.publishes.labelNames], registers });
    this.#confirm = new Histogram({ ...m.confirmDuration, labelNames: [], buckets: [...m.confirmDuration.buckets], registers });
    this.repliesMetric = new Counter({ ...m.rpcReplies, labelNames: [...m.rpcReplies.labelNames], registers });
    this.xmlRejectedMetric = new Counter({ ...m.xmlRejected, labelNames: [...m.xmlRejected.labelNames], registers });
    new Gauge({ ...m.inFlight, labelNames: [], registers, collect() { this.set(live.inFlight()); } });
    new Gauge({ ...m.connected, labelNames: [], registers, collect() { this.set(live.connected() ? 1 : 0); } });
    new Gauge({ ...m.blocked, labelNames: [], registers, collect() { this.set(live.blocked() ? 1 : 0); } });
    collectDefaultMetrics({ register: this.registry });
    for (const name of DROPPED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
  }

  /** Declares the label sets that should read 0 before anything happened (so rate() works). */
  declareRoutes(routes: readonly string[]): void {
    for (const route of routes) this.#route(route).publishes('confirmed').inc(0);
  }

  /** Counts a request's publish once it settled (or was refused at admission). */
  published(r: RequestRecord): void {
    if (r.publish !== undefined) this.#route(r.route).publishes(r.publish).inc();
    if (r.confirmSeconds !== undefined) this.#confirm.observe(r.confirmSeconds);
  }

  /** Counts one request that ended: its answer, its body, its reply. */
  ended(r: RequestRecord): void {
    const route = this.#route(r.route);
    route.requests(r.status).inc();
    route.duration.observe(r.seconds);
    if (r.bodyBytes > 0) route.bodyBytes.observe(r.bodyBytes);
    if (r.error instanceof XmlError) route.xmlRejected(r.error.reason).inc();
    if (r.reply !== undefined) route.replies(r.reply).inc();
  }

  /** A reply arrived for a request that had stopped waiting (its route when still known). */
  lateReply(route: string | undefined): void {
    this.#route(route ?? UNMATCHED_ROUTE).replies('late').inc();
  }

  /** Every metric as prom-client JSON, for the primary's aggregation. */
  snapshot(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    return this.registry.getMetricsAsJSON();
  }

  #route(route: string): RouteInstruments {
    return child(this.#routes, route, () => new RouteInstruments(this, route));
  }
}
