/**
 * `npm run bench`: every scenario × stack of the benchmark on 127.0.0.1, bounded in time, every
 * process started and stopped by PID; writes bench/results/<date>-<host>.md, .svg and .json.
 * Then the "partner-auth" section (bench/partner-auth.ts): what partner verification costs, per
 * verification and end to end; `--scenarios partner-auth` runs it alone, and a --scenarios list
 * without it leaves it out. Then the "cluster-throughput" section (bench/cluster-throughput.ts): one
 * private RabbitMQ node against a private 3-node cluster, the broker alone and through the bridge
 * (its own nodes only; never the shared broker); selected the same way.
 *
 * Usage: node dist/bench/run.js [--quick | --full] [--seconds N] [--rounds N] [--workers N]
 *        [--timeout S] [--warmup S] [--scenarios a,b] [--stacks a,b] [--conns 100,1000]
 *        [--out DIR] [--no-readme] [--render FILE.json] [--dry-run]
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './harness.js';
import type { Measured } from './measure.js';
import { QueueAdmin } from './measure.js';
import {
  CLUSTER_THROUGHPUT_ID,
  clusterThroughputMarkdown,
  clusterThroughputSeconds,
  runClusterThroughput,
  type ClusterThroughputResult,
} from './cluster-throughput.js';
import {
  PARTNER_AUTH_ID,
  partnerAuthMarkdown,
  partnerAuthSeconds,
  runPartnerAuth,
  type PartnerAuthResult,
} from './partner-auth.js';
import { renderReport, updateReadme, type RunInfo } from './render.js';
import { runScenario, runSeconds, type Live } from './run-scenario.js';
import { buildScenarios } from './scenarios.js';
import { brokerPid, describeMachine, ensureDebianPackages, raisableNofile } from './system.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
    seconds: { type: 'string' },
    rounds: { type: 'string' },
    workers: { type: 'string' },
    timeout: { type: 'string' },
    warmup: { type: 'string' },
    scenarios: { type: 'string' },
    stacks: { type: 'string' },
    conns: { type: 'string' },
    out: { type: 'string' },
    'no-readme': { type: 'boolean', default: false },
    render: { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
  },
});
const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const list = (s: string | undefined): string[] | undefined =>
  s
    ?.split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
/** The partner-auth section, appended to the report (its own heading, subsections below it). */
const partnerAuthSection = (result: PartnerAuthResult): string =>
  `\n## Partner access control (issue #13): what verification costs\n\n` +
  `Run by \`bench/partner-auth.ts\` (alone: \`node dist/bench/partner-auth.js\`).\n\n` +
  partnerAuthMarkdown(result, '###');
/** The cluster-throughput section, appended after it. */
const clusterThroughputSection = (result: ClusterThroughputResult): string =>
  `\n## Cluster throughput: 1 node vs a 3-node cluster\n\n` +
  `Run by \`bench/cluster-throughput.ts\` (alone: \`node dist/bench/cluster-throughput.js\`).\n\n` +
  clusterThroughputMarkdown(result, '###');

if (values.render !== undefined) {
  // Re-render a saved run (report layout changes need no new measurements).
  const saved = JSON.parse(readFileSync(values.render, 'utf8')) as {
    info: RunInfo;
    runs: Measured[];
    partnerAuth?: PartnerAuthResult;
    clusterThroughput?: ClusterThroughputResult;
  }; // written by this script below
  const base = values.render.replace(/\.json$/, '');
  const { counts } = renderReport(saved.info, saved.runs, base);
  if (saved.partnerAuth !== undefined)
    appendFileSync(`${base}.md`, partnerAuthSection(saved.partnerAuth));
  if (saved.clusterThroughput !== undefined)
    appendFileSync(`${base}.md`, clusterThroughputSection(saved.clusterThroughput));
  log(`bench: rendered ${base}.md and ${base}.svg\n${counts}`);
  process.exit(0);
}

const size = values.full ? 'full' : 'quick';
const cores = os.availableParallelism();
const info0 = {
  size,
  seconds: Number(values.seconds ?? (size === 'full' ? 10 : 4)),
  rounds: Number(values.rounds ?? (size === 'full' ? 3 : 1)),
  workers: Number(values.workers ?? cores),
  cores,
  timeoutSeconds: Number(values.timeout ?? 5),
  warmupSeconds: Number(values.warmup ?? (size === 'full' ? 3 : 1)),
} as const;

ensureDebianPackages(log);
if (!existsSync(path.join(ROOT, 'dist', 'src', 'primary', 'main.js')))
  throw new Error('the bridge is not built: run `npm run build` (npm run bench does)');
const nofile = raisableNofile();
if (nofile < 10_100)
  log(
    `bench: warning: ulimit -n can only be raised to ${nofile}; the 10,000-connection runs will hit it`,
  );
