/**
 * The worker's metrics, fed from one record per request and handed to the primary as
 * prom-client JSON on request over IPC (the primary aggregates). The bridge's own counters and
 * histograms are plain numbers, one cell per route and label value, found once and bumped per
 * request: prom-client hashes and validates the label set on every inc/observe, bound children
 * included, which cost about a tenth of a request's CPU. Their JSON has exactly prom-client's
 * shape (test/unit/worker-metrics.test.ts compares the two); prom-client's default process
 * metrics still come from prom-client itself.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';
import { XmlError } from '../shared/errors.js';
import {
  DROPPED_DEFAULT_METRICS,
  EVENT_LOOP_MONITORING_PRECISION_MS,
  UNMATCHED_ROUTE,
  WORKER_METRICS,
  type MetricDef,
} from '../shared/metrics.js';
import type { PublishOutcome, ReplyOutcome } from '../shared/types.js';
import type { RecordObserver, RequestRecord } from './request.js';

export interface LiveGauges {
  readonly inFlight: () => number;
  readonly connected: () => boolean;
  readonly blocked: () => boolean;
  readonly stalled: () => boolean;
  /** The broker node the worker is connected to, if any. */
  readonly node: () => string | undefined;
}

/** One metric as prom-client's getMetricsAsJSON() lists it (what the primary aggregates). */
type MetricJson = object;
type Labels = Readonly<Record<string, string | number>>;

/** One counter value for one label set. */
class CounterCell {
  value = 0;
  constructor(readonly labels: Labels) {}
}

/** One histogram for one label set: count per bucket (not cumulative), sum, count. */
class HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] as number)) {
        this.counts[i] = (this.counts[i] as number) + 1; // i < bounds.length = counts.length
        break;
      }
    }
    this.sum += value;
    this.count += 1;
  }
}

/** A counter's cells by label set, in creation order (as prom-client lists them). */
class CounterTable {
  readonly cells: CounterCell[] = [];
  constructor(readonly def: MetricDef) {}

  cell(labels: Labels): CounterCell {
    const cell = new CounterCell(labels);
    this.cells.push(cell);
    return cell;
  }

  json(): MetricJson {
    return {
      help: this.def.help,
      name: this.def.name,
      type: 'counter',
      values: this.cells.map((c) => ({ value: c.value, labels: c.labels })),
      aggregator: 'sum',
    };
  }
}

class HistogramTable {
  readonly cells: HistogramCell[] = [];
  constructor(readonly def: MetricDef & { readonly buckets: readonly number[] }) {}

  cell(labels: Labels): HistogramCell {
    const cell = new HistogramCell(labels, this.def.buckets);
    this.cells.push(cell);
    return cell;
  }

  json(): MetricJson {
    const name = this.def.name;
    const values: Array<Record<string, unknown>> = [];
    for (const c of this.cells) {
      let acc = 0;
      c.bounds.forEach((le, i) => {
        acc += c.counts[i] as number; // i < bounds.length
        values.push({
          value: acc,
          metricName: `${name}_bucket`,
          exemplar: null,
          labels: { le, ...c.labels },
        });
      });
      values.push({
        value: c.count,
        metricName: `${name}_bucket`,
        exemplar: null,
        labels: { le: '+Inf', ...c.labels },
      });
      values.push({
        value: c.sum,
        metricName: `${name}_sum`,
        exemplar: undefined,
        labels: { ...c.labels },
      });
      values.push({
        value: c.count,
        metricName: `${name}_count`,
        exemplar: undefined,
        labels: { ...c.labels },
      });
    }
    return { name, help: this.def.help, type: 'histogram', values, aggregator: 'sum' };
  }
}

function gaugeJson(def: MetricDef, value: number): MetricJson {
  return {
    help: def.help,
    name: def.name,
    type: 'gauge',
    values: [{ value, labels: {} }],
    aggregator: 'sum',
  };
}

