/**
 * /metrics in the primary: asks every worker for its metrics over IPC, waits up to a deadline,
 * and merges them with prom-client's aggregation (counters and histograms sum, gauges as each
 * metric says). Unlike prom-client's clusterMetrics():
 *   - a worker that does not answer in time does not fail the scrape: its last snapshot is used
 *     and `bridge_scrape_errors_total` counts it;
 *   - a worker that exits leaves its last counters and histograms behind, carried forward, so
 *     the aggregated counters never go backwards when a worker dies or is replaced. "Last" is
 *     the final snapshot a draining worker sends before it exits (reload, stop), else the one
 *     of the last scrape (a crash or SIGKILL loses what it counted since);
 *   - no counter or histogram sample is ever exported below a value it had before: float sums
 *     (`_sum`, CPU seconds) added in another order after a worker is retired can come out an
 *     ulp lower, which Prometheus would take for a counter reset (a spike in rate()).
 */
import cluster, { type Worker } from 'node:cluster';
import {
  AggregatorRegistry,
  collectDefaultMetrics,
  Counter,
  Gauge,
  Registry,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';
import { isWorkerToPrimary } from '../shared/ipc.js';
import type { BuildInfo } from '../shared/build-info.js';
import type { ServedCertificate } from '../shared/tls-files.js';
import {
  DROPPED_DEFAULT_METRICS,
  EVENT_LOOP_MONITORING_PRECISION_MS,
  FINAL_SNAPSHOT_ID,
  PRIMARY_METRICS,
} from '../shared/metrics.js';

type MetricJson = MetricObjectWithValues<MetricValue<string>>;

interface PendingCollection {
  readonly resolve: (metrics: MetricJson[] | undefined) => void;
  readonly timer: NodeJS.Timeout;
}

function isMetricList(value: unknown): value is MetricJson[] {
  return (
    Array.isArray(value) &&
    value.every(
      (m) =>
        typeof m === 'object' && m !== null && typeof (m as { name?: unknown }).name === 'string',
    )
  );
}

/** prom-client's d.ts types `type` as a numeric enum; its JSON carries 'counter', 'gauge', …. */
function typeOf(metric: MetricJson): string {
  return String(metric.type);
}

/**
 * For OpenMetrics: prom-client appends `_total` to counter samples there, and strips it from the
 * family name only for metrics it created itself, not for aggregated ones; without this the
 * samples would read `bridge_http_requests_total_total`.
 */
function openMetricsNames(metrics: readonly MetricJson[]): MetricJson[] {
  return metrics.map((m) =>
    typeOf(m) === 'counter' ? { ...m, name: m.name.replace(/_total$/, '') } : m,
  );
}

export class MetricsAggregator {
  readonly #registry = new Registry();
  readonly #reloadSuccess: Gauge;
  readonly #reloadSuccessTime: Gauge;
  readonly #certificateExpiry: Gauge<'subject'>;
  readonly #restarts: Counter;
  readonly #scrapeErrors: Counter;
  /** The latest snapshot of each live worker, by cluster worker id. */
  readonly #last = new Map<number, MetricJson[]>();
  /**
   * Counters and histograms of workers that are gone. Only appended to synchronously when a
   * worker exits (and compacted behind the appends), so a scrape never sees an exited worker
   * both here and in `#last`, nor in neither.
   */
  #retired: MetricJson[][] = [];
  #compacting = false;
  readonly #pending = new Map<number, PendingCollection>();
  #nextId = 0;
  /** The highest value exported so far for each counter and histogram sample. */
  readonly #floor = new Map<string, number>();

  constructor(workerCount: () => number, build: BuildInfo) {
    const registers = [this.#registry];
    const m = PRIMARY_METRICS;
    new Gauge({
      ...m.workers,
      labelNames: [],
      registers,
      collect() {
        this.set(workerCount());
      },
    });
    new Gauge({ ...m.buildInfo, labelNames: [...m.buildInfo.labelNames], registers }).set(
      {
        version: build.version,
        node: build.node,
        uws: build.uws,
        uws_package: build.uwsPackage,
        tls: build.tls ? 'native' : 'none',
      },
      1,
    );
    this.#reloadSuccess = new Gauge({ ...m.reloadSuccess, labelNames: [], registers });
    this.#reloadSuccessTime = new Gauge({ ...m.reloadSuccessTime, labelNames: [], registers });
    this.configLoaded(true);
    this.#certificateExpiry = new Gauge({
      ...m.certificateExpiry,
      labelNames: [...m.certificateExpiry.labelNames],
      registers,
    });
    this.#restarts = new Counter({ ...m.workerRestarts, labelNames: [], registers });
    this.#scrapeErrors = new Counter({ ...m.scrapeErrors, labelNames: [], registers });
    collectDefaultMetrics({
      register: this.#registry,
      eventLoopMonitoringPrecision: EVENT_LOOP_MONITORING_PRECISION_MS,
    });
    for (const name of DROPPED_DEFAULT_METRICS) this.#registry.removeSingleMetric(name);
    // The whole IPC round trip is ours (as in prom-client's cluster.js): answers by their id,
    // the unasked final snapshot of a draining worker by the worker that sent it.
    cluster.on('message', (worker: Worker, msg: unknown) => {
      if (!isWorkerToPrimary(msg) || msg.type !== 'bridge:metrics') return;
      if (msg.id === FINAL_SNAPSHOT_ID) this.#finalSnapshot(worker, msg.metrics);
      else this.#answer(msg.id, msg.metrics);
    });
    cluster.on('exit', (worker: Worker) => this.#workerExited(worker.id));
  }

  /** A config was put to work (start, reload: true) or refused or abandoned (false). */
  configLoaded(ok: boolean): void {
    this.#reloadSuccess.set(ok ? 1 : 0);
    if (ok) this.#reloadSuccessTime.set(Date.now() / 1000);
  }

  /** The served certificate, at start and after each reload (a renewal moves the date). */
  certificateExpiry(served: ServedCertificate | undefined): void {
    this.#certificateExpiry.reset();
    if (served !== undefined)
      this.#certificateExpiry.set({ subject: served.subject }, served.notAfter);
  }

  workerRestarted(): void {
    this.#restarts.inc();
  }

  #answer(id: number, metrics: unknown): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(isMetricList(metrics) ? metrics : undefined);
  }

  #finalSnapshot(worker: Worker, metrics: unknown): void {
    // Once its exit was handled its last snapshot is retired: taking this one too would count
    // the worker twice, so a snapshot that arrives after the exit is dropped.
    if (worker.isDead() || !isMetricList(metrics)) return;
    this.#last.set(worker.id, metrics);
  }

  /** A worker exited: keep what it counted. Synchronous on purpose (see `#retired`). */
  #workerExited(workerId: number): void {
    const last = this.#last.get(workerId);
    this.#last.delete(workerId);
    if (last === undefined) return;
    this.#retired.push(last.filter((m) => ['counter', 'histogram'].includes(typeOf(m))));
    void this.#compact();
  }

  /** Merges the retired snapshots into one, keeping any appended meanwhile. */
  async #compact(): Promise<void> {
    if (this.#compacting || this.#retired.length < 2) return;
    this.#compacting = true;
    try {
      const n = this.#retired.length;
      const merged = await AggregatorRegistry.aggregate(
        this.#retired.slice(0, n),
      ).getMetricsAsJSON();
      this.#retired = [merged, ...this.#retired.slice(n)];
    } finally {
      this.#compacting = false;
    }
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
  async collect(
    workers: readonly Worker[],
    deadlineMs: number,
    contentType: string,
  ): Promise<string> {
    const answers = await Promise.all(
      workers.map(async (worker) => {
        // A worker that is exiting is not a scrape failure: its counts are (or will be) retired.
        if (!worker.isConnected() || worker.isDead()) return { worker, fresh: undefined };
        const fresh = await this.#ask(worker, deadlineMs);
        if (fresh === undefined) this.#scrapeErrors.inc();
        return { worker, fresh };
      }),
    );
    const own = await this.#registry.getMetricsAsJSON();
    // No await from here to the aggregation: an exit handled in between would move a worker's
    // snapshot into `#retired` after we read `#last` (counted twice) or the other way round.
    const snapshots = answers.map(({ worker, fresh }) => {
      if (fresh === undefined || worker.isDead()) return this.#last.get(worker.id) ?? [];
      this.#last.set(worker.id, fresh);
      return fresh;
    });
    const merged = await AggregatorRegistry.aggregate([
      own,
      ...this.#retired,
      ...snapshots,
    ]).getMetricsAsJSON();
    const monotonic = this.#monotonic(merged);
    const openMetrics = contentType === Registry.OPENMETRICS_CONTENT_TYPE;
    // Aggregating a single list only re-wraps it, to render it.
    const out = AggregatorRegistry.aggregate([
      openMetrics ? openMetricsNames(monotonic) : monotonic,
    ]);
    out.setContentType(
      openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE,
    );
    return out.metrics();
  }

  /** Raises each cumulative sample to at least what it was exported as before (see the header). */
  #monotonic(metrics: readonly MetricJson[]): MetricJson[] {
    return metrics.map((m) => {
      const type = typeOf(m);
      if (type !== 'counter' && type !== 'histogram') return m;
      const values = m.values.map((v) => {
        const labels = Object.entries(v.labels)
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([k, l]) => `${k}=${String(l)}`)
          .join(',');
        // Histogram samples carry their own name (`_bucket`, `_sum`, `_count`); the d.ts omits it.
        const name = 'metricName' in v && typeof v.metricName === 'string' ? v.metricName : m.name;
        const key = `${name}{${labels}}`;
        const value = Math.max(v.value, this.#floor.get(key) ?? -Infinity);
        this.#floor.set(key, value);
        return { ...v, value };
      });
      return { ...m, values };
    });
  }
}