const beam = brokerPid();
if (beam === undefined)
  log('bench: warning: no beam.smp process found; broker CPU is not measured');
const admin = new QueueAdmin();
try {
  await admin.declare(`bench-probe-${process.pid}`, 'classic');
  await admin.remove(`bench-probe-${process.pid}`);
} catch (err) {
  throw new Error(`RabbitMQ does not answer on 127.0.0.1:5672 (guest/guest): ${String(err)}`, {
    cause: err,
  });
}
const machine = describeMachine(nofile);

const onlyScenarios = list(values.scenarios);
const onlyStacks = list(values.stacks);
const onlyConns = list(values.conns)?.map(Number);
const scenarios = buildScenarios(size)
  .filter((s) => onlyScenarios === undefined || onlyScenarios.includes(s.id))
  .map((s) => ({
    ...s,
    conns: s.conns.filter((c) => onlyConns === undefined || onlyConns.includes(c)),
    stacks: s.stacks.filter((st) => onlyStacks === undefined || onlyStacks.includes(st.id)),
  }))
  .filter((s) => s.stacks.length > 0 && s.conns.length > 0);

const partnerAuth =
  onlyScenarios === undefined || onlyScenarios.includes(PARTNER_AUTH_ID)
    ? {
        seconds: info0.seconds,
        // Its ratios are the point: never fewer than 3 alternated rounds, even in a quick run.
        rounds: Math.max(3, info0.rounds),
        conns: onlyConns?.[0] ?? 100,
        warmupSeconds: info0.warmupSeconds,
        microRounds: size === 'full' ? 9 : 5,
        e2e: true,
      }
    : undefined;
const clusterThroughput =
  onlyScenarios === undefined || onlyScenarios.includes(CLUSTER_THROUGHPUT_ID)
    ? {
        seconds: info0.seconds,
        // Ratios against (a) again: at least 3 alternated rounds.
        rounds: Math.max(3, info0.rounds),
        conns: onlyConns?.[0] ?? 100,
        warmupSeconds: info0.warmupSeconds,
        quietWaitSeconds: 30,
      }
    : undefined;

const plan = scenarios.flatMap((s) =>
  s.conns.flatMap((c) =>
    s.stacks.filter((st) => st.conns === undefined || st.conns.includes(c)).map(() => c),
  ),
);
const runCount = plan.length * info0.rounds;
const startCount = scenarios.reduce((n, s) => n + s.stacks.length, 0);
const estimate =
  info0.rounds * plan.reduce((t, c) => t + runSeconds(info0.seconds, c) + 2.5, 0) +
  startCount * (info0.warmupSeconds + 5.5) + // + idle RSS: quiet, then 2 s of samples
  (partnerAuth === undefined ? 0 : partnerAuthSeconds(partnerAuth)) +
  (clusterThroughput === undefined ? 0 : clusterThroughputSeconds(clusterThroughput));
log(
  `bench: ${size} run: ${runCount} runs of ${info0.seconds} s in ${scenarios.length} scenarios, ${info0.rounds} round(s)` +
    `${partnerAuth === undefined ? '' : `, then ${PARTNER_AUTH_ID} (${partnerAuth.rounds} rounds × 3 routes at ${partnerAuth.conns} connections)`}` +
    `${clusterThroughput === undefined ? '' : `, then ${CLUSTER_THROUGHPUT_ID} (${clusterThroughput.rounds} rounds × 3 setups)`}; about ${Math.round(estimate / 60)} min`,
);
log(`bench: ${machine.lines.join('\n       ')}`);
if (values['dry-run']) {
  for (const s of scenarios)
    log(
      `  ${s.id}: connections ${s.conns.join(', ')}; stacks ${s.stacks.map((st) => `${st.id}${st.conns === undefined ? '' : ` (at ${st.conns.join(', ')})`}`).join(', ')}`,
    );
  if (partnerAuth !== undefined)
    log(
      `  ${PARTNER_AUTH_ID}: verifier costs (${partnerAuth.microRounds} rounds); routes open, apikey, webhook at ${partnerAuth.conns} connections, ${partnerAuth.rounds} rounds`,
    );
  if (clusterThroughput !== undefined)
    log(
      `  ${CLUSTER_THROUGHPUT_ID}: 1 node classic, 1 node quorum, 3-node cluster quorum; raw publisher and bridge at ${clusterThroughput.conns} connections, ${clusterThroughput.rounds} rounds`,
    );
  await admin.close();
  process.exit(0);
}

const live: Live = new Set();
let interrupted = false;
const cleanup = async (signal: NodeJS.Signals): Promise<void> => {
  if (interrupted) return;
  interrupted = true;
  log(`bench: ${signal}: stopping everything it started`);
  for (const stop of [...live].reverse()) await stop().catch(() => undefined);
  await admin.close();
  process.exit(130);
};
process.on('SIGINT', (s) => void cleanup(s));
process.on('SIGTERM', (s) => void cleanup(s));

