/**
 * The cluster faults (issue #14), as fault-ledger cases (test/faults/harness.ts) against a bridge
 * whose `amqp.urls` are the three nodes of a private cluster (test/helpers/cluster.ts) and whose
 * queue is a quorum queue: kill -9 of the node the workers are on, a graceful stop of the quorum
 * queue's leader, a rolling restart of all three nodes. Each case also times its failover from the
 * answers (`account`), into a `ClusterStats` the runner prints as the cluster table.
 */
import assert from 'node:assert/strict';
import { scrapeText, seriesOf, valueOf } from '../helpers/admin.js';
import { workerPids, type LogLine, type RunningBridge } from '../helpers/bridge.js';
import { waitForQuorum, type Cluster, type ClusterNode } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/poll.js';
import { is2xx, type KeyedAnswer } from '../helpers/keyed-load.js';
import { scaledMs, type FaultCase, type FaultContext } from '../faults/harness.js';
import { CLUSTER_SCALE } from './scale.js';

/**
 * The bridge's wait before it tries a node again. A worker that loses its node tries the other
 * nodes at once, so no outage may last this long while another node is up.
 */
export const RECONNECT_SECONDS = 2;

/** What a case's answers say about its failover (times in ms from the fault's start). */
export interface ClusterStats {
  readonly case: string;
  /** Requests issued from the fault's start on (fault and after phases, probes included). */
  readonly requests: number;
  readonly ok: number;
  /** Answers that were not 2xx (any status, or no answer). */
  readonly failures: number;
  readonly status503: number;
  /** First and last 503 (answer time), from the fault's start; undefined without any. */
  readonly window503: readonly [number, number] | undefined;
  /** First and last failure of any kind, from the fault's start. */
  readonly failureWindow: readonly [number, number] | undefined;
  /** From the first failure to the first 2xx of a request issued after it. */
  readonly failoverMs: number | undefined;
  /** The longest time without any 2xx answer, from the fault's start to the end of the load. */
  readonly longestGapMs: number;
  /** How long the fault itself lasted (inject to heal), for reading the windows. */
  readonly faultMs: number;
  /** Answers that were not 2xx before the fault started (must be 0). */
  readonly failuresBefore: number;
  /**
   * Each broker disconnection of a worker from the fault's start on, from the bridge's log
   * (`broker state` disconnected → connected): worker slot and ms without a connection.
   */
  readonly outages: ReadonlyArray<{ readonly worker: string; readonly ms: number | undefined }>;
  /** Lines for the report: where the workers were, leader moves, metrics. */
  readonly facts: string[];
  /** Failed answers and channel replacements per worker, from the bridge's log. */
  readonly byWorker: string;
  /** The workers' broker events from the fault's start on (state, connected, lost), from the log. */
  readonly events: string;
  /** From each lost connection to the worker's next connection (ms), from the log. */
  readonly reconnectDelays: readonly number[];
  /** When the node went down, from the fault's start (cases that record it). */
  readonly downAt: number | undefined;
  /**
   * Failed answers to requests begun after the node was back and the cluster whole (cases that
   * record it): the workers' moves back to their own nodes happen then, and must cost nothing.
   */
  readonly failuresAfterBack: number | undefined;
}

