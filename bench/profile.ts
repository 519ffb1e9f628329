/**
 * `npm run bench:profile`: runs the bridge's publish, rpc and celery routes under wrk with the
 * workers under `--cpu-prof`, and prints where a request's CPU goes: the workers' measured CPU
 * per request (from /proc) split over the stages of the request path in the proportions of the
 * profile samples taken during the load (bench/cpu-profile.ts says which frame is which stage).
 *
 * Usage: node dist/bench/profile.js [--modes publish,rpc,celery-ff,celery-wait] [--conns 1000]
 *        [--seconds 10] [--workers 2] [--interval-us 250] [--keep DIR] [--json FILE]
 * Loopback only; every process it starts is stopped by PID; bounded by --seconds per mode.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { isCpuProfile, mergeSplits, splitByStage, STAGES, type StageSplit } from './cpu-profile.js';
import { cpuSeconds, processTree, rssMb, startBridge, workerPids, wrk } from './harness.js';
import { drained, QueueAdmin, quiet, settledCount } from './measure.js';
import {
  bridgeRoute,
  routePath,
  startCeleryWorker,
  startResponder,
  type Mode,
  type Spawned,
} from './stacks.js';
import { ensureDebianPackages, raisableNofile } from './system.js';

const { values } = parseArgs({
  options: {
    modes: { type: 'string', default: 'publish,rpc,celery-ff,celery-wait' },
    conns: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    workers: { type: 'string', default: '2' },
    'interval-us': { type: 'string', default: '250' },
    keep: { type: 'string' },
    json: { type: 'string' },
  },
});

const MODES: readonly Mode[] = ['publish', 'rpc', 'celery-ff', 'celery-wait'];
const modes = values.modes.split(',').map((m) => m.trim());
for (const m of modes)
  if (!MODES.includes(m as Mode)) throw new Error(`unknown mode ${m}: one of ${MODES.join(', ')}`);
const conns = Number(values.conns);
const seconds = Number(values.seconds);
const workers = Number(values.workers);
const intervalUs = Number(values['interval-us']);
const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

interface ModeResult {
  readonly mode: Mode;
  readonly requests: number;
  readonly non2xx: number;
  readonly rps: number;
  /** Workers' CPU (user + system) per request answered, from /proc. */
  readonly cpuUsPerRequest: number;
  readonly peakWorkerRssMb: number;
  readonly split: StageSplit;
}

const sumCpu = (pids: readonly number[]): number =>
  pids.reduce((s, p) => s + (Number.isFinite(cpuSeconds(p)) ? cpuSeconds(p) : 0), 0);
const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

