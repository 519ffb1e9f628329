/** Turns the runs into the markdown report: per-scenario tables, ratios, and the issue's targets with PASS/MISS. */
import { median } from './harness.js';
import type { Measured } from './measure.js';
import { rawWindow, type Scenario, type StackFamily, type StackSpec } from './scenarios.js';

/** The runs of one stack at one connection count, summarised. */
export interface Cell {
  readonly scenario: Scenario;
  readonly spec: StackSpec;
  readonly conns: number;
  readonly runs: readonly Measured[];
  /** Runs that produced numbers. */
  readonly ok: readonly Measured[];
  readonly rps: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly socketErrors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly rssMaxMb: number;
  readonly servingRssMaxMb: number;
  readonly rssTotalMb: number;
  readonly cpuPer10k: number;
  readonly brokerCpuPer10k: number;
  readonly backendCpuPer10k: number;
  /** Some run answered more 2xx than there are messages in the queue. */
  readonly loss: boolean;
}

const med = (xs: readonly number[]): number => {
  const f = xs.filter(Number.isFinite);
  return f.length === 0 ? NaN : median(f);
};
const max = (xs: readonly number[]): number => {
  const f = xs.filter(Number.isFinite);
  return f.length === 0 ? NaN : Math.max(...f);
};
const sum = (xs: readonly number[]): number => {
  const f = xs.filter(Number.isFinite);
  return f.length === 0 ? NaN : f.reduce((a, b) => a + b, 0);
};

export function summarise(scenarios: readonly Scenario[], runs: readonly Measured[]): Cell[] {
  const cells: Cell[] = [];
  for (const scenario of scenarios) {
    for (const conns of scenario.conns) {
      for (const spec of scenario.stacks) {
        const mine = runs.filter((r) => r.scenario === scenario.id && r.stack === spec.id && r.conns === conns);
        if (mine.length === 0) continue;
        const ok = mine.filter((r) => r.error === '');
        cells.push({
          scenario,
          spec,
          conns,
          runs: mine,
          ok,
          rps: med(ok.map((r) => r.rps)),
          p50: med(ok.map((r) => r.p50)),
          p90: med(ok.map((r) => r.p90)),
          p99: med(ok.map((r) => r.p99)),
          socketErrors: sum(ok.map((r) => r.connectErrors + r.readErrors + r.writeErrors)),
          timeouts: sum(ok.map((r) => r.timeouts)),
          non2xx: sum(ok.map((r) => r.non2xx)),
          rssMaxMb: max(ok.map((r) => r.rssMaxMb)),
          servingRssMaxMb: max(ok.map((r) => r.servingRssMaxMb)),
          rssTotalMb: max(ok.map((r) => r.rssTotalMb)),
          cpuPer10k: med(ok.map((r) => r.cpuPer10k)),
          brokerCpuPer10k: med(ok.map((r) => r.brokerCpuPer10k)),
          backendCpuPer10k: med(ok.map((r) => r.backendCpuPer10k)),
          loss: ok.some((r) => spec.kind === 'http' && Number.isFinite(r.inQueue) && r.inQueue < r.requests - r.non2xx),
        });
      }
    }
  }
  return cells;
}

export const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
export const fmtMs = (n: number): string => (!Number.isFinite(n) ? '—' : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US'));
const fmt2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '—');
const fmtCount = (n: number): string => (Number.isFinite(n) ? String(n) : '—');

export class Results {
  readonly #cells: readonly Cell[];
  constructor(cells: readonly Cell[]) {
    this.#cells = cells;
  }
  get cells(): readonly Cell[] {
    return this.#cells;
  }
  get(scenario: string, stack: string, conns: number): Cell | undefined {
    return this.#cells.find((c) => c.scenario.id === scenario && c.spec.id === stack && c.conns === conns);
  }
  /** The raw publisher run that stands for `conns` (same window). */
  rawPublisher(scenario: string, conns: number, id = 'raw-publisher'): Cell | undefined {
    return this.#cells.find((c) => c.scenario.id === scenario && c.spec.id === id && rawWindow(c.conns) === rawWindow(conns));
  }
  /** The fastest stack of `family` in `scenario` at `conns`. */
  best(scenario: string, family: StackFamily, conns: number): Cell | undefined {
    return this.#cells
      .filter((c) => c.scenario.id === scenario && c.spec.family === family && c.conns === conns && Number.isFinite(c.rps))
      .sort((a, b) => b.rps - a.rps)[0];
  }
}

function runsText(cell: Cell): string {
  if (cell.ok.length <= 1) return fmtInt(cell.rps);
  return `${fmtInt(cell.rps)} (${cell.ok.map((r) => fmtInt(r.rps)).join(', ')})`;
}

function queueText(cell: Cell): string {
  // The raw publisher has no HTTP statuses: its count is of confirmed messages.
  const answered = (r: Measured): number => (Number.isFinite(r.non2xx) ? r.requests - r.non2xx : r.requests);
  const pairs = cell.ok.filter((r) => Number.isFinite(r.inQueue)).map((r) => `${fmtInt(answered(r))} / ${fmtInt(r.inQueue)}`);
  if (pairs.length === 0) return '';
  return `${pairs.join(', ')}${cell.loss ? ' **LOSS**' : ''}`;
}