const started = Date.now();
const tag = `${Date.now().toString(36)}`;
const runs: Measured[] = [];
for (const scenario of scenarios) {
  runs.push(
    ...(await runScenario(scenario, {
      tag,
      seconds: info0.seconds,
      rounds: info0.rounds,
      workers: info0.workers,
      cores,
      nofile,
      timeoutSeconds: info0.timeoutSeconds,
      warmupSeconds: info0.warmupSeconds,
      brokerPid: beam,
      admin,
      live,
      log: (line) =>
        log(`[${String(Math.round((Date.now() - started) / 1000)).padStart(4)}s] ${line}`),
    })),
  );
}
let partnerAuthResult: PartnerAuthResult | undefined;
let partnerAuthError: string | undefined;
if (partnerAuth !== undefined) {
  try {
    partnerAuthResult = await runPartnerAuth({
      ...partnerAuth,
      tag,
      workers: info0.workers,
      nofile,
      timeoutSeconds: info0.timeoutSeconds,
      brokerPid: beam,
      admin,
      live,
      log: (line) =>
        log(`[${String(Math.round((Date.now() - started) / 1000)).padStart(4)}s] ${line}`),
    });
  } catch (err) {
    // The scenarios' results are still worth their report.
    partnerAuthError = err instanceof Error ? err.message : String(err);
    log(`bench: ${PARTNER_AUTH_ID} failed: ${partnerAuthError}`);
    process.exitCode = 1;
  }
}
let clusterThroughputResult: ClusterThroughputResult | undefined;
let clusterThroughputError: string | undefined;
if (clusterThroughput !== undefined) {
  try {
    clusterThroughputResult = await runClusterThroughput({
      ...clusterThroughput,
      tag,
      nofile,
      timeoutSeconds: info0.timeoutSeconds,
      live,
      log: (line) =>
        log(`[${String(Math.round((Date.now() - started) / 1000)).padStart(4)}s] ${line}`),
    });
  } catch (err) {
    clusterThroughputError = err instanceof Error ? err.message : String(err);
    log(`bench: ${CLUSTER_THROUGHPUT_ID} failed: ${clusterThroughputError}`);
    process.exitCode = 1;
  }
}
await admin.close();

const date = new Date().toISOString().slice(0, 10);
const outDir =
  values.out ?? path.join(ROOT, 'bench', 'results', ...(size === 'full' ? [] : ['tmp']));
mkdirSync(outDir, { recursive: true });
const base = path.join(outDir, `${date}-${machine.host}${size === 'full' ? '' : `-${size}`}`);
const info: RunInfo = {
  ...info0,
  date,
  host: machine.host,
  machine: machine.lines,
  scenarios: scenarios.map((s) => ({
    id: s.id,
    conns: s.conns,
    stacks: s.stacks.map((st) => st.id),
  })),
  minutes: (Date.now() - started) / 60_000,
  command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
};
writeFileSync(
  `${base}.json`,
  `${JSON.stringify({ info, runs, ...(partnerAuthResult === undefined ? {} : { partnerAuth: partnerAuthResult }), ...(clusterThroughputResult === undefined ? {} : { clusterThroughput: clusterThroughputResult }) }, null, 1)}\n`,
);
const { summary } = renderReport(info, runs, base);
if (partnerAuthResult !== undefined)
  appendFileSync(`${base}.md`, partnerAuthSection(partnerAuthResult));
if (partnerAuthError !== undefined)
  appendFileSync(
    `${base}.md`,
    `\n## Partner access control (issue #13)\n\nFailed: ${partnerAuthError}\n`,
  );
if (clusterThroughputResult !== undefined)
  appendFileSync(`${base}.md`, clusterThroughputSection(clusterThroughputResult));
if (clusterThroughputError !== undefined)
  appendFileSync(
    `${base}.md`,
    `\n## Cluster throughput: 1 node vs a 3-node cluster\n\nFailed: ${clusterThroughputError}\n`,
  );
log(`\n${summary}\n`);
if (partnerAuthResult !== undefined) log(`${partnerAuthMarkdown(partnerAuthResult)}\n`);
if (clusterThroughputResult !== undefined)
  log(`${clusterThroughputMarkdown(clusterThroughputResult)}\n`);
log(`bench: done in ${info.minutes.toFixed(1)} min: ${base}.md, ${base}.svg, ${base}.json`);
if (size === 'full' && !values['no-readme'] && values.out === undefined) {
  log(
    updateReadme(base)
      ? 'bench: README.md "Benchmarks" section now points at this run'
      : 'bench: README.md has no bench markers; left unchanged',
  );
}
