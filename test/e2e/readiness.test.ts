/** E2E, /readyz and /healthz: 503 naming each worker that is not ready and why (broker unreachable, connection lost, memory alarm, draining), 200 only when all are. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  baseConfig,
  startBridge,
  waitUntilReady,
  workerPids,
  type LogLine,
  type RunningBridge,
} from '../helpers/bridge.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { startBrokerProxy, type BrokerProxy } from '../helpers/broker-proxy.js';
import { holdUpload, send } from '../helpers/publish-http.js';
import { getReadyz, logAfter, waitForReadyz, type Readyz } from '../helpers/admin.js';
import { waitForMetric } from '../helpers/metrics.js';
import { alive } from '../helpers/pids.js';
import { startPrivateBroker, type PrivateBroker } from '../helpers/private-broker.js';

const WORKERS = 2;
const XML = { 'Content-Type': 'application/xml' };
/** RabbitMQ's default `vm_memory_high_watermark`: what the private node is set back to once the alarm test is done. */
const NORMAL_WATERMARK = '0.4';
const BLOCKED_REASON = 'broker blocked (memory or disk alarm)';

const isBrokerState =
  (state: string) =>
  (l: LogLine): boolean =>
    l.msg === 'broker state' && l['state'] === state;

function assertJsonNoStore(r: Readyz): void {
  assert.match(r.contentType ?? '', /^application\/json/);
  assert.equal(r.cacheControl, 'no-store');
}

