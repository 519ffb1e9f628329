/**
 * What a broker gives per node, and what the bridge gives on it (README, "Scaling out"), measured
 * in one run on this machine for three setups:
 *   (a) one private RabbitMQ node, a durable classic queue;
 *   (b) one private node, a quorum queue (one member);
 *   (c) a private 3-node cluster (test/helpers/cluster.ts), a quorum queue with 3 members, the
 *       bridge given all three URLs (worker N starts at amqp.urls[N % 3]).
 * For each: (1) the broker alone, bench/raw-publisher.ts confirming from one channel (no bridge);
 * (2) the bridge (2 workers, publish route, wrk with bench/wechat-1k.lua, 1 KB XML) — req/s,
 * p99 and the bridge's CPU µs per request. Rounds alternate the setups (a, b, c, a, b, c, ...);
 * figures are medians of the rounds, with ratios against (a) of the same run.
 *
 * Everything runs on the same cores: the three cluster nodes share them with the bridge and wrk,
 * so (c) shows what replication costs per message, not what three machines would give.
 *
 * Never touches the shared broker on 127.0.0.1:5672: it starts its own nodes (private-broker.ts:
 * own node names, ports, data directories, cookies), refuses any URL on port 5672, and checks
 * where the bridge's workers connected. Every node and bridge it starts is stopped by PID at the
 * end, on failure and on SIGINT/SIGTERM. Loopback only; bounded in time (each run is bounded,
 * rounds that would pass the time budget are skipped and the report says so).
 *
 * `npm run bench` runs it as its "cluster-throughput" section (`--scenarios cluster-throughput`
 * alone); run by itself it writes bench/results/<date>-cluster-throughput.md.
 * Usage: node dist/bench/cluster-throughput.js [--seconds 8] [--rounds 5] [--conns 100]
 *        [--warmup 2] [--quiet-wait 30] [--out bench/results]
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  cpuSeconds,
  median,
  processTree,
  ROOT,
  run,
  startBridge,
  wrk,
  WRK_THREADS,
  type BenchBridge,
} from './harness.js';
import { QueueAdmin, quiet, settledCount } from './measure.js';
import { machineBusySeconds, ownSeconds } from './machine-cpu.js';
import type { Live } from './run-scenario.js';
import { bridgeStatuses } from './stacks.js';
import { describeMachine, ensureDebianPackages, raisableNofile } from './system.js';
import { startCluster, waitForQuorum, type Cluster } from '../test/helpers/cluster.js';
import { startPrivateBroker, type PrivateBroker } from '../test/helpers/private-broker.js';

const SELF = fileURLToPath(import.meta.url);
export const CLUSTER_THROUGHPUT_ID = 'cluster-throughput';

type SetupId = 'a' | 'b' | 'c';
const SETUPS: ReadonlyArray<{ readonly id: SetupId; readonly label: string }> = [
  { id: 'a', label: '(a) 1 node, classic queue' },
  { id: 'b', label: '(b) 1 node, quorum queue' },
  { id: 'c', label: '(c) 3-node cluster, quorum queue (3 members)' },
];
/** The bridge's workers: fixed, as the question is about the broker side. */
const WORKERS = 2;
/** Other processes' CPU (cores) during a run above which it is measured again (once). */
const DISTURBED_CORES = 0.25;

export interface ClusterThroughputOptions {
  readonly tag: string;
  readonly seconds: number;
  readonly rounds: number;
  readonly conns: number;
  readonly nofile: number;
  readonly timeoutSeconds: number;
  readonly warmupSeconds: number;
  /**
   * Before each run, the longest wait for other processes to go quiet (this machine is shared:
   * a test suite beside a run would be measured with it); the run is then measured anyway and
   * flagged. Waiting does not count against the time budget.
   */
  readonly quietWaitSeconds: number;
  readonly live: Live;
  readonly log: (line: string) => void;
}

/** One measured run: the broker alone (`raw`) or through the bridge (`bridge`). NaN = not measured. */
export interface ClusterRun {
  readonly setup: SetupId;
  readonly kind: 'raw' | 'bridge';
  readonly round: number;
  /** Confirms per second (raw) or 2xx answers per second (bridge). */
  readonly rate: number;
  /** Messages confirmed (raw) or requests answered (bridge). */
  readonly count: number;
  readonly non2xx: number;
  readonly statuses: string;
  readonly socketErrors: string;
  readonly p50: number;
  readonly p99: number;
  /** The bridge's CPU (all its processes) per request, µs. */
  readonly bridgeCpuUs: number;
  /** Its CPU seconds per second of the run. */
  readonly bridgeCores: number;
  /** CPU of the setup's RabbitMQ node(s), all together, per message, µs. */
  readonly brokerCpuUs: number;
  /** The setup's nodes' CPU seconds per second of the run: all together, and the busiest node. */
  readonly brokerCores: number;
  readonly busiestNodeCores: number;
  /** Messages in the queue after the run (then purged). */
  readonly inQueue: number;
  /** Cores' worth of CPU that processes other than this bench's used during the run. */
  readonly otherCores: number;
  /** The busiest of those other processes, when they used more than DISTURBED_CORES. */
  readonly otherTop: string;
  /** Seconds it waited before starting for other processes to go quiet. */
  readonly waitedSeconds: number;
  readonly attempts: number;
  readonly error: string;
}