/** Failover figures from a case's answers. */
function failoverStats(
  name: string,
  answers: readonly KeyedAnswer[],
  faultFrom: number,
  healedAt: number,
  facts: string[],
  logs: readonly LogLine[],
  downAt: number | undefined,
  backAt: number | undefined,
): ClusterStats {
  const since = answers.filter((a) => a.endedAt >= faultFrom);
  const failed = since.filter((a) => !is2xx(a)).sort((a, b) => a.endedAt - b.endedAt);
  const s503 = since.filter((a) => a.status === 503).sort((a, b) => a.endedAt - b.endedAt);
  const oks = since
    .filter(is2xx)
    .map((a) => a.endedAt)
    .sort((a, b) => a - b);
  const rel = (t: number): number => Math.round(t - faultFrom);
  const span = (xs: readonly KeyedAnswer[]): readonly [number, number] | undefined =>
    xs.length === 0 ? undefined : [rel(xs[0]?.endedAt ?? 0), rel(xs[xs.length - 1]?.endedAt ?? 0)];
  const first = failed[0];
  let failoverMs: number | undefined;
  if (first !== undefined) {
    const back = since
      .filter((a) => is2xx(a) && a.startedAt >= first.endedAt)
      .reduce((min, a) => Math.min(min, a.endedAt), Infinity);
    if (back !== Infinity) failoverMs = Math.round(back - first.endedAt);
  }
  let longestGapMs = 0;
  let previous = faultFrom;
  for (const t of oks) {
    longestGapMs = Math.max(longestGapMs, t - previous);
    previous = t;
  }
  return {
    case: name,
    requests: since.length,
    ok: oks.length,
    failures: failed.length,
    status503: s503.length,
    window503: span(s503),
    failureWindow: span(failed),
    failoverMs,
    longestGapMs: Math.round(longestGapMs),
    faultMs: Math.round(healedAt - faultFrom),
    failuresBefore: answers.filter((a) => a.endedAt < faultFrom && !is2xx(a)).length,
    byWorker: failuresByWorker(logs, performance.timeOrigin + faultFrom),
    events: brokerEvents(logs, performance.timeOrigin + faultFrom),
    reconnectDelays: reconnectDelays(logs, performance.timeOrigin + faultFrom),
    outages: outagesFromLog(
      logs,
      performance.timeOrigin + faultFrom,
      // The bridge is stopped before the ledger is read: its shutdown is no outage.
      performance.timeOrigin + answers.reduce((max, a) => Math.max(max, a.endedAt), healedAt),
    ),
    facts,
    downAt: downAt === undefined ? undefined : Math.round(downAt - faultFrom),
    failuresAfterBack:
      backAt === undefined ? undefined : failed.filter((a) => a.startedAt >= backAt).length,
  };
}

/** Worker disconnections between `from` and `until` (epoch ms) and how long each lasted, from `broker state` lines. */
function outagesFromLog(
  logs: readonly LogLine[],
  from: number,
  until: number,
): Array<{ worker: string; ms: number | undefined }> {
  const down = new Map<string, number>();
  const out: Array<{ worker: string; ms: number | undefined }> = [];
  for (const line of logs) {
    const time = Number(line['time']);
    if (line.msg !== 'broker state' || !(time >= from)) continue;
    if (time > until && !down.has(String(line['worker']))) continue;
    const worker = String(line['worker']);
    const state = line['state'];
    if (state === 'disconnected' && !down.has(worker)) down.set(worker, time);
    else if (state === 'connected' && down.has(worker)) {
      out.push({ worker, ms: time - (down.get(worker) ?? time) });
      down.delete(worker);
    }
  }
  for (const worker of down.keys()) out.push({ worker, ms: undefined });
  return out;
}

/**
 * Per worker, from the bridge's log after `from` (epoch ms): failed answers by status with the
 * time of the first and last (ms after `from`), and when its confirm channel was replaced.
 */
