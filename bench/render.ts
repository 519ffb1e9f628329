/** Writes a run's markdown report and SVG chart, and points the README's Benchmarks section at it. */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chartSvg } from './chart.js';
import { ROOT } from './harness.js';
import type { Measured } from './measure.js';
import {
  earlierTargets,
  Results,
  scenarioTables,
  summarise,
  targetCounts,
  targets,
  targetsTable,
} from './report.js';
import { buildScenarios, type Scenario } from './scenarios.js';
import { GEVENT_POOL } from './stacks.js';

export interface RunInfo {
  readonly size: 'quick' | 'full';
  readonly seconds: number;
  readonly rounds: number;
  readonly workers: number;
  readonly cores: number;
  readonly timeoutSeconds: number;
  readonly warmupSeconds: number;
  readonly date: string;
  readonly host: string;
  readonly machine: readonly string[];
  readonly scenarios: ReadonlyArray<{
    readonly id: string;
    readonly conns: readonly number[];
    readonly stacks: readonly string[];
  }>;
  readonly minutes: number;
  readonly command: string;
}

/** JSON has no NaN: a saved run's nulls are the NaNs it was written with. */
function revive(runs: readonly Measured[]): Measured[] {
  return runs.map(
    (r) =>
      Object.fromEntries(
        Object.entries(r).map(([k, v]) => [k, v === null ? NaN : v]),
      ) as unknown as Measured,
  ); // same keys, nulls back to NaN
}

function scenariosOf(info: RunInfo): Scenario[] {
  return buildScenarios(info.size).flatMap((s) => {
    const ran = info.scenarios.find((x) => x.id === s.id);
    return ran === undefined
      ? []
      : [{ ...s, conns: ran.conns, stacks: s.stacks.filter((st) => ran.stacks.includes(st.id)) }];
  });
}

function method(info: RunInfo): string {
  return `- Everything runs on 127.0.0.1 of this one machine: wrk (2 threads), the stack under test, RabbitMQ and the
  backends share its ${info.cores} cores. ${info.seconds} s per run, ${info.rounds} round(s): in each round every stack runs once
  at each connection count, in turn (A B A B), and the tables quote the median over rounds (each run in
  parentheses). Every HTTP stack first gets a ${info.warmupSeconds} s warm-up at 100 connections, not counted. Runs at 10,000
  connections last at least 10 s: their first answers come only after about 10,000 ÷ throughput seconds.
- Load: \`wrk -t2 -cN --timeout ${info.timeoutSeconds}s\` with \`bench/wechat-1k.lua\`: a 1 KiB WeChat Pay-style XML POST with a unique
  \`Idempotency-Key\` per request over keep-alive connections. A request unanswered after ${info.timeoutSeconds} s is a timeout
  (a partner gives up about then); socket errors are wrk's connect/read/write errors.
- The bridge runs \`workers: ${info.workers}\` with its default settings otherwise; Fastify + amqplib (\`node:cluster\`) and the uWS hello
  world run the same number of processes; gunicorn runs one sync worker per core (${info.cores}); Tornado and gevent one process.
  The Fastify peer does not check the XML (the bridge does, while it streams in) but publishes the same message
  (mandatory, the contract's properties and x-http-* headers); its amqplib connection sets
  \`noDelay\`, like the bridge's. The Python peers run on Debian's \`python3\` packages and call Celery's \`send_task\`;
  "(confirms)" sets \`broker_transport_options = {'confirm_publish': True}\`; the blocking ones wait with
  \`.get(timeout=5)\` (Tornado in its default thread pool). Blocking gevent serves at most ${GEVENT_POOL} requests at once: Celery's
  \`rpc://\` result consumer opens a broker connection per waiting greenlet, and 1,000 of them exhausted the broker's
  1,024 file descriptors and crashed its memory monitor. Any run that takes the broker past half its descriptor limit is
  stopped, and so is the stack it measured.
- The stacks of a scenario run side by side (idle when not measured). In publish and fire-and-forget runs each stack has
  its own queue, purged before the run and counted once it stops growing after it: wrk stops with requests in flight
  that land afterwards, so messages ≥ 2xx is expected and fewer messages than 2xx is flagged **LOSS**. rpc and blocking
  Celery runs share one request queue served by one backend: \`examples/rpc-responder.ts\` (prefetch 1000), or a Celery
  worker started as its users start it (\`celery -A app worker\`: prefork, one process per core).
- In \`celery-wait\` every stack waits on the same Celery worker: where that worker is what the run is short of (its CPU
  is the "backend" column), the ratios there measure the worker more than the stack.
- Fire-and-forget Celery runs publish into the Celery queue with no worker consuming during the run, as the publish
  runs do: the queue count can be checked, and no consumer takes cores from the stack measured.
- Limits: \`bench/raw-publisher.ts\` (amqplib ConfirmChannel, persistent 1 KiB, the bridge's properties and headers;
  "bare" = without them) keeps min(connections, 256) messages unconfirmed, so a 100-connection run is compared with a
  window of 100; its window-256 run stands for 1,000 and 10,000 connections. \`bench/raw-rpc-client.ts\` keeps as many
  requests in flight over direct reply-to as the run has connections.
- Rates compared are 2xx answers per second, rps × (requests − non-2xx) ÷ requests, wherever a stack can answer
  non-2xx (the bridge refuses with a fast 503 when its oldest publish has waited half its confirm timeout): a fast
  refusal is not a request served. The raw clients count confirmed messages or replies per second. The 503 and 504
  counts of the bridge come from its own metrics (\`bridge_http_requests_total\` by status, before and after the run).
- CPU: user + system time from \`/proc\` of every process of the stack (the bridge's primary and workers), of
  RabbitMQ's \`beam.smp\` and of the backend, over the run. CPU per request = that CPU ÷ the requests answered (any
  status), quoted in seconds per 10,000 requests; the targets compare it between stacks in the same run.
- RSS: peak \`VmRSS\` per process, sampled every 250 ms; "serving" = the workers that handle requests. The tables give
  the largest peak of any round; the peak-RSS targets use the first round's run at that connection count, when the
  stack had seen only smaller loads: after a 10,000-connection run V8 keeps the grown heap for a while, so a later
  1,000-connection run starts from it. Idle RSS: once a stack has started and its processes are quiet (under 3% of a
  core over 500 ms), before its warm-up, the largest serving process's \`VmRSS\`, the largest of 5 samples over 2 s.
  \`VmRSS\` counts the pages of the \`node\` binary each process touched (about 30 MB for an empty Node.js 20 process
  here), which all Node processes share.`;
}

