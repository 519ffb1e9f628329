/**
 * /metrics in the primary: asks every worker for its metrics over IPC, waits up to a deadline,
 * and merges them with prom-client's aggregation (counters and histograms sum, gauges as each
 * metric says). Unlike prom-client's clusterMetrics():
 *   - a worker that does not answer in time does not fail the scrape: its last snapshot is used
 *     and `bridge_scrape_errors_total` counts it;
 *   - a worker that exits leaves its last counters and histograms behind, carried forward, so
 *     the aggregated counters never go backwards when a worker dies or is replaced.
 */
import type { Worker } from 'node:cluster';
import {
  AggregatorRegistry,
  collectDefaultMetrics,
  Counter,
  Gauge,
  Registry,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';
import { PRIMARY_METRICS } from '../shared/metrics.js';

type MetricJson = MetricObjectWithValues<MetricValue<string>>;

interface PendingCollection {
  readonly resolve: (metrics: MetricJson[] | undefined) => void;
  readonly timer: NodeJS.Timeout;
}

function isMetricList(value: unknown): value is MetricJson[] {
  return Array.isArray(value) && value.every((m) => typeof m === 'object' && m !== null && typeof (m as { name?: unknown }).name === 'string');
}

export class MetricsAggregator {
  readonly #registry = new Registry();
  readonly #restarts: Counter;
  readonly #scrapeErrors: Counter;
  readonly #last = new Map<number, MetricJson[]>();
  /** Counters and histograms of workers that are gone, merged into one snapshot. */
  #retired: MetricJson[] = [];
  readonly #pending = new Map<number, PendingCollection>();
  #nextId = 0;

  constructor(workerCount: () => number) {
    const registers = [this.#registry];
    const m = PRIMARY_METRICS;
    new Gauge({ ...m.workers, labelNames: [], registers, collect() { this.set(workerCount()); } });
    this.#restarts = new Counter({ ...m.workerRestarts, labelNames: [], registers });
    this.#scrapeErrors = new Counter({ ...m.scrapeErrors, labelNames: [], registers });
    collectDefaultMetrics({ register: this.#registry });
  }

  workerRestarted(): void {
    this.#restarts.inc();
  }

  /** Feed every `bridge:metrics` IPC answer here. */
  onAnswer(id: number, metrics: unknown): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(isMetricList(metrics) ? metrics : undefined);
  }

  /** A worker exited: keep what it counted. */
  async workerExited(workerId: number): Promise<void> {
    const last = this.#last.get(workerId);
    this.#last.delete(workerId);
    if (last === undefined) return;
    // prom-client's d.ts types `type` as a numeric enum; its JSON carries 'counter', 'gauge', ….
    const cumulative = last.filter((m) => ['counter', 'histogram'].includes(String(m.type)));
    const merged = AggregatorRegistry.aggregate([this.#retired, cumulative]);
    this.#retired = await merged.getMetricsAsJSON();
  }

  #ask(worker: Worker, deadlineMs: number): Promise<MetricJson[] | undefined> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(undefined);
      }, deadlineMs);
      this.#pending.set(id, { resolve, timer });
      try {
        worker.send({ type: 'bridge:metrics-req', id });
      } catch {
        clearTimeout(timer);
        this.#pending.delete(id);
        resolve(undefined);
      }
    });
  }

  /** Collects from `workers` (at most `deadlineMs`) and renders the merged exposition. */
  async collect(workers: readonly Worker[], deadlineMs: number, contentType: string): Promise<string> {
    const answers = await Promise.all(
      workers.map(async (w) => {
        const fresh = w.isConnected() ? await this.#ask(w, deadlineMs) : undefined;
        if (fresh === undefined) {
          this.#scrapeErrors.inc();
          return this.#last.get(w.id) ?? [];
        }
        this.#last.set(w.id, fresh);
        return fresh;
      }),
    );
    const own = await this.#registry.getMetricsAsJSON();
    const merged = AggregatorRegistry.aggregate([own, this.#retired, ...answers]);
    merged.setContentType(contentType === Registry.OPENMETRICS_CONTENT_TYPE ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE);
    return merged.metrics();
  }
}
