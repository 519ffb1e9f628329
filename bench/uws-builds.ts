/**
 * The 20.57 uWebSockets.js build next to 20.30, measured where both load: the platform tier's
 * Debian 13 root (test/platforms/debian13-root.sh). The bridge runs inside the root on the
 * root's Node.js; wrk, the broker and the rpc responder stay on this host, as in `npm run bench`.
 * Same machine, same broker, same load; the variants run one after the other in every round
 * (alternated rounds), and the table gives medians over rounds with ratios to the baseline
 * (20.30 on Node.js 20 in the same root). The host's own bridge (Debian 12) is measured too, and
 * 20.57 on Node.js 24 serving HTTPS itself, for what native TLS costs.
 *
 * Usage: node dist/bench/uws-builds.js [--seconds 10] [--rounds 3] [--conns 1000]
 *        [--scenarios publish,rpc] [--out bench/results]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { median, ROOT } from './harness.js';
import { QueueAdmin, type Measured } from './measure.js';
import { runScenario, type Live } from './run-scenario.js';
import type { HttpStackSpec, Scenario } from './scenarios.js';
import { startBridgeStack } from './stacks.js';
import { brokerPid, ensureDebianPackages, raisableNofile } from './system.js';
import { debian13Runtime, type RootNodeMajor } from '../test/helpers/runtime.js';
import { makeTestPki, type TestPki } from '../test/helpers/test-pki.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    conns: { type: 'string', default: '1000' },
    scenarios: { type: 'string', default: 'publish,rpc' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
  },
});
const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

interface Variant {
  readonly id: string;
  readonly label: string;
  /** Undefined: the host's own Node.js (Debian 12). */
  readonly major: RootNodeMajor | undefined;
  readonly build: '20.30' | '20.57';
  /** Served over HTTPS by the bridge itself (wrk speaks TLS; it does not verify the certificate). */
  readonly tls?: boolean;
}

const BASELINE = 'd13-node20-uws20.30';
const VARIANTS: readonly Variant[] = [
  { id: BASELINE, label: 'Debian 13, Node.js 20, uWS 20.30', major: '20', build: '20.30' },
  {
    id: 'd13-node20-uws20.57',
    label: 'Debian 13, Node.js 20, uWS 20.57',
    major: '20',
    build: '20.57',
  },
  {
    id: 'd13-node22-uws20.57',
    label: 'Debian 13, Node.js 22, uWS 20.57',
    major: '22',
    build: '20.57',
  },
  {
    id: 'd13-node24-uws20.57',
    label: 'Debian 13, Node.js 24, uWS 20.57',
    major: '24',
    build: '20.57',
  },
  {
    id: 'd13-node24-uws20.57-tls',
    label: 'Debian 13, Node.js 24, uWS 20.57, HTTPS',
    major: '24',
    build: '20.57',
    tls: true,
  },
  {
    id: 'd12-node20-uws20.30',
    label: 'Debian 12 (host), Node.js 20, uWS 20.30',
    major: undefined,
    build: '20.30',
  },
];

async function stackOf(v: Variant, pki: TestPki): Promise<HttpStackSpec> {
  const runtime = v.major === undefined ? undefined : await debian13Runtime(v.major);
  return {
    id: v.id,
    label: v.label,
    role: 'bridge',
    family: 'bridge',
    kind: 'http',
    start: (ctx) =>
      startBridgeStack(
        ctx,
        {
          env: { BRIDGE_UWS_BUILD: v.build },
          ...(runtime === undefined
            ? {}
            : { node: { command: runtime.command, prefix: runtime.prefix } }),
        },
        v.tls === true ? { certFile: pki.serverCert, keyFile: pki.serverKey } : undefined,
      ),
  };
}

ensureDebianPackages(log);
const conns = Number(values.conns);
const pki = await makeTestPki();
const stacks = await Promise.all(VARIANTS.map((v) => stackOf(v, pki)));
const wanted = values.scenarios.split(',');
const scenarios: Scenario[] = (
  [
    { id: 'publish', mode: 'publish', backend: 'none', title: 'publish, durable classic queue' },
    { id: 'rpc', mode: 'rpc', backend: 'responder', title: 'rpc, reference responder' },
  ] as const
)
  .filter((s) => wanted.includes(s.id))
  .map((s) => ({ ...s, short: s.id, queueType: 'classic', conns: [conns], stacks }));

const admin = new QueueAdmin();
const live: Live = new Set();
const results: Measured[] = [];
const cores = os.availableParallelism();
try {
  for (const scenario of scenarios) {
    results.push(
      ...(await runScenario(scenario, {
        tag: `uws-${Date.now().toString(36)}`,
        seconds: Number(values.seconds),
        rounds: Number(values.rounds),
        workers: cores,
        cores,
        nofile: raisableNofile(),
        timeoutSeconds: 5,
        warmupSeconds: 3,
        brokerPid: brokerPid(),
        admin,
        live,
        log,
      })),
    );
  }
} finally {
  for (const stop of live) await stop().catch(() => undefined);
  await admin.close();
  pki.remove();
}

const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits }) : '—';
const lines = [
  `# uWebSockets.js 20.57 vs 20.30 — ${new Date().toISOString().slice(0, 10)}, ${os.hostname()}`,
  '',
  `${cores} cores, ${cores} bridge workers, ${conns} keep-alive connections (wrk on this host), ` +
    `${values.seconds} s per run, ${values.rounds} alternated rounds, medians; ` +
    'CPU = the bridge\u2019s processes, seconds per 10,000 requests. Command: ' +
    `\`node dist/bench/uws-builds.js --seconds ${values.seconds} --rounds ${values.rounds} --conns ${conns}\`.`,
  '',
  '| scenario | bridge runs on | req/s | × baseline | CPU s/10k | × baseline | p99 ms | non-2xx | rounds |',
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
];
for (const scenario of scenarios) {
  const of = (id: string): Measured[] =>
    results.filter((m) => m.scenario === scenario.id && m.stack === id && m.error === '');
  const base = of(BASELINE);
  const baseRps = median(base.map((m) => m.rps));
  const baseCpu = median(base.map((m) => m.cpuPer10k));
  for (const v of VARIANTS) {
    const runs = of(v.id);
    const rps = median(runs.map((m) => m.rps));
    const cpu = median(runs.map((m) => m.cpuPer10k));
    lines.push(
      `| ${scenario.id} | ${v.label} | ${fmt(rps)} | ${fmt(rps / baseRps, 2)} | ${fmt(cpu, 2)} | ` +
        `${fmt(cpu / baseCpu, 2)} | ${fmt(median(runs.map((m) => m.p99)), 1)} | ` +
        `${fmt(runs.reduce((n, m) => n + m.non2xx, 0))} | ${runs.length} |`,
    );
  }
}
const failed = results.filter((m) => m.error !== '');
for (const m of failed)
  lines.push('', `failed: ${m.scenario} ${m.stack} round ${m.round + 1}: ${m.error}`);
const report = lines.join('\n');
log(`\n${report}`);
mkdirSync(values.out, { recursive: true });
const file = path.join(values.out, `${new Date().toISOString().slice(0, 10)}-uws-builds.md`);
writeFileSync(file, `${report}\n`);
log(`\nwritten to ${path.relative(ROOT, file)}`);
process.exitCode = failed.length > 0 ? 1 : 0;