function failuresByWorker(logs: readonly LogLine[], from: number): string {
  const by = new Map<
    string,
    { statuses: Map<number, number>; first: number; last: number; replaced: number[] }
  >();
  const entry = (worker: string) => {
    let e = by.get(worker);
    if (e === undefined) {
      e = { statuses: new Map(), first: Infinity, last: -Infinity, replaced: [] };
      by.set(worker, e);
    }
    return e;
  };
  for (const line of logs) {
    const time = Number(line['time']);
    if (!(time >= from)) continue;
    const worker = String(line['worker']);
    if (line.msg === 'access' && typeof line['status'] === 'number' && line['status'] >= 300) {
      const e = entry(worker);
      e.statuses.set(line['status'], (e.statuses.get(line['status']) ?? 0) + 1);
      e.first = Math.min(e.first, time - from);
      e.last = Math.max(e.last, time - from);
    } else if (String(line.msg).startsWith('confirm channel replaced'))
      entry(worker).replaced.push(Math.round(time - from));
  }
  return [...by]
    .map(
      ([w, e]) =>
        `w${w}: ${[...e.statuses].map(([st, n]) => `${n}×${st}`).join(' ') || 'no failures'}` +
        (e.first === Infinity ? '' : ` +${Math.round(e.first)}…+${Math.round(e.last)} ms`) +
        (e.replaced.length === 0
          ? ''
          : `, channel replaced at ${e.replaced.map((t) => `+${t}`).join(', ')} ms`),
    )
    .join('; ');
}

/**
 * Per lost connection after `from` (epoch ms), how long until the worker's next `broker
 * connected` line: the failover's own delay, before its channel is opened and the topology
 * declared (which can wait for the queue's leader election).
 */
function reconnectDelays(logs: readonly LogLine[], from: number): number[] {
  const lostAt = new Map<string, number>();
  const delays: number[] = [];
  for (const line of logs) {
    const time = Number(line['time']);
    if (!(time >= from)) continue;
    const worker = String(line['worker']);
    if (line.msg === 'broker connection lost' && !lostAt.has(worker)) lostAt.set(worker, time);
    else if (line.msg === 'broker connected' && lostAt.has(worker)) {
      delays.push(Math.round(time - (lostAt.get(worker) ?? time)));
      lostAt.delete(worker);
    }
  }
  return delays;
}

/** The bridge's broker events after `from` (epoch ms), per worker: what an outage consisted of. */
function brokerEvents(logs: readonly LogLine[], from: number): string {
  const wanted: Record<string, (l: LogLine) => string> = {
    'broker state': (l) => String(l['state']),
    'broker connected': (l) => `connected ${String(l['node'])}`,
    'broker connection lost': () => 'lost',
    'broker connection failed': () => 'connect failed',
    'broker connection moved back to its first node; the old one closes when drained': () =>
      'moved home',
  };
  return logs
    .filter((l) => Number(l['time']) >= from && wanted[String(l.msg)] !== undefined)
    .map(
      (l) =>
        `w${String(l['worker'])} ${wanted[String(l.msg)]?.(l) ?? ''} +${Math.round(Number(l['time']) - from)}`,
    )
    .join(', ');
}

/** Where the bridge's workers are connected, from the broker's side: `worker N pid P` → node. */
async function workerNodes(
  cluster: Cluster,
  ctx: FaultContext,
): Promise<Array<{ worker: string; node: ClusterNode | undefined }>> {
  const pids = await workerPids(ctx.bridge);
  const connections = await cluster.connections();
  return connections
    .filter((c) => pids.some((p) => c.name.endsWith(` pid ${p}`)))
    .map((c) => ({ worker: c.name.replace(/^xml-amqp-bridge /, ''), node: c.node }))
    .sort((a, b) => a.worker.localeCompare(b.worker));
}

const describeNodes = (placed: Array<{ worker: string; node: ClusterNode | undefined }>): string =>
  placed.map((p) => `${p.worker} on n${p.node?.index ?? '?'}`).join(', ') || 'no connection';

/** Both workers connected again, as the broker lists them (after a failover). */
async function waitForWorkers(
  cluster: Cluster,
  ctx: FaultContext,
  accept: (placed: Array<{ node: ClusterNode | undefined }>) => boolean,
  timeoutMs = 30_000,
): Promise<Array<{ worker: string; node: ClusterNode | undefined }>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const placed = await workerNodes(cluster, ctx).catch(() => []);
    if ((placed.length === 2 && accept(placed)) || Date.now() > deadline) return placed;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The bridge's placement metrics, when this build has them (bridge_amqp_connections{node}, bridge_amqp_reconnects_total). */