export interface ClusterThroughputResult {
  readonly seconds: number;
  readonly rounds: number;
  readonly quietWaitSeconds: number;
  /** Rounds measured (fewer than `rounds` when the time budget ran out). */
  readonly roundsDone: number;
  readonly conns: number;
  readonly workers: number;
  readonly window: number;
  readonly runs: readonly ClusterRun[];
  /** Where the bridges' workers and the quorum leader were, as checked after the start. */
  readonly placement: readonly string[];
  readonly notes: readonly string[];
}

/** The section's length in seconds, for run.ts's estimate (and this script's budget). */
export function clusterThroughputSeconds(o: {
  seconds: number;
  rounds: number;
  warmupSeconds: number;
}): number {
  // Start: the cluster (~15 s) and the single node (~5 s), three bridges and their warm-ups.
  // Per round and setup: a raw and a bridge run of `seconds`, each ~4 s of start, settling,
  // purging and waiting for quiet.
  return 30 + 3 * (3 + o.warmupSeconds + 2) + o.rounds * 3 * 2 * (o.seconds + 4);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** CPU seconds so far and name of every process (/proc), to name what else used the machine. */
function allProcesses(): Map<number, { comm: string; cpu: number }> {
  const out = new Map<number, { comm: string; cpu: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const f = stat.split(') ')[1]?.split(' ') ?? [];
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      out.set(Number(entry), { comm, cpu: (Number(f[11]) + Number(f[12])) / 100 });
    } catch {
      // the process exited while we listed /proc
    }
  }
  return out;
}

/** The processes outside `ours` that used most CPU between two snapshots, as `name (cores)`. */
function topOthers(
  before: Map<number, { comm: string; cpu: number }>,
  ours: ReadonlySet<number>,
  seconds: number,
): string {
  return [...allProcesses().entries()]
    .filter(([pid]) => !ours.has(pid))
    .map(([pid, p]) => ({
      pid,
      comm: p.comm,
      cores: (p.cpu - (before.get(pid)?.cpu ?? p.cpu)) / seconds,
    }))
    .filter((p) => p.cores >= 0.03)
    .sort((x, y) => y.cores - x.cores)
    .slice(0, 3)
    .map((p) => `${p.comm} ${p.pid} (${p.cores.toFixed(2)})`)
    .join(', ');
}

const sumCpu = (pids: readonly number[]): number =>
  pids.reduce((s, p) => s + (Number.isFinite(cpuSeconds(p)) ? cpuSeconds(p) : 0), 0);

const portOf = (url: string): number => Number(new URL(url).port || 5672);

/** Refuses the shared broker: every URL this bench uses must be one of its own nodes. */
function ownUrl(url: string): string {
  const u = new URL(url);
  if (u.hostname !== '127.0.0.1' || portOf(url) === 5672)
    throw new Error(`refusing ${u.hostname}:${portOf(url)}: only private nodes on 127.0.0.1`);
  return url;
}

/** One setup, running: its node(s), queue, admin connection and bridge. */
interface Setup {
  readonly id: SetupId;
  readonly queue: string;
  readonly queueType: 'classic' | 'quorum';
  /** The URL the raw publisher uses (for (c): the quorum leader's node). */
  rawUrl: string;
  readonly urls: readonly string[];
  /** The Erlang VMs whose CPU is the broker's (read at each run: a PID is per boot). */
  readonly brokerPids: () => number[];
  readonly admin: QueueAdmin;
  bridge?: BenchBridge;
}

/** Workers' connections by node (`host:port`) from the bridge's /metrics. */
async function bridgeConnections(adminPort: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^bridge_amqp_connections\{node="([^"]*)"\} (\S+)$/gm))
    if (Number(m[2]) > 0) out.set(m[1] ?? '', Number(m[2]));
  return out;
}

