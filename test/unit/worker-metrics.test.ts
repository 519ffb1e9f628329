/**
 * The worker's own counters and histograms (src/worker/metrics.ts) give exactly the JSON that
 * prom-client's Counter, Histogram and Gauge give for the same observations: the primary's
 * aggregation and exposition cannot tell them apart.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { BridgeError, XmlError } from '../../src/shared/errors.js';
import type { AuthFailureReason } from '../../src/shared/types.js';
import { WORKER_METRICS } from '../../src/shared/metrics.js';
import { WorkerMetrics } from '../../src/worker/metrics.js';
import { RequestRecord } from '../../src/worker/request.js';

/** prom-client fed the same observations, the way the worker fed it before it kept its own cells. */
function reference(): {
  registry: Registry;
  requests: Counter;
  duration: Histogram;
  bodyBytes: Histogram;
  publishes: Counter;
  confirm: Histogram;
  replies: Counter;
  xml: Counter;
  auth: Counter;
  limited: Counter;
  partners: Counter;
  reconnects: Counter;
  channelReplacements: Counter;
} {
  const registry = new Registry();
  const registers = [registry];
  const m = WORKER_METRICS;
  const result = {
    registry,
    requests: new Counter({
      ...m.httpRequests,
      labelNames: [...m.httpRequests.labelNames],
      registers,
    }),
    duration: new Histogram({
      ...m.httpDuration,
      labelNames: [...m.httpDuration.labelNames],
      buckets: [...m.httpDuration.buckets],
      registers,
    }),
    bodyBytes: new Histogram({
      ...m.httpBodyBytes,
      labelNames: [...m.httpBodyBytes.labelNames],
      buckets: [...m.httpBodyBytes.buckets],
      registers,
    }),
    publishes: new Counter({ ...m.publishes, labelNames: [...m.publishes.labelNames], registers }),
    confirm: new Histogram({
      ...m.confirmDuration,
      labelNames: [],
      buckets: [...m.confirmDuration.buckets],
      registers,
    }),
    replies: new Counter({ ...m.rpcReplies, labelNames: [...m.rpcReplies.labelNames], registers }),
    xml: new Counter({ ...m.xmlRejected, labelNames: [...m.xmlRejected.labelNames], registers }),
    auth: new Counter({
      ...m.authFailures,
      labelNames: [...m.authFailures.labelNames],
      registers,
    }),
    limited: new Counter({
      ...m.rateLimited,
      labelNames: [...m.rateLimited.labelNames],
      registers,
    }),
    partners: new Counter({
      ...m.partnerRequests,
      labelNames: [...m.partnerRequests.labelNames],
      registers,
    }),
    reconnects: new Counter({ ...m.reconnects, labelNames: [], registers }),
    channelReplacements: new Counter({ ...m.channelReplacements, labelNames: [], registers }),
  };
  new Gauge({
    ...m.connections,
    labelNames: [...m.connections.labelNames],
    registers,
    collect() {
      this.set({ node: 'rabbit-b:5672' }, 1);
    },
  });
  new Gauge({
    ...m.inFlight,
    labelNames: [],
    registers,
    collect() {
      this.set(3);
    },
  });
  new Gauge({
    ...m.connected,
    labelNames: [],
    registers,
    collect() {
      this.set(1);
    },
  });
  new Gauge({
    ...m.blocked,
    labelNames: [],
    registers,
    collect() {
      this.set(0);
    },
  });
  new Gauge({
    ...m.stalled,
    labelNames: [],
    registers,
    collect() {
      this.set(0);
    },
  });
  return result;
}