async function placementMetrics(
  ctx: FaultContext,
): Promise<{ nodes: Map<string, number>; reconnects: number } | undefined> {
  const scrape = await scrapeText(ctx.bridge.adminUrl);
  if (!scrape.types.has('bridge_amqp_reconnects_total')) return undefined;
  return {
    nodes: seriesOf(scrape, 'bridge_amqp_connections'),
    reconnects: valueOf(scrape, 'bridge_amqp_reconnects_total'),
  };
}

const listMetricNodes = (nodes: Map<string, number>): string =>
  [...nodes].map(([labels, v]) => `${labels}=${v}`).join(' ');

/** Every node up and in the cluster, the case's queue with all three members and a live leader. */
async function clusterWhole(cluster: Cluster, ctx: FaultContext): Promise<string> {
  await cluster.waitFormed(60_000);
  const q = await waitForQuorum(cluster, ctx.queue, 3, 30_000).catch((err: unknown) => {
    // Not the bridge's doing: say so in the notes and let the case go on with what there is.
    ctx.note(`quorum not whole again: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  });
  return q === undefined ? '?' : `n${cluster.nodeNamed(q.leader)?.index ?? '?'}`;
}

/** Asks the queue's Ra leader to hand leadership to `target` (RabbitMQ 3.10 has no CLI command for one queue). */
async function transferLeadership(
  cluster: Cluster,
  queue: string,
  target: ClusterNode,
): Promise<void> {
  const name = queue.replaceAll('"', '');
  const out = await cluster
    .anyUp()
    .ctl(
      'eval',
      `{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"${name}">>)), ` +
        `{RaName, Leader} = amqqueue:get_pid(Q), ` +
        `ra:transfer_leadership({RaName, Leader}, {RaName, '${target.name}'}).`,
    );
  assert.match(out.trim(), /^(ok|already_leader)$/, `transfer_leadership: ${out.trim()}`);
}

export interface ClusterCaseSet {
  readonly cases: readonly FaultCase[];
  readonly stats: ClusterStats[];
}

export function clusterCases(cluster: Cluster): ClusterCaseSet {
  const stats: ClusterStats[] = [];
  const facts = new Map<string, string[]>();
  const bridges = new Map<string, RunningBridge>();
  /** performance.now() when a case's node went down, and when it was back with the cluster whole. */
  const downAt = new Map<string, number>();
  const backAt = new Map<string, number>();
  const fact = (name: string, text: string): void => {
    const list = facts.get(name) ?? [];
    list.push(text);
    facts.set(name, list);
  };

  const base = (
    name: string,
  ): Pick<FaultCase, 'name' | 'queueType' | 'amqp' | 'config' | 'account' | 'ratePerSecond'> => ({
    name,
    queueType: 'quorum',
    amqp: { urls: [...cluster.urls], reconnectSeconds: RECONNECT_SECONDS, heartbeatSeconds: 5 },
    // Every failed answer in the log, for the failures per worker (the default keeps 20 a second).
    config: { logging: { level: 'info', errorAccessLogPerSecond: 100_000 } },
    // A quarter of the fault suite's rate (half in the longer run): three nodes, the bridge and
    // the load share 2 cores, and a node's boot under 400 req/s takes 25 s instead of 7.
    ratePerSecond: CLUSTER_SCALE > 1 ? 400 : 200,
    account: (answers, { faultFrom, healedAt }) => {
      const row = failoverStats(
        name,
        answers,
        faultFrom,
        healedAt,
        facts.get(name) ?? [],
        bridges.get(name)?.logs ?? [],
        downAt.get(name),
        backAt.get(name),
      );
      stats.push(row);
      return [
        `failover ${row.failoverMs === undefined ? '—' : `${row.failoverMs} ms`}`,
        `503s ${row.status503}${row.window503 === undefined ? '' : ` at +${row.window503[0]}…+${row.window503[1]} ms`}`,
        `by worker (log): ${row.byWorker || 'no failures'}`,
        `connected again ${row.reconnectDelays.map((d) => `${d}`).join('/') || '—'} ms after each lost connection`,
        ...row.facts,
      ];
    },
  });

  /** Notes where the workers and the leader are before the fault; checks placement when the metrics exist. */
  const before = async (
    name: string,
    ctx: FaultContext,
  ): Promise<Array<{ worker: string; node: ClusterNode | undefined }>> => {
    bridges.set(name, ctx.bridge);
    const placed = await waitForWorkers(cluster, ctx, () => true);
    const leader = await cluster.quorumStatus(ctx.queue);
    fact(
      name,
      `before: ${describeNodes(placed)}, leader n${cluster.nodeNamed(leader.leader)?.index ?? '?'}`,
    );
    const metrics = await placementMetrics(ctx);
    if (metrics === undefined) {
      fact(name, 'placement metrics: not in this build');
      return placed;
    }
    fact(name, `metrics before: ${listMetricNodes(metrics.nodes)}`);
    const distinct = new Set(placed.map((p) => p.node?.index));
    assert.equal(distinct.size, 2, `workers spread over two nodes: ${describeNodes(placed)}`);
    assert.equal(
      [...metrics.nodes.values()].filter((v) => v > 0).length,
      2,
      `bridge_amqp_connections names two nodes: ${listMetricNodes(metrics.nodes)}`,
    );
    return placed;
  };
  /**
   * The workers back on two different nodes: a worker that failed over moves back to its own
   * node by itself once it answers (BrokerLink's home check, every 10 s), under the case's load.
   */
  const placementRestored = async (name: string, ctx: FaultContext): Promise<void> => {
    backAt.set(name, performance.now());
    const t0 = performance.now();
    const placed = await waitForWorkers(
      cluster,
      ctx,
      (ps) => new Set(ps.map((p) => p.node?.index)).size === 2,
      30_000,
    );
    const nodes = new Set(placed.map((p) => p.node?.index));
    assert.equal(nodes.size, 2, `workers spread over two nodes again: ${describeNodes(placed)}`);
    fact(
      name,
      `spread again after ${((performance.now() - t0) / 1000).toFixed(1)} s: ${describeNodes(placed)}`,
    );
  };
  const reconnectsCounted = async (name: string, ctx: FaultContext, min: number): Promise<void> => {
    const metrics = await placementMetrics(ctx);
    if (metrics === undefined) return;
    fact(
      name,
      `metrics after: reconnects ${metrics.reconnects}, ${listMetricNodes(metrics.nodes)}`,
    );
    assert.ok(
      metrics.reconnects >= min,
      `bridge_amqp_reconnects_total ${metrics.reconnects}, at least ${min} expected`,
    );
  };

  const killName = 'cluster: kill -9 the node the workers are on, restart it';
  let killed: ClusterNode | undefined;
  const killConnected: FaultCase = {
    ...base(killName),
    holdMs: scaledMs(3000, 15_000),
    inject: async (ctx) => {
      const placed = await before(killName, ctx);
      // The node with the most of the bridge's workers; on a tie, the first worker's.
      const counts = new Map<ClusterNode, number>();
      for (const p of placed) if (p.node) counts.set(p.node, (counts.get(p.node) ?? 0) + 1);
      const victim = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
      assert.ok(victim !== undefined, `no worker connection found: ${describeNodes(placed)}`);
      killed = victim;
      // As in the single-node suite (cases.ts brokerKill): the flush a long-lived queue would
      // have had, so the restarted member still knows the queue declared seconds ago.
      await victim.ctl('eval', 'mnesia:sync_log(), [dets:sync(T) || T <- dets:all()].');
      await victim.kill();
      fact(killName, `killed n${victim.index}`);
      const moved = await waitForWorkers(cluster, ctx, (ps) => ps.every((p) => p.node !== victim));
      fact(killName, `during: ${describeNodes(moved)}`);
    },
    heal: async (ctx) => {
      assert.ok(killed !== undefined);
      const t0 = performance.now();
      await killed.start();
      const leader = await clusterWhole(cluster, ctx);
      fact(
        killName,
        `n${killed.index} back in ${((performance.now() - t0) / 1000).toFixed(1)} s, leader ${leader}`,
      );
      await placementRestored(killName, ctx);
      await reconnectsCounted(killName, ctx, 2);
    },
  };

  const leaderName = 'cluster: stop the quorum leader (graceful), start it';
  let stoppedLeader: ClusterNode | undefined;
  const stopLeader: FaultCase = {
    ...base(leaderName),
    holdMs: scaledMs(3000, 15_000),
    inject: async (ctx) => {
      const placed = await before(leaderName, ctx);
      let q = await waitForQuorum(cluster, ctx.queue, 3);
      // The queue's leader is where it was declared: on a worker's node. To stop a leader and
      // nothing else, it moves first to a node no worker is connected to, if there is one.
      const spare = cluster.nodes.find((n) => placed.every((p) => p.node !== n));
      if (spare !== undefined && spare.name !== q.leader) {
        await transferLeadership(cluster, ctx.queue, spare);
        q = await waitUntil(
          `the leader of ${ctx.queue} to move to n${spare.index}`,
          () => cluster.quorumStatus(ctx.queue),
          (s) => s.leader === spare.name,
          { timeoutMs: 20_000, intervalMs: 250 },
        );
        fact(leaderName, `leader moved to n${spare.index}, where no worker is`);
      }
      const leader = cluster.nodeNamed(q.leader);
      assert.ok(leader !== undefined, `leader ${q.leader} is not a node of the cluster`);
      stoppedLeader = leader;
      const t0 = performance.now();
      await leader.stop();
      const next = await waitForQuorum(cluster, ctx.queue, 2);
      fact(
        leaderName,
        `stopped leader n${leader.index} in ${((performance.now() - t0) / 1000).toFixed(1)} s; new leader n${cluster.nodeNamed(next.leader)?.index ?? '?'}`,
      );
      const moved = await waitForWorkers(cluster, ctx, (ps) => ps.every((p) => p.node !== leader));
      fact(leaderName, `during: ${describeNodes(moved)}`);
    },
    heal: async (ctx) => {
      assert.ok(stoppedLeader !== undefined);
      await stoppedLeader.start();
      const leader = await clusterWhole(cluster, ctx);
      fact(leaderName, `n${stoppedLeader.index} back, leader ${leader}`);
    },
  };

  const leaderKillName = "cluster: kill -9 the quorum leader's node under a worker, keep it down";
  let killedLeader: ClusterNode | undefined;
  const killLeader: FaultCase = {
    ...base(leaderKillName),
    // Long enough to tell "recovers while the node is down" from "recovers when it returns".
    holdMs: scaledMs(10_000, 20_000),
    inject: async (ctx) => {
      const placed = await before(leaderKillName, ctx);
      // The leader moves first to the first worker's node (if it is not there): the worker that
      // fails over then meets the queue's record still naming the dead leader.
      const target = placed[0]?.node;
      assert.ok(target !== undefined, `no worker connection found: ${describeNodes(placed)}`);
      const q = await waitForQuorum(cluster, ctx.queue, 3);
      if (q.leader !== target.name) {
        await transferLeadership(cluster, ctx.queue, target);
        await waitUntil(
          `the leader of ${ctx.queue} to move to n${target.index}`,
          () => cluster.quorumStatus(ctx.queue),
          (s) => s.leader === target.name,
          { timeoutMs: 20_000, intervalMs: 250 },
        );
        fact(leaderKillName, `leader moved to n${target.index}`);
      }
      killedLeader = target;
      await target.ctl('eval', 'mnesia:sync_log(), [dets:sync(T) || T <- dets:all()].');
      downAt.set(leaderKillName, performance.now());
      await target.kill();
      const next = await waitForQuorum(cluster, ctx.queue, 2);
      fact(
        leaderKillName,
        `killed leader n${target.index}; new leader n${cluster.nodeNamed(next.leader)?.index ?? '?'}`,
      );
      const moved = await waitForWorkers(cluster, ctx, (ps) => ps.every((p) => p.node !== target));
      fact(leaderKillName, `during: ${describeNodes(moved)}`);
    },
    heal: async (ctx) => {
      assert.ok(killedLeader !== undefined);
      const replaced = await scrapeText(ctx.bridge.adminUrl).then((s) =>
        valueOf(s, 'bridge_amqp_channel_replacements_total'),
      );
      fact(leaderKillName, `channel replacements while it was down: ${replaced}`);
      await killedLeader.start();
      const leader = await clusterWhole(cluster, ctx);
      fact(leaderKillName, `n${killedLeader.index} back, leader ${leader}`);
      await placementRestored(leaderKillName, ctx);
      await reconnectsCounted(leaderKillName, ctx, 2);
    },
  };

  const rollingName = 'cluster: rolling restart of all three nodes';
  const rounds = Math.max(1, Math.floor(CLUSTER_SCALE / 5) + 1);
  const rolling: FaultCase = {
    ...base(rollingName),
    holdMs: 0,
    inject: async (ctx) => {
      await before(rollingName, ctx);
      const steps: string[] = [];
      for (let round = 0; round < rounds; round += 1)
        for (const node of cluster.nodes) {
          // An operator's rolling restart: one node at a time, the next only once the cluster
          // and the queue's quorum are whole again.
          const t0 = performance.now();
          await node.restart();
          const leader = await clusterWhole(cluster, ctx);
          steps.push(`n${node.index} ${((performance.now() - t0) / 1000).toFixed(1)} s→${leader}`);
        }
      fact(rollingName, `restarts (time, then leader): ${steps.join(', ')}`);
      await placementRestored(rollingName, ctx);
    },
    heal: async (ctx) => {
      await reconnectsCounted(rollingName, ctx, 2);
    },
  };

  return { cases: [killConnected, stopLeader, killLeader, rolling], stats };
}

const ms = (v: number | undefined): string => (v === undefined ? '—' : `${v} ms`);
const win = (w: readonly [number, number] | undefined): string =>
  w === undefined ? '—' : `+${w[0]} … +${w[1]} ms`;

/** The cluster table: one row per case. */
export function clusterTable(
  rows: ReadonlyArray<{
    stats: ClusterStats | undefined;
    requests: number;
    ok: number;
    lost: number;
    s503: number;
  }>,
): string {
  const header = [
    '| case | requests | 2xx | **lost 2xx** | 503 | 503 window (from the fault) | failures (any) | failure window | failover | longest gap without 2xx | worker outages (log) | fault lasted | facts |',
    '| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | --- | ---: | --- |',
  ];
  const body = rows.map(({ stats, requests, ok, lost, s503 }) =>
    [
      stats?.case ?? '?',
      String(requests),
      String(ok),
      lost === 0 ? '0' : `**${lost}**`,
      String(s503),
      win(stats?.window503),
      String(stats?.failures ?? '—'),
      win(stats?.failureWindow),
      ms(stats?.failoverMs),
      ms(stats?.longestGapMs),
      (stats?.outages ?? []).map((o) => `w${o.worker} ${ms(o.ms)}`).join(', ') || 'none',
      ms(stats?.faultMs),
      (stats?.facts ?? []).join('; ').replaceAll('|', '\\|') || '—',
    ].join(' | '),
  );
  return [...header, ...body.map((b) => `| ${b} |`)].join('\n');
}