export async function runClusterThroughput(
  o: ClusterThroughputOptions,
): Promise<ClusterThroughputResult> {
  const started = Date.now();
  // The budget: the estimate and half again, not counting waits for other processes to go
  // quiet (each bounded by quietWaitSeconds); rounds that would end after it are skipped.
  const budgetMs = 1.5 * clusterThroughputSeconds(o) * 1000 + 60_000;
  let waitedMs = 0;
  const spent = (): number => Date.now() - started - waitedMs;
  const window = o.conns; // as many unconfirmed messages as the bridge can have (one per connection)
  // The bridge's config file says where to publish; an environment override must not redirect it.
  delete process.env['BRIDGE_AMQP_URLS'];
  delete process.env['BRIDGE_WORKERS'];
  const runs: ClusterRun[] = [];
  const placement: string[] = [];
  const notes: string[] = [];
  let single: PrivateBroker | undefined;
  let cluster: Cluster | undefined;
  const setups: Setup[] = [];
  // Every start is recorded before it is awaited, so that a stop (SIGINT, a failure) during a
  // start waits for it (each start is bounded) and stops what it started.
  let singleStart: Promise<PrivateBroker> | undefined;
  let clusterStart: Promise<Cluster> | undefined;
  const bridgeStarts: Array<Promise<BenchBridge>> = [];
  // Ends wrk and the raw publisher at once on a stop (their own -d / seconds bound them anyway).
  const abort = new AbortController();
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      abort.abort();
      for (const b of bridgeStarts) await (await b.catch(() => undefined))?.stop();
      for (const s of setups) await s.admin.close();
      single ??= await singleStart?.catch(() => undefined);
      cluster ??= await clusterStart?.catch(() => undefined);
      await Promise.all([single?.stop(), cluster?.stop()]);
    })());
  /** Between steps: nothing new is started once a stop has begun. */
  const going = (): void => {
    if (stopping !== undefined) throw new Error('stopped');
  };
  const bounded = (ms: number): AbortSignal =>
    AbortSignal.any([abort.signal, AbortSignal.timeout(ms)]);
  o.live.add(stopAll);
  let roundsDone = 0;
  try {
    o.log(`${CLUSTER_THROUGHPUT_ID}: starting a private 3-node cluster and a private node`);
    clusterStart = startCluster(`bench-${o.tag}`);
    cluster = await clusterStart;
    going();
    singleStart = startPrivateBroker(`bench-${o.tag}-single`);
    single = await singleStart;
    going();
    const one = single;
    const three = cluster;
    const queueArgs = (t: 'classic' | 'quorum'): Record<string, unknown> =>
      t === 'quorum' ? { 'x-queue-type': 'quorum' } : {};
    const mk = (id: SetupId, t: 'classic' | 'quorum', urls: readonly string[]): Setup => ({
      id,
      queue: `bench-${o.tag}-${CLUSTER_THROUGHPUT_ID}-${id}`,
      queueType: t,
      rawUrl: ownUrl(urls[0] ?? ''),
      urls: urls.map(ownUrl),
      brokerPids: () => (id === 'c' ? three.nodes.map((n) => n.pid) : [one.pid]),
      admin: new QueueAdmin(ownUrl(urls[0] ?? '')),
    });
    setups.push(mk('a', 'classic', [one.url]), mk('b', 'quorum', [one.url]));
    setups.push(mk('c', 'quorum', three.urls));
    // Queue depth: each queue is purged after every run (and deleted at the end), so no run
    // starts with the previous one's messages. Not a consumer: it would take broker CPU from
    // the run being measured. Not x-max-length with drop-head: dropping the oldest is more work
    // per message for the broker than a plain append, and the queue would hold the cap's worth of
    // messages in every run, so the runs would measure a full queue rather than publishing.
    for (const s of setups) await s.admin.declare(s.queue, s.queueType);
    const q = await waitForQuorum(three, setups[2]?.queue ?? '', 3);
    const leader = three.nodeNamed(q.leader);
    // The raw publisher's one channel goes to the leader's node: the broker at its best.
    if (leader !== undefined && setups[2] !== undefined) setups[2].rawUrl = ownUrl(leader.url);
    placement.push(
      `(c): quorum queue leader on node ${leader?.index ?? '?'} of 3 (declared through node 1), ` +
        `members ${q.members.length}, online ${q.online.length}; the raw publisher connects to the leader's node`,
    );

    for (const s of setups) {
      o.log(`${CLUSTER_THROUGHPUT_ID}: starting the bridge for ${s.id} (${s.urls.length} URL(s))`);
      going();
      const start = startBridge(
        {
          workers: WORKERS,
          amqp: { urls: s.urls },
          topology: {
            queues: [{ name: s.queue, durable: true, arguments: queueArgs(s.queueType) }],
          },
          routes: [{ path: '/notify', mode: 'publish', exchange: '', routingKey: s.queue }],
        },
        { nofile: o.nofile },
      );
      bridgeStarts.push(start);
      s.bridge = await start;
      going();
      const conns = await bridgeConnections(s.bridge.adminPort);
      const ports = s.urls.map((u) => `127.0.0.1:${portOf(u)}`);
      const stray = [...conns.keys()].filter((k) => !ports.includes(k));
      if (stray.length > 0)
        throw new Error(`the ${s.id} bridge connected to ${stray.join(', ')}, not its own nodes`);
      placement.push(
        `(${s.id}): the bridge's ${WORKERS} workers on ` +
          [...conns.entries()].map(([k, n]) => `node ${ports.indexOf(k) + 1} (×${n})`).join(', '),
      );
    }
    o.log(`${CLUSTER_THROUGHPUT_ID}: ${placement.join('; ')}`);

    const url = (s: Setup): string => `http://127.0.0.1:${s.bridge?.port ?? 0}/notify`;
    // This bench's processes: everything it started (bridges, nodes, wrk, raw publisher) is
    // below it; itself (and its children once reaped) is counted by ownSeconds().
    const bench = (): number[] => processTree(process.pid).filter((p) => p !== process.pid);
    // Other processes' CPU (cores) over `ms`: the machine's busy time minus ours.
    const otherOver = async (ms: number): Promise<{ cores: number; top: string }> => {
      const pids = bench();
      const snapshot = allProcesses();
      const [busy0, ours0, t0] = [machineBusySeconds(), sumCpu(pids) + ownSeconds(), Date.now()];
      await sleep(ms);
      const ours = sumCpu(pids) + ownSeconds() - ours0;
      const wall = (Date.now() - t0) / 1000;
      const cores = Math.max(0, (machineBusySeconds() - busy0 - ours) / wall);
      return { cores, top: topOthers(snapshot, new Set([process.pid, ...bench()]), wall) };
    };
    /**
     * Waits (at most quietWaitSeconds) until other processes use under DISTURBED_CORES;
     * answers the seconds waited and what kept the machine busy.
     */
    const quietOthers = async (): Promise<{ waited: number; top: string }> => {
      const t0 = Date.now();
      let last = await otherOver(1000);
      while (last.cores >= DISTURBED_CORES && Date.now() - t0 < o.quietWaitSeconds * 1000)
        last = await otherOver(1000);
      waitedMs += Date.now() - t0;
      return { waited: (Date.now() - t0) / 1000, top: last.top };
    };

    for (const s of setups) {
      going();
      const w = await wrk(url(s), o.conns, o.warmupSeconds, {
        timeoutSeconds: o.timeoutSeconds,
        nofile: o.nofile,
        signal: bounded((o.warmupSeconds + o.timeoutSeconds + 30) * 1000),
      });
      await settledCount(s.admin, s.queue);
      await s.admin.purge(s.queue);
      o.log(`${CLUSTER_THROUGHPUT_ID}: warm-up ${s.id}: ${Math.round(w.rps)}/s`);
    }

    const measure = async (
      s: Setup,
      kind: 'raw' | 'bridge',
      round: number,
    ): Promise<ClusterRun> => {
      going();
      const bridge = s.bridge;
      if (bridge === undefined) throw new Error('no bridge');
      const tree = processTree(bridge.pid);
      const nodes = s.brokerPids();
      const pids = bench();
      const snapshot = allProcesses();
      const statuses0 = kind === 'bridge' ? await bridgeStatuses(bridge.adminPort) : undefined;
      const node0 = nodes.map((p) => cpuSeconds(p));
      const [bridge0, busy0, ours0, t0] = [
        sumCpu(tree),
        machineBusySeconds(),
        sumCpu(pids) + ownSeconds(),
        performance.now(),
      ];
      let rate: number;
      let count: number;
      let non2xx = 0;
      let socketErrors = '';
      let p50 = NaN;
      let p99 = NaN;
      if (kind === 'raw') {
        const out = await run(
          process.execPath,
          [
            path.join(ROOT, 'dist/bench/raw-publisher.js'),
            s.queue,
            String(o.seconds),
            String(window),
            'bridge',
            s.queueType,
            ownUrl(s.rawUrl),
          ],
          bounded((o.seconds + 30) * 1000), // it waits for its last confirms: bounded
        );
        const r = JSON.parse(out.stdout.trim().split('\n').pop() ?? '{}') as {
          confirmed?: number;
          rate?: number;
        }; // raw-publisher's one JSON line
        rate = r.rate ?? NaN;
        count = r.confirmed ?? NaN;
      } else {
        const w = await wrk(url(s), o.conns, o.seconds, {
          timeoutSeconds: o.timeoutSeconds,
          nofile: o.nofile,
          signal: bounded((o.seconds + o.timeoutSeconds + 30) * 1000),
        });
        count = w.requests;
        non2xx = w.non2xx;
        rate = w.requests > 0 ? (w.rps * (w.requests - w.non2xx)) / w.requests : NaN;
        socketErrors = w.socketErrors;
        [p50, p99] = [w.p50, w.p99];
      }
      const wall = (performance.now() - t0) / 1000;
      const bridgeCpu = sumCpu(tree) - bridge0;
      const nodeCpu = nodes.map((p, i) => cpuSeconds(p) - (node0[i] ?? NaN));
      const brokerCpu = nodeCpu.reduce((a, b) => a + b, 0);
      const other = Math.max(
        0,
        (machineBusySeconds() - busy0 - (sumCpu(pids) + ownSeconds() - ours0)) / wall,
      );
      const otherTop =
        other > DISTURBED_CORES ? topOthers(snapshot, new Set([process.pid, ...pids]), wall) : '';
      const inQueue = await settledCount(s.admin, s.queue);
      await s.admin.purge(s.queue);
      await quiet(tree, 10_000);
      const statuses1 = kind === 'bridge' ? await bridgeStatuses(bridge.adminPort) : undefined;
      const statuses =
        statuses1 === undefined
          ? ''
          : [...statuses1.entries()]
              .map(([st, n]) => [st, n - (statuses0?.get(st) ?? 0)] as const)
              .filter(([st, n]) => n > 0 && !st.startsWith('2') && st !== '499') // 499: wrk left
              .map(([st, n]) => `${st}×${n}`)
              .join(', ');
      const per = count > 0 ? count : NaN;
      return {
        setup: s.id,
        kind,
        round,
        rate,
        count,
        non2xx,
        statuses,
        socketErrors,
        p50,
        p99,
        bridgeCpuUs: kind === 'bridge' ? (bridgeCpu / per) * 1e6 : NaN,
        bridgeCores: kind === 'bridge' ? bridgeCpu / wall : NaN,
        brokerCpuUs: (brokerCpu / per) * 1e6,
        brokerCores: brokerCpu / wall,
        busiestNodeCores: Math.max(...nodeCpu) / wall,
        inQueue,
        otherCores: other,
        otherTop,
        waitedSeconds: 0,
        attempts: 1,
        error: '',
      };
    };

    const perRun = 2 * (o.seconds + 4) * 1000;
    for (let round = 0; round < o.rounds; round++) {
      if (spent() + 3 * perRun > budgetMs) {
        notes.push(
          `stopped after ${round} of ${o.rounds} rounds: the next would have passed the time budget`,
        );
        break;
      }
      for (const s of setups) {
        for (const kind of ['raw', 'bridge'] as const) {
          let best: ClusterRun | undefined;
          for (let attempt = 1; attempt <= 2; attempt++) {
            const { waited, top } = await quietOthers();
            if (waited > 1.5)
              o.log(
                `${CLUSTER_THROUGHPUT_ID}: waited ${Math.round(waited)} s for other processes to go quiet${top === '' ? '' : ` (busiest at the end: ${top})`}`,
              );
            let m: ClusterRun;
            try {
              m = { ...(await measure(s, kind, round)), waitedSeconds: waited, attempts: attempt };
            } catch (err) {
              if (stopping !== undefined) throw err;
              m = {
                setup: s.id,
                kind,
                round,
                rate: NaN,
                count: NaN,
                non2xx: NaN,
                statuses: '',
                socketErrors: '',
                p50: NaN,
                p99: NaN,
                bridgeCpuUs: NaN,
                bridgeCores: NaN,
                brokerCpuUs: NaN,
                brokerCores: NaN,
                busiestNodeCores: NaN,
                inQueue: NaN,
                otherCores: NaN,
                otherTop: '',
                waitedSeconds: NaN,
                attempts: attempt,
                error: err instanceof Error ? err.message : String(err),
              };
              await s.admin.purge(s.queue).catch(() => undefined);
            }
            o.log(
              `${CLUSTER_THROUGHPUT_ID} ${s.id} ${kind} (round ${round + 1}, attempt ${attempt}): ` +
                (m.error !== ''
                  ? `FAILED: ${m.error}`
                  : `${Math.round(m.rate)}/s` +
                    (kind === 'bridge'
                      ? `, p99 ${m.p99.toFixed(1)} ms, bridge ${m.bridgeCpuUs.toFixed(1)} µs/request, non-2xx ${m.non2xx}${m.statuses === '' ? '' : ` (${m.statuses})`}`
                      : '') +
                    `, broker ${m.brokerCpuUs.toFixed(1)} µs/message (${m.brokerCores.toFixed(2)} cores, busiest node ${m.busiestNodeCores.toFixed(2)}), ` +
                    `in queue ${m.inQueue}/${kind === 'raw' ? m.count : m.count - m.non2xx}; other processes ${m.otherCores.toFixed(2)} cores${m.otherTop === '' ? '' : ` (${m.otherTop})`}`),
            );
            if (best === undefined || best.error !== '' || m.otherCores < best.otherCores) best = m;
            // A second attempt only while the time budget allows it.
            if (m.error !== '' || m.otherCores <= DISTURBED_CORES) break;
            if (spent() + perRun / 2 > budgetMs) break;
          }
          if (best !== undefined) runs.push(best);
        }
      }
      roundsDone = round + 1;
    }
    for (const s of setups) await s.admin.remove(s.queue);
  } finally {
    await stopAll().catch((err: unknown) =>
      o.log(`${CLUSTER_THROUGHPUT_ID}: stop failed: ${String(err)}`),
    );
    o.live.delete(stopAll);
  }
  return {
    seconds: o.seconds,
    rounds: o.rounds,
    quietWaitSeconds: o.quietWaitSeconds,
    roundsDone,
    conns: o.conns,
    workers: WORKERS,
    window,
    runs,
    placement,
    notes,
  };
}