describe('worker metrics', { timeout: 10_000 }, () => {
  it('give the JSON prom-client gives for the same requests, publishes and replies', async () => {
    const ours = new WorkerMetrics({
      inFlight: () => 3,
      connected: () => true,
      blocked: () => false,
      stalled: () => false,
      node: () => 'rabbit-b:5672',
    });
    const ref = reference();
    ours.declareRoutes(['a', 'b']);
    ref.publishes.inc({ route: 'a', outcome: 'confirmed' }, 0);
    ref.publishes.inc({ route: 'b', outcome: 'confirmed' }, 0);
    ours.declarePartners(['acme', 'hooks']);
    ref.limited.inc({ partner: 'acme' }, 0);
    ref.limited.inc({ partner: 'hooks' }, 0);

    const cases: Array<{
      route: string;
      status: number;
      seconds: number;
      bytes: number;
      publish?: 'confirmed' | 'nacked' | 'overloaded';
      confirm?: number;
      reply?: 'ok' | 'timeout';
      error?: BridgeError;
      partner?: string;
      auth?: AuthFailureReason;
    }> = [
      {
        route: 'a',
        status: 202,
        seconds: 0.0004,
        bytes: 1024,
        publish: 'confirmed',
        confirm: 0.0003,
      },
      {
        route: 'a',
        status: 202,
        seconds: 0.02,
        bytes: 70_000,
        publish: 'confirmed',
        confirm: 0.019,
      },
      {
        route: 'b',
        status: 200,
        seconds: 1.5,
        bytes: 300,
        publish: 'confirmed',
        confirm: 0.001,
        reply: 'ok',
      },
      {
        route: 'b',
        status: 504,
        seconds: 12,
        bytes: 300,
        publish: 'confirmed',
        confirm: 0.002,
        reply: 'timeout',
      },
      { route: 'a', status: 502, seconds: 0.003, bytes: 10, publish: 'nacked', confirm: 0.002 },
      { route: 'a', status: 400, seconds: 0.001, bytes: 5, error: new XmlError('too-deep', 'x') },
      { route: 'unmatched', status: 404, seconds: 0, bytes: 0 },
      { route: 'a', status: 503, seconds: 0, bytes: 0, publish: 'overloaded' },
      { route: 'a', status: 401, seconds: 0, bytes: 0, auth: 'missing' },
      { route: 'a', status: 401, seconds: 0, bytes: 9, auth: 'replayed', partner: 'hooks' },
      { route: 'b', status: 403, seconds: 0, bytes: 0, auth: 'source', partner: 'acme' },
      { route: 'b', status: 202, seconds: 0.001, bytes: 9, publish: 'confirmed', partner: 'acme' },
      {
        route: 'b',
        status: 429,
        seconds: 0,
        bytes: 0,
        partner: 'acme',
        error: new BridgeError('BRIDGE_RATE_LIMITED', 'x'),
      },
    ];
    for (const c of cases) {
      const record = new RequestRecord(c.route, 'id', 0, ours);
      record.status = c.status;
      record.seconds = c.seconds;
      record.bodyBytes = c.bytes;
      record.error = c.error;
      record.reply = c.reply;
      record.partner = c.partner;
      record.authFailure = c.auth;
      if (c.publish !== undefined) record.settlePublish(c.publish, c.confirm);
      record.end();

      if (c.publish !== undefined) ref.publishes.inc({ route: c.route, outcome: c.publish });
      if (c.confirm !== undefined) ref.confirm.observe(c.confirm);
      ref.requests.inc({ route: c.route, status: String(c.status) });
      ref.duration.observe({ route: c.route }, c.seconds);
      if (c.bytes > 0) ref.bodyBytes.observe({ route: c.route }, c.bytes);
      if (c.error instanceof XmlError) ref.xml.inc({ route: c.route, reason: c.error.reason });
      if (c.reply !== undefined) ref.replies.inc({ route: c.route, outcome: c.reply });
      if (c.auth !== undefined) ref.auth.inc({ route: c.route, reason: c.auth });
      if (c.partner !== undefined) {
        ref.partners.inc({ partner: c.partner, status: String(c.status) });
        if (c.status === 429) ref.limited.inc({ partner: c.partner });
      }
    }
    ours.reconnected();
    ours.reconnected();
    ref.reconnects.inc(2);
    ours.channelReplaced();
    ref.channelReplacements.inc();
    ours.lateReply('b');
    ours.lateReply(undefined);
    ref.replies.inc({ route: 'b', outcome: 'late' });
    ref.replies.inc({ route: 'unmatched', outcome: 'late' });

    const names = new Set<string>(Object.values(WORKER_METRICS).map((d) => d.name));
    const mine = (await ours.snapshot()).filter((m) => names.has((m as { name: string }).name));
    const theirs = await ref.registry.getMetricsAsJSON();
    // Through JSON, as the snapshot travels over IPC.
    const byName = (list: readonly object[]): Map<string, unknown> =>
      new Map(
        list.map((m) => [(m as { name: string }).name, JSON.parse(JSON.stringify(m)) as unknown]),
      );
    const a = byName(mine);
    const b = byName(theirs);
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    for (const [name, value] of b) {
      const sortValues = (m: unknown): unknown => {
        const v = m as { values: Array<{ labels: Record<string, unknown>; metricName?: string }> };
        const key = (x: { labels: Record<string, unknown>; metricName?: string }): string =>
          JSON.stringify([x.metricName, Object.entries(x.labels).sort()]);
        return { ...v, values: [...v.values].sort((x, y) => key(x).localeCompare(key(y))) };
      };
      assert.deepEqual(sortValues(a.get(name)), sortValues(value), name);
    }
    ours.registry.clear();
  });
});
