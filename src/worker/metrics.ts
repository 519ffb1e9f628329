/**
 * The worker's metrics: prom-client instruments built from shared/metrics.ts, recorded on the
 * request path, and handed to the primary as JSON on request over IPC (the primary aggregates).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { DROPPED_DEFAULT_METRICS, WORKER_METRICS } from '../shared/metrics.js';
import type { PublishOutcome, ReplyOutcome } from '../shared/types.js';
import type { XmlRejectReason } from '../shared/errors.js';

export interface LiveGauges {
  readonly inFlight: () => number;
  readonly connected: () => boolean;
  readonly blocked: () => boolean;
}

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter;
  readonly #duration: Histogram;
  readonly #bodyBytes: Histogram;
  readonly #publishes: Counter;
  readonly #confirm: Histogram;
  readonly #replies: Counter;
  readonly #xmlRejected: Counter;

  constructor(live: LiveGauges) {
    const registers = [this.registry];
    const m = WORKER_METRICS;
    this.#requests = new Counter({ ...m.httpRequests, labelNames: [...m.httpRequests.labelNames], registers });
    this.#duration = new Histogram({ ...m.httpDuration, labelNames: [...m.httpDuration.labelNames], buckets: [...m.httpDuration.buckets], registers });
    this.#bodyBytes = new Histogram({ ...m.httpBodyBytes, labelNames: [...m.httpBodyBytes.labelNames], buckets: [...m.httpBodyBytes.buckets], registers });
    this.#publishes = new Counter({ ...m.publishes, labelNames: [...m.publishes.labelNames], registers });
    this.#confirm = new Histogram({ ...m.confirmDuration, labelNames: [], buckets: [...m.confirmDuration.buckets], registers });
    this.#replies = new Counter({ ...m.rpcReplies, labelNames: [...m.rpcReplies.labelNames], registers });
    this.#xmlRejected = new Counter({ ...m.xmlRejected, labelNames: [...m.xmlRejected.labelNames], registers });
    new Gauge({ ...m.inFlight, labelNames: [], registers, collect() { this.set(live.inFlight()); } });
    new Gauge({ ...m.connected, labelNames: [], registers, collect() { this.set(live.connected() ? 1 : 0); } });
    new Gauge({ ...m.blocked, labelNames: [], registers, collect() { this.set(live.blocked() ? 1 : 0); } });
    collectDefaultMetrics({ register: this.registry });
    for (const name of DROPPED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
  }

  /** Declares the label sets that should read 0 before anything happened (so rate() works). */
  declareRoutes(routes: readonly string[]): void {
    for (const route of routes) this.#publishes.inc({ route, outcome: 'confirmed' }, 0);
  }

  request(route: string, status: number, seconds: number, bodyBytes: number | undefined): void {
    this.#requests.inc({ route, status: String(status) });
    this.#duration.observe({ route }, seconds);
    if (bodyBytes !== undefined) this.#bodyBytes.observe({ route }, bodyBytes);
  }

  publish(route: string, outcome: PublishOutcome, confirmSeconds: number | undefined): void {
    this.#publishes.inc({ route, outcome });
    if (confirmSeconds !== undefined) this.#confirm.observe(confirmSeconds);
  }

  reply(route: string, outcome: ReplyOutcome): void {
    this.#replies.inc({ route, outcome });
  }

  xmlRejected(route: string, reason: XmlRejectReason): void {
    this.#xmlRejected.inc({ route, reason });
  }

  /** Every metric as prom-client JSON, for the primary's aggregation. */
  snapshot(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    return this.registry.getMetricsAsJSON();
  }
}