export interface Rendered {
  /** The PASS/MISS counts of both target tables, one line each. */
  readonly counts: string;
  /** The counts and both tables (for the console after a run). */
  readonly summary: string;
}

/** Writes `<base>.md` and `<base>.svg`. */
export function renderReport(info: RunInfo, rawRuns: readonly Measured[], base: string): Rendered {
  const runs = revive(rawRuns);
  const scenarios = scenariosOf(info);
  const results = new Results(summarise(scenarios, runs));
  const rows = targets(results);
  const earlier = earlierTargets(results);
  const table = targetsTable(rows);
  const earlierTable = targetsTable(earlier);
  const name = path.basename(base);
  writeFileSync(
    `${base}.svg`,
    chartSvg(results.cells, `xml-amqp-bridge bench, ${info.date}, ${info.host} (${info.size})`),
  );
  const countLines = [
    `Targets (issue #9): ${targetCounts(rows)}.`,
    `Earlier targets (issue #4): ${targetCounts(earlier)}.`,
  ];
  const counts = countLines.join('\n');
  const failed = runs.filter((r) => r.error !== '');
  const md = [
    `# xml-amqp-bridge benchmark: ${info.date}, ${info.host} (${info.size} run)`,
    '',
    `\`${info.command}\` — ${info.minutes.toFixed(1)} minutes, ${runs.length} runs. ${countLines.join(' ')}`,
    '',
    '## Machine',
    '',
    ...info.machine.map((l) => `- ${l}`),
    '',
    '## Method',
    '',
    method(info),
    '',
    '## Targets (issue #9)',
    '',
    table,
    '',
    '## Earlier targets (issue #4)',
    '',
    earlierTable,
    '',
    `![requests/s and p99 latency per scenario and stack](${name}.svg)`,
    '',
    '## Results by scenario',
    '',
    'Columns: "2xx/s" = requests/s × the share answered 2xx (confirms or replies per second for the raw clients);',
    '"bridge ÷ this" = the bridge\'s 2xx/s over this stack\'s at the same connection count; socket errors and timeouts are',
    'per run; "2xx / messages in queue" per run (confirmed / in queue for the raw publisher); RSS in MB, idle = before the',
    'warm-up ("—": not measured); CPU in seconds per 10,000 requests answered.',
    '',
    scenarioTables(results, scenarios),
    ...(failed.length > 0
      ? [
          '## Runs that failed',
          '',
          ...failed.map(
            (r) => `- ${r.scenario} c${r.conns} ${r.stack} (round ${r.round + 1}): ${r.error}`,
          ),
          '',
        ]
      : []),
  ].join('\n');
  writeFileSync(`${base}.md`, md);
  return { counts, summary: `${counts}\n\n${table}\n\n${earlierTable}` };
}

const START = '<!-- bench:latest:start -->';
const END = '<!-- bench:latest:end -->';

/** Replaces the README block between the bench markers with a link to `<base>.md`, its targets and chart. */
export function updateReadme(base: string, readme = path.join(ROOT, 'README.md')): boolean {
  const text = readFileSync(readme, 'utf8');
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a === -1 || b < a) return false;
  const rel = path.relative(ROOT, base);
  const report = readFileSync(`${base}.md`, 'utf8');
  const machine = /## Machine\n\n([\s\S]*?)\n\n/.exec(report)?.[1] ?? '';
  const targetsBlock = /## Targets \(issue #9\)\n\n([\s\S]*?)\n\n/.exec(report)?.[1] ?? '';
  const earlierBlock = /## Earlier targets \(issue #4\)\n\n([\s\S]*?)\n\n/.exec(report)?.[1] ?? '';
  const block = [
    START,
    `Latest committed run: [\`${rel}.md\`](${rel}.md) (full run).`,
    '',
    machine,
    '',
    targetsBlock,
    '',
    ...(earlierBlock === ''
      ? []
      : ['Earlier targets (issue #4), against the Python stacks:', '', earlierBlock, '']),
    `![requests/s and p99 latency per scenario and stack](${rel}.svg)`,
    END,
  ].join('\n');
  writeFileSync(readme, text.slice(0, a) + block + text.slice(b + END.length));
  return true;
}