const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : '—';

/** The section's markdown: what was measured, the two tables, the rounds. */
export function clusterThroughputMarkdown(r: ClusterThroughputResult, heading = '##'): string {
  const ok = (id: SetupId, kind: 'raw' | 'bridge'): ClusterRun[] =>
    r.runs.filter((m) => m.setup === id && m.kind === kind && m.error === '');
  const med = (id: SetupId, kind: 'raw' | 'bridge', f: (m: ClusterRun) => number): number =>
    median(ok(id, kind).map(f));
  const vsA = (id: SetupId, kind: 'raw' | 'bridge', f: (m: ClusterRun) => number): string =>
    id === 'a' ? '1.00' : fmt(med(id, kind, f) / med('a', kind, f), 2);
  const rounds = (id: SetupId, kind: 'raw' | 'bridge'): string =>
    r.runs
      .filter((m) => m.setup === id && m.kind === kind)
      .map((m) =>
        m.error !== ''
          ? 'failed'
          : kind === 'raw'
            ? `${fmt(m.rate)} (${fmt(m.otherCores, 2)})`
            : `${fmt(m.rate)} (${fmt(m.p99, 1)}; ${fmt(m.bridgeCpuUs, 1)}; ${fmt(m.otherCores, 2)})`,
      )
      .join(', ');
  const sum = (xs: ClusterRun[], f: (m: ClusterRun) => number): number =>
    xs.reduce((n, m) => n + f(m), 0);
  const out: string[] = [
    `${heading} What a broker node gives, and what the bridge gives on it: 1 node vs a 3-node cluster`,
    '',
    '**All three cluster nodes, the single node, the bridge and the load generator share the same ' +
      `${os.availableParallelism()} cores of this one machine.** Setup (c) therefore shows what ` +
      'replicating every message to three quorum members costs per message on the same CPU, ' +
      'not what three machines would give: on three hosts each node would have its own cores.',
    '',
    'Setups: (a) one private RabbitMQ node, a durable classic queue; (b) the same node, a quorum ' +
      'queue (one member); (c) a private 3-node cluster (test/helpers/cluster.ts: own node names, ' +
      'ports, data directories and cookie, `join_cluster`), a quorum queue with 3 members, the ' +
      'bridge given all three URLs in `amqp.urls` (worker N starts at entry N). The shared broker ' +
      'on 127.0.0.1:5672 is not used. All four nodes run throughout (idle when not measured), and ' +
      'one bridge per setup runs throughout (idle when not measured), each warmed up once. ' +
      `Rounds alternate the setups (a, b, c, a, b, c, …), ${r.roundsDone} rounds` +
      `${r.roundsDone < r.rounds ? ` of the ${r.rounds} asked` : ''}, and in each setup the raw ` +
      'run comes before the bridge run; figures are medians over rounds, × (a) = the ratio of ' +
      'medians against (a) in this run.',
    '',
    `- **Broker alone**: \`bench/raw-publisher.ts\`, one connection and one confirm channel, ` +
      `${r.window} unconfirmed persistent 1 KiB messages at most, with the bridge's properties ` +
      `and headers, ${r.seconds} s per run; (c) connects to the quorum leader's node. ` +
      'Rate = confirms per second.',
    `- **Through the bridge**: the bridge (\`workers: ${r.workers}\`, one \`publish\` route to the ` +
      `queue), \`wrk -t${WRK_THREADS} -c${r.conns}\` with \`bench/wechat-1k.lua\` (a ~1 KB WeChat ` +
      `Pay XML body), ${r.seconds} s per run. req/s = 2xx answers per second; p99 = wrk's; bridge ` +
      'CPU = user + system time of all its processes (/proc) over the run ÷ requests answered.',
    '- Broker CPU = the setup\u2019s Erlang VM(s) (all three nodes for (c)) over the run ÷ ' +
      'messages; broker cores = their CPU seconds per second, with the busiest node\u2019s. ' +
      'In queue = messages counted in the queue once it settled after the run; it can exceed the ' +
      '2xx wrk counted, as requests still in flight when wrk stopped are published too. ' +
      'Other processes = machine busy time (/proc/stat) minus this bench\u2019s processes (bridges, ' +
      `nodes, wrk, raw publisher) in cores; a run above ${DISTURBED_CORES} was measured once ` +
      'more and the less disturbed attempt kept.',
    '- Queue depth: each queue is purged after every run (after counting what landed in it) ' +
      'and deleted at the end; no consumer (it would take broker CPU from the run measured) and ' +
      'no x-max-length (dropping heads is extra broker work, and the queue would be full in ' +
      'every run).',
    '',
    `${heading}# Broker alone (raw publisher, one channel)`,
    '',
    '| setup | confirms/s | × (a) | broker CPU µs/message | × (a) | broker cores (busiest node) | confirmed / in queue | rounds: confirms/s (other processes, cores) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  const rate = (m: ClusterRun): number => m.rate;
  const brokerUs = (m: ClusterRun): number => m.brokerCpuUs;
  for (const s of SETUPS) {
    const xs = ok(s.id, 'raw');
    const confirmed = sum(xs, (m) => m.count);
    const inQueue = sum(xs, (m) => m.inQueue);
    out.push(
      `| ${s.label} | ${fmt(med(s.id, 'raw', rate))} | ${vsA(s.id, 'raw', rate)} | ` +
        `${fmt(med(s.id, 'raw', brokerUs), 1)} | ${vsA(s.id, 'raw', brokerUs)} | ` +
        `${fmt(
          med(s.id, 'raw', (m) => m.brokerCores),
          2,
        )} (${fmt(
          med(s.id, 'raw', (m) => m.busiestNodeCores),
          2,
        )}) | ` +
        `${fmt(confirmed)} / ${fmt(inQueue)}${inQueue < confirmed ? ' **LOSS**' : ''} | ${rounds(s.id, 'raw')} |`,
    );
  }
  out.push(
    '',
    `${heading}# Through the bridge (${r.workers} workers, ${r.conns} connections)`,
    '',
    '| setup | req/s | × (a) | ÷ broker alone | p99 ms | × (a) | bridge CPU µs/request | × (a) | bridge cores | broker CPU µs/request | × (a) | broker cores (busiest node) | non-2xx | 2xx / in queue | rounds: req/s (p99 ms; bridge µs/request; other processes, cores) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  );
  const p99 = (m: ClusterRun): number => m.p99;
  const bridgeUs = (m: ClusterRun): number => m.bridgeCpuUs;
  for (const s of SETUPS) {
    const xs = ok(s.id, 'bridge');
    const twoxx = sum(xs, (m) => m.count - m.non2xx);
    const inQueue = sum(xs, (m) => m.inQueue);
    const statuses = xs
      .map((m) => m.statuses)
      .filter((x) => x !== '')
      .join('; ');
    out.push(
      `| ${s.label} | ${fmt(med(s.id, 'bridge', rate))} | ${vsA(s.id, 'bridge', rate)} | ` +
        `${fmt(med(s.id, 'bridge', rate) / med(s.id, 'raw', rate), 2)} | ` +
        `${fmt(med(s.id, 'bridge', p99), 1)} | ${vsA(s.id, 'bridge', p99)} | ` +
        `${fmt(med(s.id, 'bridge', bridgeUs), 1)} | ${vsA(s.id, 'bridge', bridgeUs)} | ` +
        `${fmt(
          med(s.id, 'bridge', (m) => m.bridgeCores),
          2,
        )} | ` +
        `${fmt(med(s.id, 'bridge', brokerUs), 1)} | ${vsA(s.id, 'bridge', brokerUs)} | ` +
        `${fmt(
          med(s.id, 'bridge', (m) => m.brokerCores),
          2,
        )} (${fmt(
          med(s.id, 'bridge', (m) => m.busiestNodeCores),
          2,
        )}) | ` +
        `${fmt(sum(xs, (m) => m.non2xx))}${statuses === '' ? '' : ` (${statuses})`} | ` +
        `${fmt(twoxx)} / ${fmt(inQueue)}${inQueue < twoxx ? ' **LOSS**' : ''} | ${rounds(s.id, 'bridge')} |`,
    );
  }
  out.push('', `Placement: ${r.placement.join('; ')}.`);
  const errors = r.runs.filter((m) => m.socketErrors !== '' && m.socketErrors !== 'none');
  if (errors.length > 0)
    out.push(
      '',
      `wrk socket errors: ${errors.map((m) => `${m.setup} round ${m.round + 1}: ${m.socketErrors}`).join('; ')}.`,
    );
  const again = r.runs.filter((m) => m.attempts > 1);
  if (again.length > 0)
    out.push(
      '',
      `Measured again (other processes above ${DISTURBED_CORES} cores): ${again.map((m) => `${m.setup} ${m.kind} round ${m.round + 1}`).join(', ')}.`,
    );
  const waited = r.runs.filter((m) => m.waitedSeconds > 1.5);
  if (waited.length > 0)
    out.push(
      '',
      `Before each run the bench waits (at most ${r.quietWaitSeconds} s) until other processes use under ${DISTURBED_CORES} cores; ` +
        `${waited.length} of the kept runs waited, up to ${fmt(Math.max(...waited.map((m) => m.waitedSeconds)))} s.`,
    );
  const disturbed = r.runs.filter((m) => m.otherTop !== '');
  if (disturbed.length > 0)
    out.push(
      '',
      `Kept runs during which other processes used more than ${DISTURBED_CORES} cores: ${disturbed.map((m) => `${m.setup} ${m.kind} round ${m.round + 1}: ${fmt(m.otherCores, 2)} cores, busiest ${m.otherTop}`).join('; ')}.`,
    );
  for (const m of r.runs.filter((x) => x.error !== ''))
    out.push('', `failed: ${m.setup} ${m.kind} round ${m.round + 1}: ${m.error}`);
  for (const n of r.notes) out.push('', `Note: ${n}.`);
  out.push('');
  return out.join('\n');
}

if (process.argv[1] === SELF) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '8' },
      rounds: { type: 'string', default: '5' },
      conns: { type: 'string', default: '100' },
      warmup: { type: 'string', default: '2' },
      'quiet-wait': { type: 'string', default: '30' },
      out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    },
  });
  const t0 = Date.now();
  const log = (line: string): void => {
    process.stdout.write(
      `[${String(Math.round((Date.now() - t0) / 1000)).padStart(4)}s] ${line}\n`,
    );
  };
  ensureDebianPackages(log, ['wrk']);
  const nofile = raisableNofile();
  const live: Live = new Set();
  let stopping = false;
  const stopAll = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log(`${CLUSTER_THROUGHPUT_ID}: ${signal}: stopping everything it started`);
    for (const stop of [...live].reverse()) await stop().catch(() => undefined);
    process.exit(130);
  };
  process.on('SIGINT', (s) => void stopAll(s));
  process.on('SIGTERM', (s) => void stopAll(s));
  const options = {
    tag: Date.now().toString(36),
    seconds: Number(values.seconds),
    rounds: Number(values.rounds),
    conns: Number(values.conns),
    nofile,
    timeoutSeconds: 5,
    warmupSeconds: Number(values.warmup),
    quietWaitSeconds: Number(values['quiet-wait']),
    live,
    log,
  };
  const started = Date.now();
  log(
    `${CLUSTER_THROUGHPUT_ID}: ${options.rounds} rounds × 3 setups × (raw + bridge) of ${options.seconds} s; ` +
      `about ${Math.round(clusterThroughputSeconds(options) / 60)} min`,
  );
  const result = await runClusterThroughput(options);
  const date = new Date().toISOString().slice(0, 10);
  const machine = describeMachine(nofile).lines.filter((l) => !l.startsWith('Python'));
  const command = ['node dist/bench/cluster-throughput.js', ...process.argv.slice(2)].join(' ');
  const report = [
    `# Cluster throughput: 1 node vs a 3-node cluster, broker alone and through the bridge — ${date}, ${os.hostname()}`,
    '',
    `\`${command}\` (after \`npx tsc -p tsconfig.json\`; \`npm run bench\` runs the same as its ` +
      `"${CLUSTER_THROUGHPUT_ID}" section) — ${((Date.now() - started) / 60_000).toFixed(1)} minutes.`,
    '',
    '## Machine',
    '',
    ...machine.map((l) => `- ${l}`),
    '- the RabbitMQ nodes measured are private ones started by the bench (4 Erlang VMs), on the ' +
      'same host and cores as everything else',
    '',
    clusterThroughputMarkdown(result),
  ].join('\n');
  process.stdout.write(`\n${report}\n`);
  mkdirSync(values.out, { recursive: true });
  const file = path.join(values.out, `${date}-${CLUSTER_THROUGHPUT_ID}.md`);
  writeFileSync(file, `${report.trimEnd()}\n`);
  log(`written to ${path.relative(ROOT, file)}`);
  process.exitCode = result.runs.some((m) => m.error !== '') ? 1 : 0;
}