async function assertHealthy(bridge: RunningBridge): Promise<void> {
  const res = await fetch(`${bridge.adminUrl}/healthz`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.deepEqual(await res.json(), { status: 'ok', pid: bridge.pid });
}

describe("readiness follows each worker's broker link", { timeout: 90_000 }, () => {
  let proxy: BrokerProxy;
  let bridge: RunningBridge;
  let broker: TestBroker;
  let queue: string;

  before(async () => {
    broker = await openBroker();
    queue = await broker.queue(uniqueName('readyz'));
    // The bridge reaches RabbitMQ only through this proxy: "broker stopped" for this bridge alone.
    proxy = await startBrokerProxy({ up: false });
    bridge = await startBridge(
      baseConfig([{ path: '/a', mode: 'publish', exchange: '', routingKey: queue }], {
        workers: WORKERS,
        amqp: { urls: [proxy.url], heartbeatSeconds: 5, reconnectSeconds: 0.5 },
      }),
      { waitReady: false },
    );
  });
  after(async () => {
    await bridge?.stop();
    await proxy?.close();
    await broker?.close();
  });

  it('answers 503 naming every worker while the broker is unreachable; /healthz stays 200', async () => {
    const r = await waitForReadyz(
      bridge,
      (x) =>
        x.workers.length === WORKERS &&
        x.workers.every((w) => w.reasons.includes('broker disconnected')),
    );
    assert.equal(r.status, 503);
    assertJsonNoStore(r);
    assert.equal(r.ready, false);
    assert.deepEqual(r.workers.map((w) => w.slot).sort(), [0, 1]);
    for (const w of r.workers) {
      assert.equal(w.ready, false);
      assert.deepEqual(
        w.reasons,
        ['broker disconnected'],
        `slot ${w.slot}: listening, not draining, only the broker is missing`,
      );
      assert.ok(typeof w.pid === 'number' && w.pid > 0);
    }
    assert.deepEqual(r.workers.map((w) => w.pid).sort(), (await workerPids(bridge)).sort());
    await assertHealthy(bridge);
  });

  it('turns 200 once every worker is connected', async () => {
    proxy.up();
    await waitUntilReady(bridge);
    const r = await getReadyz(bridge);
    assert.equal(r.status, 200);
    assertJsonNoStore(r);
    assert.equal(r.ready, true);
    assert.equal(r.workers.length, WORKERS);
    for (const w of r.workers)
      assert.deepEqual({ ready: w.ready, reasons: w.reasons }, { ready: true, reasons: [] });
    const reply = await send(`${bridge.url}/a`, { headers: XML, body: '<xml/>' });
    assert.equal(reply.status, 202);
  });

  it('goes 503 naming both workers when their broker connections drop, and back to 200 after', async () => {
    const pids = await workerPids(bridge);
    const from = bridge.logs.length;
    proxy.down();
    for (const pid of pids)
      await logAfter(bridge, from, (l) => isBrokerState('disconnected')(l) && l['pid'] === pid);
    const r = await waitForReadyz(bridge, (x) =>
      x.workers.every((w) => w.reasons.includes('broker disconnected')),
    );
    assert.equal(r.status, 503);
    assert.deepEqual(
      r.workers.map((w) => w.pid).sort(),
      [...pids].sort(),
      'the same workers, still running',
    );
    for (const w of r.workers) assert.deepEqual(w.reasons, ['broker disconnected']);
    await assertHealthy(bridge);

    const back = bridge.logs.length;
    proxy.up();
    for (const pid of pids)
      await logAfter(bridge, back, (l) => isBrokerState('connected')(l) && l['pid'] === pid);
    await waitUntilReady(bridge);
    assert.equal((await getReadyz(bridge)).status, 200);
  });

  it('stays 200 through a reload: a slot moves to its new worker only once that one is connected and listening', async () => {
    const oldPids = await workerPids(bridge);
    const from = bridge.logs.length;
    bridge.child.kill('SIGHUP');
    let reloaded = false;
    void logAfter(bridge, from, (l) => l.msg === 'reloaded', 30_000).then(() => {
      reloaded = true;
    });
    const seen: number[] = [];
    while (!reloaded) {
      const r = await getReadyz(bridge);
      seen.push(r.status);
      assert.equal(r.status, 200, `during the reload: ${JSON.stringify(r)}`);
      await new Promise((resolve) => setTimeout(resolve, 20)); // sampling /readyz while the roll runs
    }
    assert.ok(seen.length > 5, `sampled /readyz ${seen.length} times during the reload`);
    const newPids = await workerPids(bridge);
    assert.ok(
      newPids.every((p) => !oldPids.includes(p)),
      'every worker was replaced',
    );
  });
});

describe('readiness during a memory alarm (on a private node)', { timeout: 120_000 }, () => {
  let node: PrivateBroker;
  let bridge: RunningBridge;
  let broker: TestBroker;
  let queue: string;

  before(async () => {
    node = await startPrivateBroker('readyz-alarm');
    broker = await openBroker(node.url);
    queue = await broker.queue(uniqueName('readyz-alarm'));
    bridge = await startBridge(
      baseConfig([{ path: '/a', mode: 'publish', exchange: '', routingKey: queue }], {
        workers: WORKERS,
        amqp: {
          urls: [node.url],
          heartbeatSeconds: 5,
          reconnectSeconds: 0.5,
          confirmTimeoutMs: 1500,
        },
      }),
    );
  });
  after(async () => {
    await bridge?.stop();
    await broker?.close();
    await node?.stop();
  });

  it('names the blocked worker while RabbitMQ blocks publishers, and is 200 again once the alarm clears', async (t) => {
    const from = bridge.logs.length;
    t.after(() => node.ctl('set_vm_memory_high_watermark', NORMAL_WATERMARK).then(() => undefined)); // even if an assertion throws
    try {
      await node.ctl('set_vm_memory_high_watermark', '0');
      // connection.blocked reaches a worker only when it publishes after the alarm: the first
      // request's publish is held by the broker (504 at confirmTimeoutMs, or 503 if the blocked
      // notice came first).
      const first = await send(`${bridge.url}/a`, { headers: XML, body: '<xml><alarm/></xml>' });
      assert.ok(
        first.status === 503 || first.status === 504,
        `first request during the alarm: ${first.status}`,
      );
      const blockedLine = await logAfter(bridge, from, isBrokerState('blocked'));
      assert.equal(blockedLine.level, 'info');
      assert.equal(typeof blockedLine['worker'], 'number');

      const r = await waitForReadyz(bridge, (x) => x.status === 503);
      assert.equal(r.ready, false);
      const blockedPids = new Set(
        bridge.logs
          .slice(from)
          .filter(isBrokerState('blocked'))
          .map((l) => l['pid']),
      );
      const notReady = r.workers.filter((w) => !w.ready);
      assert.ok(notReady.length >= 1);
      for (const w of notReady) {
        assert.ok(
          blockedPids.has(w.pid),
          `slot ${w.slot} (pid ${String(w.pid)}) is not ready only because it is blocked`,
        );
        assert.deepEqual(w.reasons, [BLOCKED_REASON]);
      }
      const named = r.workers.find((w) => w.pid === blockedLine['pid']);
      assert.ok(
        named !== undefined && !named.ready && named.slot === blockedLine['worker'],
        `/readyz names the blocked worker: ${JSON.stringify(r)}`,
      );
      for (const w of r.workers.filter((x) => x.ready)) assert.deepEqual(w.reasons, []);
      assert.equal(
        await waitForMetric(
          bridge.adminUrl,
          'bridge_amqp_blocked',
          {},
          (v) => v !== undefined && v >= 1,
        ),
        notReady.length,
      );
    } finally {
      await node.ctl('set_vm_memory_high_watermark', NORMAL_WATERMARK);
    }
    const blocked = bridge.logs.slice(from).filter(isBrokerState('blocked'));
    for (const line of blocked)
      await logAfter(
        bridge,
        bridge.logs.indexOf(line),
        (l) => isBrokerState('connected')(l) && l['pid'] === line['pid'],
      );
    await waitUntilReady(bridge);
    const r = await getReadyz(bridge);
    assert.equal(r.status, 200);
    assert.equal(
      await waitForMetric(bridge.adminUrl, 'bridge_amqp_blocked', {}, (v) => v === 0),
      0,
    );
    const reply = await send(`${bridge.url}/a`, { headers: XML, body: '<xml><after/></xml>' });
    assert.equal(reply.status, 202);
  });
});

describe('readiness during a graceful stop', { timeout: 60_000 }, () => {
  let bridge: RunningBridge;
  let broker: TestBroker;
  let queue: string;

  before(async () => {
    broker = await openBroker();
    queue = await broker.queue(uniqueName('readyz-drain'));
    bridge = await startBridge(
      baseConfig([{ path: '/a', mode: 'publish', exchange: '', routingKey: queue }], {
        workers: WORKERS,
        shutdownTimeoutMs: 10_000,
      }),
    );
  });
  after(async () => {
    await bridge?.stop();
    await broker?.close();
  });

  it('is 503 with "draining" while workers finish in-flight requests, and the stop stays clean', async () => {
    const body = '<xml><held>' + 'x'.repeat(64) + '</held></xml>';
    const half = body.slice(0, 20);
    const upload = holdUpload(
      `${bridge.url}/a`,
      { ...XML, 'Content-Length': String(body.length) },
      half,
    );
    await upload.sent;
    // The upload is admitted once its headers are parsed: it shows as in flight.
    await waitForMetric(bridge.adminUrl, 'bridge_amqp_in_flight', {}, (v) => v === 1);

    const from = bridge.logs.length;
    bridge.child.kill('SIGTERM');
    await logAfter(bridge, from, (l) => l.msg === 'draining' && l['inFlight'] === 1);
    // Each worker reports its drain on its own: wait until the primary has heard from all of them.
    const r = await waitForReadyz(
      bridge,
      (x) =>
        x.status === 503 &&
        x.workers.some((w) => w.reasons.includes('draining')) &&
        x.workers.every((w) => !w.ready),
    );
    assert.equal(r.ready, false);
    for (const w of r.workers) {
      assert.equal(w.ready, false);
      // A worker with nothing in flight finishes its drain at once, and closing its broker
      // connection is the drain's last step: seen in a CI run, reported beside 'draining' only.
      const drainSteps = w.reasons.includes('draining')
        ? ['not listening', 'draining', 'broker disconnected']
        : ['not listening', 'draining', 'not running'];
      assert.ok(
        w.reasons.length > 0 && w.reasons.every((reason) => drainSteps.includes(reason)),
        `slot ${w.slot}: ${w.reasons.join(', ')}`,
      );
    }
    // The worker holding the upload drains with its broker connection still up.
    assert.ok(
      r.workers.some((w) => w.reasons.join() === 'not listening,draining'),
      JSON.stringify(r.workers),
    );
    await assertHealthy(bridge);

    upload.req.end(body.slice(half.length));
    const reply = await upload.response;
    assert.equal(reply.status, 202, 'the in-flight request still completes during the drain');
    const exit = await bridge.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal(await broker.count(queue), 1);
  });
});

describe('readiness with a hung worker', { timeout: 60_000 }, () => {
  let bridge: RunningBridge;

  before(async () => {
    bridge = await startBridge(
      baseConfig(
        [{ path: '/a', mode: 'publish', exchange: '', routingKey: uniqueName('readyz-hung') }],
        { workers: WORKERS },
      ),
    );
  });
  after(async () => {
    await bridge?.stop();
  });

  it('names a worker that stopped reporting (SIGSTOP) as not responding, and is 200 again once it resumes', async (t) => {
    const [hung, other] = await workerPids(bridge);
    assert.ok(hung !== undefined && other !== undefined);
    process.kill(hung, 'SIGSTOP');
    t.after(() => {
      try {
        process.kill(hung, 'SIGCONT'); // also when an assertion below throws
      } catch {
        // already gone
      }
    });
    const down = await waitForReadyz(bridge, (r) => r.status === 503, 15_000);
    const entry = down.workers.find((w) => w.pid === hung);
    assert.ok(entry, JSON.stringify(down));
    assert.equal(entry.ready, false);
    assert.ok(
      entry.reasons.some((r) => r.startsWith('not responding')),
      JSON.stringify(entry),
    );
    assert.equal(
      down.workers.find((w) => w.pid === other)?.ready,
      true,
      'the other worker stays ready',
    );
    process.kill(hung, 'SIGCONT');
    await waitForReadyz(bridge, (r) => r.status === 200, 15_000);
  });
});

describe('a worker hung longer than workerHangMs', { timeout: 60_000 }, () => {
  let bridge: RunningBridge;
  let broker: TestBroker;
  let queue: string;

  before(async () => {
    broker = await openBroker();
    queue = await broker.queue(uniqueName('readyz-hang-kill'));
    bridge = await startBridge(
      baseConfig([{ path: '/a', mode: 'publish', exchange: '', routingKey: queue }], {
        workers: WORKERS,
        workerHangMs: 3000,
      }),
    );
  });
  after(async () => {
    await bridge?.stop();
    await broker?.close();
  });

  it('is killed and replaced: the slot serves again with a new worker, and the restart is counted', async (t) => {
    const [hung] = await workerPids(bridge);
    assert.ok(hung !== undefined);
    const from = bridge.logs.length;
    process.kill(hung, 'SIGSTOP');
    t.after(() => {
      try {
        process.kill(hung, 'SIGCONT'); // only if it survived, when an assertion failed
      } catch {
        // killed, as it should be
      }
    });
    const killed = await logAfter(
      bridge,
      from,
      (l) => (l.msg ?? '').startsWith('worker hung') && l['workerPid'] === hung,
      15_000,
    );
    assert.ok(Number(killed['silentMs']) > 3000, JSON.stringify(killed));
    const back = await waitForReadyz(
      bridge,
      (r) =>
        r.status === 200 && r.workers.length === WORKERS && r.workers.every((w) => w.pid !== hung),
      20_000,
    );
    assert.equal(back.ready, true);
    assert.equal(alive(hung), false, 'the hung process is gone');
    assert.ok(
      ((await waitForMetric(
        bridge.adminUrl,
        'bridge_worker_restarts_total',
        {},
        (v) => (v ?? 0) >= 1,
      )) ?? 0) >= 1,
      'the kill counts as a restart',
    );
    for (let i = 0; i < 4; i++) {
      const reply = await send(`${bridge.url}/a`, { headers: XML, body: `<a n="${i}"/>` });
      assert.equal(reply.status, 202, reply.body.toString());
    }
  });
});