function statusesText(cell: Cell): string {
  const parts = cell.ok.map((r) => r.statuses).filter((x) => x !== '');
  return parts.length === 0 ? '' : ` (${parts.join('; ')})`;
}

function errorsText(cell: Cell): string {
  if (cell.spec.kind !== 'http') return '';
  return cell.ok.map((r) => `${r.connectErrors}/${r.readErrors}/${r.writeErrors} +${r.timeouts}`).join(', ');
}

/** One table per scenario, one row per stack and connection count. */
export function scenarioTables(results: Results, scenarios: readonly Scenario[]): string {
  const out: string[] = [];
  for (const scenario of scenarios) {
    const cells = results.cells.filter((c) => c.scenario.id === scenario.id);
    if (cells.length === 0) continue;
    out.push(`### ${scenario.title} (\`${scenario.id}\`)\n`);
    out.push(
      '| stack | conns | req/s, median (runs) | bridge ÷ this | p50 / p90 / p99 ms | socket errors connect/read/write +timeouts, per run | non-2xx, total | 2xx / messages in queue | peak RSS MB: largest process (serving) / all | CPU s per 10k req: stack / broker / backend |',
    );
    out.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const cell of cells) {
      const bridge = results.get(scenario.id, 'bridge', cell.conns);
      const ratio = cell.spec.id === 'bridge' || bridge === undefined ? '' : fmt2(bridge.rps / cell.rps);
      const failed = cell.runs.filter((r) => r.error !== '');
      const failText = failed.length > 0 ? ` — ${failed.length} run(s) failed: ${failed[0]?.error.split('\n')[0] ?? ''}` : '';
      const window = cell.spec.kind === 'raw-publisher' ? `, window ${rawWindow(cell.conns)}` : cell.spec.kind === 'raw-rpc' ? `, ${cell.conns} in flight` : '';
      out.push(
        `| ${cell.spec.id === 'bridge' ? '**bridge**' : cell.spec.label}${window}${failText} | ${fmtInt(cell.conns)} | ${runsText(cell)} | ${ratio} | ${fmtMs(cell.p50)} / ${fmtMs(cell.p90)} / ${fmtMs(cell.p99)} | ${errorsText(cell)} | ${fmtCount(cell.non2xx)}${statusesText(cell)} | ${queueText(cell)} | ${fmtInt(cell.rssMaxMb)} (${fmtInt(cell.servingRssMaxMb)}) / ${fmtInt(cell.rssTotalMb)} | ${fmt2(cell.cpuPer10k)} / ${fmt2(cell.brokerCpuPer10k)} / ${fmt2(cell.backendCpuPer10k)} |`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}

export interface TargetRow {
  readonly target: string;
  readonly where: string;
  readonly measured: string;
  /** undefined: could not be measured in this run. */
  readonly pass: boolean | undefined;
}

function ratioRow(target: string, where: string, num: Cell | undefined, den: Cell | undefined, min: number, denLabel: string): TargetRow {
  if (num === undefined || den === undefined || !Number.isFinite(num.rps) || !Number.isFinite(den.rps) || den.rps === 0) {
    return { target, where, measured: 'not measured', pass: undefined };
  }
  const r = num.rps / den.rps;
  return { target, where, measured: `${r.toFixed(2)} (${fmtInt(num.rps)} vs ${fmtInt(den.rps)} ${denLabel})`, pass: r >= min };
}

/** The issue's targets, each evaluated wherever this run measured it. */
export function targets(results: Results, scenarios: readonly Scenario[]): TargetRow[] {
  const rows: TargetRow[] = [];
  const has = (id: string): Scenario | undefined => scenarios.find((s) => s.id === id);
  for (const id of ['publish-durable', 'publish-quorum']) {
    for (const c of has(id)?.conns ?? []) {
      const raw = results.rawPublisher(id, c);
      rows.push(ratioRow('publish ≥ 0.9 × raw ingest', `${id}, c${c} (window ${rawWindow(c)}, the bridge's headers)`, results.get(id, 'bridge', c), raw, 0.9, 'msgs/s'));
      const bare = results.rawPublisher(id, c, 'raw-publisher-bare');
      if (bare !== undefined) {
        rows.push(ratioRow('same, against bare 1 KiB messages', `${id}, c${c} (window ${rawWindow(c)}, no headers)`, results.get(id, 'bridge', c), bare, 0.9, 'msgs/s'));
      }
    }
  }
  for (const id of ['publish-durable', 'publish-quorum']) {
    for (const c of has(id)?.conns ?? []) rows.push(ratioRow('publish ≥ 1.3 × Fastify + amqplib', `${id}, c${c}`, results.get(id, 'bridge', c), results.get(id, 'fastify', c), 1.3, 'req/s'));
  }
  for (const [family, min, what] of [
    ['python-confirms', 10, 'that waits for confirms'],
    ['python-no-confirms', 6, 'without confirms'],
  ] as const) {
    for (const c of has('celery-ff')?.conns ?? []) {
      const best = results.best('celery-ff', family, c);
      const label = best === undefined ? '' : ` (${best.spec.label})`;
      rows.push(ratioRow(`publish ≥ ${min} × best Python ${what}`, `publish-durable vs celery-ff, c${c}${label}`, results.get('publish-durable', 'bridge', c), best, min, 'req/s'));
      rows.push(ratioRow(`same, like for like: celery wait:false ≥ ${min} × best Python ${what}`, `celery-ff, c${c}${label}`, results.get('celery-ff', 'bridge', c), best, min, 'req/s'));
    }
  }
  for (const scenario of scenarios) {
    for (const c of scenario.conns.filter((n) => n >= 1000)) {
      const cell = results.get(scenario.id, 'bridge', c);
      rows.push(
        cell === undefined || cell.ok.length === 0
          ? { target: 'zero socket errors and timeouts', where: `${scenario.id}, c${c}`, measured: 'not measured', pass: undefined }
          : {
              target: 'zero socket errors and timeouts',
              where: `${scenario.id}, c${c}`,
              measured: `${cell.socketErrors} socket errors, ${cell.timeouts} timeouts`,
              pass: cell.socketErrors === 0 && cell.timeouts === 0,
            },
      );
    }
  }
  for (const id of ['publish-durable', 'publish-quorum', 'rpc']) {
    for (const c of has(id)?.conns ?? []) {
      const b = results.get(id, 'bridge', c);
      const f = results.get(id, 'fastify', c);
      if (b === undefined || f === undefined || !Number.isFinite(b.cpuPer10k) || !Number.isFinite(f.cpuPer10k)) {
        rows.push({ target: 'bridge CPU per 10k requests ≤ 0.5 × Fastify', where: `${id}, c${c}`, measured: 'not measured', pass: undefined });
        continue;
      }
      const r = b.cpuPer10k / f.cpuPer10k;
      rows.push({ target: 'bridge CPU per 10k requests ≤ 0.5 × Fastify', where: `${id}, c${c}`, measured: `${r.toFixed(2)} (${b.cpuPer10k.toFixed(2)} s vs ${f.cpuPer10k.toFixed(2)} s)`, pass: r <= 0.5 });
    }
  }
  const c10k = results.get('publish-durable', 'bridge', 10_000);
  rows.push(
    c10k === undefined || !Number.isFinite(c10k.servingRssMaxMb)
      ? { target: 'RSS per worker < 80 MB at 10,000 connections', where: 'publish-durable, c10000', measured: 'not measured', pass: undefined }
      : { target: 'RSS per worker < 80 MB at 10,000 connections', where: 'publish-durable, c10000', measured: `${c10k.servingRssMaxMb.toFixed(0)} MB (largest worker)`, pass: c10k.servingRssMaxMb < 80 },
  );
  for (const c of has('rpc')?.conns ?? []) rows.push(ratioRow('rpc ≥ 0.7 × raw round trip', `rpc, c${c} (${c} in flight)`, results.get('rpc', 'bridge', c), results.get('rpc', 'raw-rpc', c), 0.7, 'replies/s'));
  for (const c of has('celery-wait')?.conns ?? []) {
    const best = results.best('celery-wait', 'python-blocking', c);
    const label = best === undefined ? '' : ` (${best.spec.label})`;
    rows.push(ratioRow('rpc ≥ 10 × best Python blocking stack', `rpc vs celery-wait, c${c}${label}`, results.get('rpc', 'bridge', c), best, 10, 'req/s'));
    rows.push(ratioRow('same, like for like: celery wait:true ≥ 10 × best Python blocking', `celery-wait, c${c}${label}`, results.get('celery-wait', 'bridge', c), best, 10, 'req/s'));
  }
  const bridgePublish = results.cells.filter((c) => c.spec.id === 'bridge' && (c.scenario.mode === 'publish' || c.scenario.mode === 'celery-ff'));
  rows.push({
    target: 'every 2xx is a message in the queue',
    where: 'all bridge publish and fire-and-forget runs',
    measured: bridgePublish.some((c) => c.loss) ? `loss in ${bridgePublish.filter((c) => c.loss).map((c) => `${c.scenario.id} c${c.conns}`).join(', ')}` : `${bridgePublish.reduce((s, c) => s + c.ok.length, 0)} runs, none lost`,
    pass: bridgePublish.length === 0 ? undefined : !bridgePublish.some((c) => c.loss),
  });
  return rows;
}

export function targetsTable(rows: readonly TargetRow[]): string {
  const mark = (p: boolean | undefined): string => (p === undefined ? 'n/a' : p ? 'PASS' : '**MISS**');
  return ['| target | where | measured | PASS/MISS |', '|---|---|---|---|', ...rows.map((r) => `| ${r.target} | ${r.where} | ${r.measured} | ${mark(r.pass)} |`)].join('\n');
}