/** 1 for the node the worker is connected to; no series while it is connected to none. */
function nodeGaugeJson(node: string | undefined): MetricJson {
  const def = WORKER_METRICS.connections;
  return {
    help: def.help,
    name: def.name,
    type: 'gauge',
    values: node === undefined ? [] : [{ value: 1, labels: { node } }],
    aggregator: 'sum',
  };
}

function cached<K, V>(cache: Map<K, V>, key: K, make: () => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = make();
    cache.set(key, value);
  }
  return value;
}

/** One route's cells, created as label values first occur. */
class RouteCells {
  #duration: HistogramCell | undefined;
  #bodyBytes: HistogramCell | undefined;
  readonly #requests = new Map<number, CounterCell>();
  readonly #publishes = new Map<PublishOutcome, CounterCell>();
  readonly #replies = new Map<ReplyOutcome, CounterCell>();
  readonly #xml = new Map<string, CounterCell>();
  readonly #auth = new Map<string, CounterCell>();
  readonly #route: string;
  readonly #m: WorkerMetrics;

  constructor(m: WorkerMetrics, route: string) {
    this.#m = m;
    this.#route = route;
  }

  /** Created at the first observation, as prom-client shows a labelled histogram. */
  get duration(): HistogramCell {
    return (this.#duration ??= this.#m.tables.duration.cell({ route: this.#route }));
  }

  get bodyBytes(): HistogramCell {
    return (this.#bodyBytes ??= this.#m.tables.bodyBytes.cell({ route: this.#route }));
  }

  requests(status: number): CounterCell {
    return cached(this.#requests, status, () =>
      this.#m.tables.requests.cell({ route: this.#route, status: String(status) }),
    );
  }

  publishes(outcome: PublishOutcome): CounterCell {
    return cached(this.#publishes, outcome, () =>
      this.#m.tables.publishes.cell({ route: this.#route, outcome }),
    );
  }

  replies(outcome: ReplyOutcome): CounterCell {
    return cached(this.#replies, outcome, () =>
      this.#m.tables.replies.cell({ route: this.#route, outcome }),
    );
  }

  xmlRejected(reason: string): CounterCell {
    return cached(this.#xml, reason, () =>
      this.#m.tables.xmlRejected.cell({ route: this.#route, reason }),
    );
  }

  authFailures(reason: string): CounterCell {
    return cached(this.#auth, reason, () =>
      this.#m.tables.authFailures.cell({ route: this.#route, reason }),
    );
  }
}

/** One partner's cells. */
class PartnerCells {
  readonly #requests = new Map<number, CounterCell>();
  readonly rateLimited: CounterCell;
  readonly #partner: string;
  readonly #m: WorkerMetrics;

  constructor(m: WorkerMetrics, partner: string) {
    this.#m = m;
    this.#partner = partner;
    this.rateLimited = m.tables.rateLimited.cell({ partner });
  }

  requests(status: number): CounterCell {
    return cached(this.#requests, status, () =>
      this.#m.tables.partnerRequests.cell({ partner: this.#partner, status: String(status) }),
    );
  }
}

export class WorkerMetrics implements RecordObserver {
  /** prom-client's default process metrics only. */
  readonly registry = new Registry();
  readonly tables = {
    requests: new CounterTable(WORKER_METRICS.httpRequests),
    duration: new HistogramTable(WORKER_METRICS.httpDuration),
    bodyBytes: new HistogramTable(WORKER_METRICS.httpBodyBytes),
    publishes: new CounterTable(WORKER_METRICS.publishes),
    confirm: new HistogramTable(WORKER_METRICS.confirmDuration),
    replies: new CounterTable(WORKER_METRICS.rpcReplies),
    xmlRejected: new CounterTable(WORKER_METRICS.xmlRejected),
    authFailures: new CounterTable(WORKER_METRICS.authFailures),
    rateLimited: new CounterTable(WORKER_METRICS.rateLimited),
    partnerRequests: new CounterTable(WORKER_METRICS.partnerRequests),
    reconnects: new CounterTable(WORKER_METRICS.reconnects),
    channelReplacements: new CounterTable(WORKER_METRICS.channelReplacements),
  };
  readonly #reconnects: CounterCell;
  readonly #channelReplacements: CounterCell;
  readonly #partners = new Map<string, PartnerCells>();
  readonly #confirm: HistogramCell;
  readonly #routes = new Map<string, RouteCells>();
  readonly #live: LiveGauges;

  constructor(live: LiveGauges) {
    this.#live = live;
    this.#confirm = this.tables.confirm.cell({});
    this.#reconnects = this.tables.reconnects.cell({});
    this.#channelReplacements = this.tables.channelReplacements.cell({});
    collectDefaultMetrics({
      register: this.registry,
      eventLoopMonitoringPrecision: EVENT_LOOP_MONITORING_PRECISION_MS,
    });
    for (const name of DROPPED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
  }

  /** Declares the label sets that should read 0 before anything happened (so rate() works). */
  declareRoutes(routes: readonly string[]): void {
    for (const route of routes) this.#route(route).publishes('confirmed');
  }

  /** Partners whose rate-limit counter should read 0 before anything happened. */
  declarePartners(partners: readonly string[]): void {
    for (const partner of partners) this.#partner(partner);
  }

  /** Counts a request's publish once it settled (or was refused at admission). */
  published(r: RequestRecord): void {
    if (r.publish !== undefined) this.#route(r.route).publishes(r.publish).value += 1;
    if (r.confirmSeconds !== undefined) this.#confirm.observe(r.confirmSeconds);
  }

  /** Counts one request that ended: its answer, its body, its reply. */
  ended(r: RequestRecord): void {
    const route = this.#route(r.route);
    route.requests(r.status).value += 1;
    route.duration.observe(r.seconds);
    if (r.bodyBytes > 0) route.bodyBytes.observe(r.bodyBytes);
    if (r.error instanceof XmlError) route.xmlRejected(r.error.reason).value += 1;
    if (r.reply !== undefined) route.replies(r.reply).value += 1;
    if (r.authFailure !== undefined) route.authFailures(r.authFailure).value += 1;
    if (r.partner !== undefined) {
      const partner = this.#partner(r.partner);
      partner.requests(r.status).value += 1;
      if (r.error?.code === 'BRIDGE_RATE_LIMITED') partner.rateLimited.value += 1;
    }
  }

  /** The broker connection came back after it was lost. */
  reconnected(): void {
    this.#reconnects.value += 1;
  }

  channelReplaced(): void {
    this.#channelReplacements.value += 1;
  }

  /** A reply arrived for a request that had stopped waiting (its route when still known). */
  lateReply(route: string | undefined): void {
    this.#route(route ?? UNMATCHED_ROUTE).replies('late').value += 1;
  }

  /** Every metric as prom-client JSON, for the primary's aggregation. */
  async snapshot(): Promise<MetricJson[]> {
    const t = this.tables;
    const live = this.#live;
    return [
      t.requests.json(),
      t.duration.json(),
      t.bodyBytes.json(),
      t.publishes.json(),
      t.confirm.json(),
      t.replies.json(),
      t.xmlRejected.json(),
      t.authFailures.json(),
      t.rateLimited.json(),
      t.partnerRequests.json(),
      t.reconnects.json(),
      t.channelReplacements.json(),
      nodeGaugeJson(live.node()),
      gaugeJson(WORKER_METRICS.inFlight, live.inFlight()),
      gaugeJson(WORKER_METRICS.connected, live.connected() ? 1 : 0),
      gaugeJson(WORKER_METRICS.blocked, live.blocked() ? 1 : 0),
      gaugeJson(WORKER_METRICS.stalled, live.stalled() ? 1 : 0),
      ...(await this.registry.getMetricsAsJSON()),
    ];
  }

  #route(route: string): RouteCells {
    return cached(this.#routes, route, () => new RouteCells(this, route));
  }

  #partner(partner: string): PartnerCells {
    return cached(this.#partners, partner, () => new PartnerCells(this, partner));
  }
}