async function profileMode(mode: Mode, admin: QueueAdmin, nofile: number): Promise<ModeResult> {
  const queue = `bench-profile-${process.pid}-${mode}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), `bench-profile-${mode}-`));
  const stops: Array<() => Promise<void>> = [];
  try {
    await admin.declare(queue, 'classic');
    stops.push(() => admin.remove(queue));
    let backend: Spawned | undefined;
    if (mode === 'rpc') backend = await startResponder(queue);
    if (mode === 'celery-wait')
      backend = await startCeleryWorker(
        queue,
        nofile,
        async () => (await admin.count(queue)).consumers > 0,
      );
    if (backend !== undefined) {
      const started = backend;
      stops.push(() => started.stop());
    }
    const queues = mode === 'publish' || mode === 'rpc' ? [{ name: queue, durable: true }] : [];
    const bridge = await startBridge(
      { workers, topology: { queues }, routes: [bridgeRoute({ mode, queue })] },
      {
        nofile,
        nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${intervalUs}`],
      },
    );
    let stopped = false;
    const stopBridge = async (): Promise<void> => {
      if (stopped) return;
      stopped = true;
      await bridge.stop();
    };
    stops.push(stopBridge);
    const url = `http://127.0.0.1:${bridge.port}${routePath(mode)}`;
    const pids = await workerPids(bridge.adminPort);
    // Warm-up (JIT), then an empty queue and idle workers before the measured window.
    await wrk(url, Math.min(conns, 100), 3, { nofile });
    if (mode === 'publish' || mode === 'celery-ff') {
      await settledCount(admin, queue);
      await admin.purge(queue);
    } else await drained(admin, queue);
    await quiet(processTree(bridge.pid));

    let peak = 0;
    const sampler = setInterval(() => {
      for (const p of pids) peak = Math.max(peak, rssMb(p) || 0);
    }, 250);
    const cpu0 = sumCpu(pids);
    const from = monotonicUs();
    const w = await wrk(url, conns, seconds, { nofile, timeoutSeconds: 5 }).finally(() =>
      clearInterval(sampler),
    );
    const to = monotonicUs();
    const cpu1 = sumCpu(pids);
    if (mode === 'publish' || mode === 'celery-ff') {
      await settledCount(admin, queue);
      await admin.purge(queue);
    }
    // The profiles are written when the workers exit.
    await stopBridge();
    const splits: StageSplit[] = [];
    for (const pid of pids) {
      const file = readdirSync(dir).find(
        (f) => f.includes(`.${pid}.`) && f.endsWith('.cpuprofile'),
      );
      if (file === undefined) throw new Error(`no CPU profile of worker ${pid} in ${dir}`);
      const parsed: unknown = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
      if (!isCpuProfile(parsed)) throw new Error(`${file} is not a V8 CPU profile`);
      splits.push(splitByStage(parsed, from, to));
    }
    const split = mergeSplits(splits);
    if (split.busySamples === 0)
      throw new Error(`no samples in the load window (profile clock mismatch?) in ${dir}`);
    if (values.keep !== undefined) {
      mkdirSync(values.keep, { recursive: true });
      for (const f of readdirSync(dir))
        writeFileSync(path.join(values.keep, `${mode}-${f}`), readFileSync(path.join(dir, f)));
    }
    return {
      mode,
      requests: w.requests,
      non2xx: w.non2xx,
      rps: w.rps,
      cpuUsPerRequest: ((cpu1 - cpu0) * 1e6) / Math.max(1, w.requests),
      peakWorkerRssMb: peak,
      split,
    };
  } finally {
    for (const stop of stops.reverse())
      await stop().catch((err: unknown) => log(`profile: stop failed: ${String(err)}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The budget table: µs per request by stage, one column per mode. */
function budgetTable(results: readonly ModeResult[]): string {
  const us = (r: ModeResult, n: number): number => (n / r.split.busySamples) * r.cpuUsPerRequest;
  const f = (x: number): string => (x >= 10 ? x.toFixed(0) : x.toFixed(1));
  const head = `| stage, µs CPU per request | ${results.map((r) => r.mode).join(' | ')} |`;
  const rule = `|---|${results.map(() => '--:').join('|')}|`;
  const rows = STAGES.map(
    (stage) =>
      `| ${stage} | ${results.map((r) => f(us(r, r.split.samples.get(stage) ?? 0))).join(' | ')} |`,
  );
  const total = `| **total (workers' CPU from /proc)** | ${results.map((r) => `**${f(r.cpuUsPerRequest)}**`).join(' | ')} |`;
  const rate = `| requests/s (non-2xx) | ${results.map((r) => `${Math.round(r.rps).toLocaleString('en-US')} (${r.non2xx})`).join(' | ')} |`;
  const rss = `| peak RSS per worker, MB | ${results.map((r) => r.peakWorkerRssMb.toFixed(0)).join(' | ')} |`;
  const busy = `| workers busy (share of samples not idle) | ${results.map((r) => `${((100 * r.split.busySamples) / (r.split.busySamples + r.split.idleSamples)).toFixed(0)} %`).join(' | ')} |`;
  return [head, rule, ...rows, total, rate, rss, busy].join('\n');
}

ensureDebianPackages(log);
const nofile = raisableNofile();
const admin = new QueueAdmin();
const results: ModeResult[] = [];
try {
  for (const mode of modes as Mode[]) {
    log(
      `profile: ${mode}, ${conns} connections, ${seconds} s, ${workers} workers, sampling every ${intervalUs} µs`,
    );
    results.push(await profileMode(mode, admin, nofile));
  }
} finally {
  await admin.close();
}
log('');
log(`Per-stage CPU budget, ${conns} connections, ${workers} workers, ${seconds} s per route`);
log('');
log(budgetTable(results));
if (values.json !== undefined) {
  writeFileSync(
    values.json,
    JSON.stringify(
      results.map((r) => ({
        ...r,
        split: { ...r.split, samples: Object.fromEntries(r.split.samples) },
      })),
      null,
      2,
    ),
  );
}
