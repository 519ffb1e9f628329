/**
 * The cluster suite (issue #14): a bridge (2 workers, amqp.urls = the three nodes of a private
 * RabbitMQ cluster, a quorum queue) under partner load while a node dies, the queue's leader stops,
 * the leader's node dies and stays down, and all nodes restart in turn; the fault ledger proves
 * that no 2xx was lost and times each failover. Bounded for CI (about 4 minutes on the 2-core
 * VM); CLUSTER_SCALE=10 lengthens the
 * faults and repeats the rolling restart. Tables: stderr, and dist/cluster-ledger.{json,md}
 * (CLUSTER_LEDGER names the JSON file instead).
 */
import './scale.js'; // first: hands CLUSTER_SCALE to the harness before harness.ts is loaded
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { runCase, SCALE, type FaultSuite } from '../faults/harness.js';
import { markdownTable } from '../faults/ledger.js';
import { clusterCases, clusterTable, RECONNECT_SECONDS, type ClusterCaseSet } from './cases.js';
import { CLUSTER_SCALE } from './scale.js';

const LEDGER = ((): string => {
  const fromEnv = process.env['CLUSTER_LEDGER'];
  if (fromEnv !== undefined && fromEnv !== '') return path.resolve(fromEnv);
  // this file is compiled to dist/test/cluster/
  return path.resolve(
    path.dirname(fileURLToPath(import.meta.url)),
    '..',
    '..',
    'cluster-ledger.json',
  );
})();

/** Both tables: the cluster's (failover) and the fault ledger's (every status, notes). */
function report(suite: FaultSuite, set: ClusterCaseSet): string {
  const rows = suite.rows.map((row) => {
    const ok = Object.entries(row.statuses)
      .filter(([s]) => s.startsWith('2'))
      .reduce((sum, [, n]) => sum + n, 0);
    return {
      stats: set.stats.find((s) => s.case === row.case),
      requests: row.requests,
      ok,
      lost: row.missing2xx,
      s503: row.statuses['503'] ?? 0,
    };
  });
  return [
    `Cluster ledger (CLUSTER_SCALE=${CLUSTER_SCALE}, run started ${suite.startedAt}). Requests, 2xx, lost and 503 count the whole case; the windows, failures and failover are from the fault's start on.`,
    '',
    clusterTable(rows),
    '',
    'Fault ledger rows of the same cases:',
    '',
    markdownTable(suite.rows),
    '',
  ].join('\n');
}

/** How long after a node's death the last failure may come while the node stays down. */
const RECOVERED_WITHIN_MS = 5000;

describe('cluster suite: failover under load loses no 2xx', { timeout: 300_000 * SCALE }, () => {
  let cluster: Cluster | undefined;
  let suite: FaultSuite | undefined;
  let set: ClusterCaseSet | undefined;
  before(async () => {
    cluster = await startCluster('cluster');
    const c = cluster;
    set = clusterCases(c);
    suite = {
      node: c.nodes[0].broker,
      rows: [],
      startedAt: new Date().toISOString(),
      ledgerFile: LEDGER,
      drainUrl: () => c.anyUp().url,
    };
  });
  after(async () => {
    await cluster?.stop();
    if (suite === undefined || set === undefined) return;
    const text = report(suite, set);
    writeFileSync(LEDGER.replace(/\.json$/, '') + '.md', text);
    process.stderr.write(`\n${text}\n`);
  });

  const names = [
    "kill -9 of the workers' node, restart",
    'graceful stop of the quorum leader, start',
    "kill -9 of the quorum leader's node under a worker, kept down",
    'rolling restart of the three nodes',
  ];
  for (const [i, name] of names.entries())
    it(name, async (t) => {
      if (cluster === undefined || suite === undefined || set === undefined)
        throw new Error('the cluster did not start');
      // A case that failed half-way may have left a node down: every case starts whole.
      for (const node of cluster.nodes) if (!node.up) await node.start();
      await cluster.waitFormed();
      const spec = set.cases[i];
      if (spec === undefined) throw new Error(`no case ${name}`);
      t.diagnostic(spec.name);
      await runCase(suite, spec, t);
      // 503s (and any other failure) only while a node was going away, not before and not
      // long after: within the fault and the 5 s after it ended.
      const stats = set.stats.find((s) => s.case === spec.name);
      assert.ok(stats !== undefined, 'the case accounted for its answers');
      assert.equal(stats.failuresBefore, 0, 'no failure before the fault');
      if (stats.failureWindow !== undefined)
        assert.ok(
          stats.failureWindow[1] <= stats.faultMs + 5000,
          `failures until +${stats.failureWindow[1]} ms, the fault ended at +${stats.faultMs} ms`,
        );
      // The node stays down for the whole hold: the worker that was on it must publish again
      // through another node long before the node returns (a channel stuck on the dead leader
      // would fail until then: docs/failure-modes.md #18).
      if (stats.downAt !== undefined && stats.failureWindow !== undefined)
        assert.ok(
          stats.failureWindow[1] - stats.downAt <= RECOVERED_WITHIN_MS,
          `failures until +${stats.failureWindow[1]} ms, the node died at +${stats.downAt} ms and stayed down until +${stats.faultMs} ms`,
        );
      if (stats.failuresAfterBack !== undefined)
        assert.equal(
          stats.failuresAfterBack,
          0,
          'no failure once the node was back (the workers moved back to their own nodes meanwhile)',
        );
      // Failover to another node does not wait reconnectSeconds: the next connection is made at
      // once (its channel may then wait for the queue's leader election, which is the cluster's).
      for (const ms of stats.reconnectDelays)
        assert.ok(
          ms < RECONNECT_SECONDS * 1000,
          `a worker connected again ${ms} ms after losing its connection: ${stats.events}`,
        );
      assert.ok(
        stats.outages.every((o) => o.ms !== undefined),
        `every worker connected again: ${JSON.stringify(stats.outages)}`,
      );
    });
});
