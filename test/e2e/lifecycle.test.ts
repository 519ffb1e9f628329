/** E2E: the process model under load — worker SIGKILL, SIGTERM drain, SIGHUP reloads, crash loop, primary SIGKILL. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import {
  baseConfig,
  startBridge,
  waitUntilReady,
  workerPids,
  type LogLine,
  type RunningBridge,
} from '../helpers/bridge.js';
import { openBroker, uniqueName, type TestBroker, messageIds } from '../helpers/broker.js';
import {
  postXml,
  startLoad,
  summarize,
  xmlBody,
  type Attempt,
  type LoadResult,
} from '../helpers/load.js';
import { getReadyz, waitForReadyz, type Readyz } from '../helpers/admin.js';
import { metricValue } from '../helpers/metrics.js';
import { poll } from '../helpers/poll.js';

const SHUTDOWN_TIMEOUT_MS = 5000;

function publishRoute(path: string, queue: string): Record<string, unknown> {
  return { path, mode: 'publish', exchange: '', routingKey: queue };
}

/** Every message_id now in `queue` (drains it). */
async function drainIds(broker: TestBroker, queue: string): Promise<string[]> {
  const msgs = await broker.drain(queue);
  return messageIds(msgs);
}

/** Every 2xx Message-Id is in the queue, the queue holds at least as many, and nothing foreign. */
function assertNoLostOk(result: LoadResult, inQueue: readonly string[]): void {
  const queued = new Set(inQueue);
  const lost = result.okIds.filter((id) => !queued.has(id));
  assert.deepEqual(lost, [], `2xx answered but not in the queue (${summarize(result)})`);
  assert.ok(
    inQueue.length >= result.okIds.length,
    `queue has ${inQueue.length} < ${result.okIds.length} 2xx`,
  );
  const sent = new Set(result.sentIds);
  assert.deepEqual(
    inQueue.filter((id) => !sent.has(id)),
    [],
    'the queue holds ids nobody sent',
  );
  assert.equal(queued.size, inQueue.length, 'a message was published twice');
}

/** `503 "not connected to the broker"×7, ECONNRESET×2`: what the failed attempts saw. */
function describeFailures(attempts: readonly Attempt[]): string {
  const counts = new Map<string, number>();
  for (const a of attempts) {
    if (is2xx(a)) continue;
    let what = a.error ?? String(a.status);
    if (a.body !== undefined) {
      try {
        const problem: unknown = JSON.parse(a.body);
        const detail =
          typeof problem === 'object' && problem !== null
            ? (problem as { detail?: unknown }).detail
            : undefined; // problem+json
        if (typeof detail === 'string') what += ` "${detail}"`;
      } catch {
        what += ` ${a.body.slice(0, 60)}`;
      }
    }
    counts.set(what, (counts.get(what) ?? 0) + 1);
  }
  return counts.size === 0 ? 'none' : [...counts].map(([w, c]) => `${w}×${c}`).join(', ');
}

const is2xx = (a: Attempt): boolean => a.status !== undefined && a.status >= 200 && a.status < 300;

/** Polls /readyz until 200 with `count` pids none of which is in `old`. */
async function waitForFreshPids(
  bridge: RunningBridge,
  count: number,
  old: readonly number[],
  timeoutMs = 20_000,
): Promise<number[]> {
  const pidsOf = (r: Readyz): number[] =>
    r.workers.flatMap((w) => (w.pid === undefined ? [] : [w.pid]));
  const readyz = await waitForReadyz(
    bridge,
    (r) =>
      r.status === 200 && pidsOf(r).length === count && pidsOf(r).every((p) => !old.includes(p)),
    timeoutMs,
  );
  return pidsOf(readyz);
}

/**
 * True once `pid` has exited: gone, or a zombie whose threads are all gone (PID 1 in a container
 * may reap late; a zombie leader with live threads still holds the sockets).
 */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === 'ESRCH')
      return true; // kill(2) errno
    throw err;
  }
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return true;
  }
  return /^State:\s+Z/m.test(status) && /^Threads:\s+1$/m.test(status);
}

/** Resolves with the connect error code, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

const msgIs = (msg: string) => (l: LogLine) => l.msg === msg;

describe('process lifecycle', { timeout: 110_000 }, () => {
  it('worker SIGKILL under load: refork, port keeps answering, no 2xx lost', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('kill-worker'));
    const bridge = await startBridge(
      baseConfig([publishRoute('/a', queue)], { shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS }),
    );
    t.after(() => bridge.stop());
    const before = await workerPids(bridge);
    assert.equal(before.length, 2);
    const victim = before[0] ?? -1;

    const load = startLoad({
      url: `${bridge.url}/a`,
      concurrency: 4,
      maxRequests: 6000,
      maxDurationMs: 3000,
      keepAlive: false,
      idPrefix: uniqueName('kw'),
    });
    await load.whenSettled(100);
    process.kill(victim, 'SIGKILL');
    await bridge.waitForLog((l) => l.msg === 'worker exited' && l['workerPid'] === victim);
    const exitSeenAt = performance.now();
    const refork = await bridge.waitForLog(msgIs('reforking worker'));
    assert.equal(refork['slot'], 0);
    const after = await waitForFreshPids(bridge, 2, [victim]);
    const readyAt = performance.now();
    assert.equal(after[1], before[1], 'the surviving worker was not touched');
    assert.notEqual(after[0], victim);
    const result = await load.done;

    const afterExit = result.attempts.filter((a) => a.startedAt > exitSeenAt);
    const afterReady = result.attempts.filter((a) => a.startedAt > readyAt);
    t.diagnostic(
      `load: ${summarize(result)}; started after the death was logged: ${afterExit.length}, failed: ${describeFailures(afterExit)}; ` +
        `started after /readyz was 200 again: ${afterReady.length}, failed: ${describeFailures(afterReady)}`,
    );
    assertNoLostOk(result, await drainIds(broker, queue));
    assert.ok(afterReady.length > 0, 'the load ended before the refork; nothing to check');
    assert.equal(describeFailures(afterReady), 'none', 'requests after the refork failed');
    // Only the dead worker's own connections may fail; a new connection after its death must be
    // served (by the survivor, or by the replacement once it can publish).
    assert.equal(
      describeFailures(afterExit),
      'none',
      'requests started after the worker died failed',
    );
  });

  it('SIGTERM under load: exits 0 within shutdownTimeoutMs, no 2xx lost', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('sigterm'));
    const bridge = await startBridge(
      baseConfig([publishRoute('/a', queue)], { shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS }),
    );
    t.after(() => bridge.stop());
    const prefix = uniqueName('st');
    const loads = [
      startLoad({
        url: `${bridge.url}/a`,
        concurrency: 2,
        maxRequests: 20_000,
        maxDurationMs: 20_000,
        keepAlive: false,
        idPrefix: `${prefix}-fresh`,
      }),
      startLoad({
        url: `${bridge.url}/a`,
        concurrency: 2,
        maxRequests: 20_000,
        maxDurationMs: 20_000,
        keepAlive: true,
        idPrefix: `${prefix}-ka`,
      }),
    ];
    await Promise.all(loads.map((l) => l.whenSettled(100)));
    const signalledAt = performance.now();
    bridge.child.kill('SIGTERM');
    const exit = await bridge.exited;
    const exitedAt = performance.now();
    for (const l of loads) l.stop();
    const results = await Promise.all(loads.map((l) => l.done));
    const kinds = ['fresh connections', 'keep-alive'];
    t.diagnostic(
      `exit after ${Math.round(exitedAt - signalledAt)} ms; ${results.map((r, i) => `${kinds[i]}: ${summarize(r)}`).join('; ')}`,
    );
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(
      exitedAt - signalledAt <= SHUTDOWN_TIMEOUT_MS + 3000,
      `exit took ${exitedAt - signalledAt} ms`,
    );
    const inQueue = await drainIds(broker, queue);
    for (const result of results) {
      for (const status of Object.keys(result.statuses)) {
        assert.ok(
          /^2\d\d$/.test(status) || status === '503',
          `unexpected status ${status} (${summarize(result)})`,
        );
      }
      const queued = new Set(inQueue);
      assert.deepEqual(
        result.okIds.filter((id) => !queued.has(id)),
        [],
        '2xx answered but not in the queue',
      );
    }
    assert.ok(inQueue.length >= results.reduce((n, r) => n + r.okIds.length, 0));
    assert.ok(bridge.logs.some(msgIs('stopped')));
  });

  it('SIGHUP with a changed route: rolling restart, no refused connection, new route live', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queueA = await broker.queue(uniqueName('hup-a'));
    const queueB = await broker.queue(uniqueName('hup-b'));
    const config = baseConfig([publishRoute('/a', queueA)], {
      shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS,
    });
    const bridge = await startBridge(config);
    t.after(() => bridge.stop());
    const before = await workerPids(bridge);
    assert.equal(before.length, 2);
    const probe = await postXml(`${bridge.url}/b`, xmlBody('early'), uniqueName('early'));
    assert.equal(probe.status, 404, '/b must not exist before the reload');

    bridge.rewriteConfig({
      ...config,
      routes: [publishRoute('/a', queueA), publishRoute('/b', queueB)],
    });
    const load = startLoad({
      url: `${bridge.url}/a`,
      concurrency: 2,
      maxRequests: 30_000,
      maxDurationMs: 30_000,
      keepAlive: false,
      idPrefix: uniqueName('hup'),
    });
    await load.whenSettled(50);
    bridge.child.kill('SIGHUP');
    await bridge.waitForLog(msgIs('reloaded'), 30_000);
    await load.whenSettled(load.attempts.length + 50);
    load.stop();
    const result = await load.done;
    t.diagnostic(
      `hammering client during the roll: ${summarize(result)}; failures: ${describeFailures(result.attempts)}`,
    );

    assert.equal(
      result.errors['ECONNREFUSED'] ?? 0,
      0,
      `refused connections during the roll (${summarize(result)})`,
    );
    // reload() replaces every slot before 'reloaded' is logged.
    const after = await workerPids(bridge);
    assert.equal(after.length, 2);
    assert.deepEqual(
      after.filter((p) => before.includes(p)),
      [],
      `pids before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`,
    );
    await waitUntilReady(bridge);
    const key = uniqueName('b');
    const answer = await postXml(`${bridge.url}/b`, xmlBody('b'), key);
    assert.equal(answer.status, 202);
    assert.equal(answer.messageId, key);
    assert.deepEqual(await drainIds(broker, queueB), [key]);
    assertNoLostOk(result, await drainIds(broker, queueA));
  });

  it('SIGHUP with an invalid config: refused with the problem path, old config keeps serving', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('hup-bad'));
    const config = baseConfig([publishRoute('/a', queue)], {
      shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS,
    });
    const bridge = await startBridge(config);
    t.after(() => bridge.stop());
    const before = await workerPids(bridge);

    bridge.rewriteConfig({
      ...config,
      shutdownTimeoutMs: 'soon',
      amqp: { urls: [], bogusKey: true },
    });
    bridge.child.kill('SIGHUP');
    const refused = await bridge.waitForLog(
      msgIs('reload refused: invalid config; keeping the running one'),
    );
    const problems: unknown = refused['problems'];
    t.diagnostic(`problems: ${JSON.stringify(problems)}`);
    assert.ok(Array.isArray(problems), JSON.stringify(refused));
    const paths = problems.map((p: unknown) =>
      typeof p === 'object' && p !== null ? (p as { path?: unknown }).path : undefined,
    ); // ConfigProblem shape
    assert.ok(paths.includes('shutdownTimeoutMs'), `problem paths: ${JSON.stringify(problems)}`);
    assert.ok(paths.includes('amqp.urls'), `problem paths: ${JSON.stringify(problems)}`);
    assert.ok(
      JSON.stringify(problems).includes('bogusKey'),
      `unknown key not named: ${JSON.stringify(problems)}`,
    );

    const key = uniqueName('still');
    const answer = await postXml(`${bridge.url}/a`, xmlBody('still'), key);
    assert.equal(answer.status, 202);
    assert.deepEqual(await drainIds(broker, queue), [key]);
    assert.deepEqual(await workerPids(bridge), before);
    assert.equal(bridge.child.exitCode, null);
    assert.ok(!bridge.logs.some((l) => (l.msg ?? '').startsWith('reloading')));
    assert.equal(
      await metricValue(bridge.adminUrl, 'bridge_config_reload_success'),
      0,
      'a refused reload shows as 0',
    );
  });

  it("SIGHUP with a binding to a missing queue: abandoned with the broker's reason, the old workers answer 2xx throughout, /readyz stays 200", async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('hup-safe'));
    const missing = uniqueName('hup-missing-queue');
    const config = baseConfig([publishRoute('/a', queue)], {
      shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS,
      reloadTimeoutMs: 3000,
    });
    const bridge = await startBridge(config);
    t.after(() => bridge.stop());
    const before = await workerPids(bridge);
    const loadedAt = await metricValue(
      bridge.adminUrl,
      'bridge_config_last_reload_success_timestamp_seconds',
    );
    assert.equal(await metricValue(bridge.adminUrl, 'bridge_config_reload_success'), 1);

    const load = startLoad({
      url: `${bridge.url}/a`,
      concurrency: 2,
      maxRequests: 30_000,
      maxDurationMs: 30_000,
      keepAlive: true,
      idPrefix: uniqueName('hup-safe'),
    });
    await load.whenSettled(50);
    let watching = true;
    const readyz: number[] = [];
    const watcher = (async () => {
      while (watching) {
        readyz.push((await getReadyz(bridge)).status);
        await new Promise((r) => setTimeout(r, 50)); // polling /readyz through the reload: no event to await
      }
    })();
    bridge.rewriteConfig({
      ...config,
      topology: { bindings: [{ queue: missing, exchange: 'amq.direct', routingKey: 'k' }] },
    });
    bridge.child.kill('SIGHUP');
    const abandoned = await bridge.waitForLog(
      (l) => (l.msg ?? '').startsWith('reload abandoned'),
      20_000,
    );
    const reasons = JSON.stringify(abandoned['reasons']);
    assert.match(reasons, /NOT_FOUND/, `the broker's own reason: ${reasons}`);
    assert.ok(reasons.includes(missing), `names the missing queue: ${reasons}`);
    await load.whenSettled(load.attempts.length + 50);
    load.stop();
    watching = false;
    await watcher;
    const result = await load.done;
    t.diagnostic(
      `client during the abandoned reload: ${summarize(result)}; /readyz answers: ${readyz.length}`,
    );
    assert.deepEqual(
      Object.keys(result.statuses),
      ['202'],
      `only 2xx throughout (${summarize(result)})`,
    );
    assert.deepEqual(result.errors, {});
    assert.ok(
      readyz.length > 10 && readyz.every((s) => s === 200),
      `/readyz stayed 200: ${JSON.stringify(readyz)}`,
    );
    assert.deepEqual(await workerPids(bridge), before, 'the old workers keep serving');
    assert.equal(await metricValue(bridge.adminUrl, 'bridge_config_reload_success'), 0);
    assert.equal(
      await metricValue(bridge.adminUrl, 'bridge_config_last_reload_success_timestamp_seconds'),
      loadedAt,
    );
    assertNoLostOk(result, await drainIds(broker, queue));

    // A good config next: reloaded, and the metrics say so.
    bridge.rewriteConfig(config);
    bridge.child.kill('SIGHUP');
    await bridge.waitForLog(msgIs('reloaded'), 30_000);
    assert.equal(await metricValue(bridge.adminUrl, 'bridge_config_reload_success'), 1);
    assert.ok(
      ((await metricValue(
        bridge.adminUrl,
        'bridge_config_last_reload_success_timestamp_seconds',
      )) ?? 0) > (loadedAt ?? Infinity),
    );
    assert.deepEqual(
      (await workerPids(bridge)).filter((p) => before.includes(p)),
      [],
    );
  });

  it('crash loop: repeated worker deaths make the primary exit non-zero', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('crashloop'));
    const bridge = await startBridge(
      baseConfig([publishRoute('/a', queue)], { shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS }),
    );
    t.after(() => bridge.stop());
    let exited = false;
    void bridge.exited.then(() => {
      exited = true;
    });
    const killed: number[] = [];
    // Bounded: the detector fires at 5 deaths; 10 rounds is ample.
    for (let round = 0; round < 10 && !exited; round++) {
      let victim: number | undefined;
      while (victim === undefined && !exited) {
        const pids = await workerPids(bridge).catch((): number[] => []); // the primary may be gone
        victim = pids.find((p) => !killed.includes(p));
        if (victim === undefined)
          await Promise.race([bridge.exited, new Promise((r) => setTimeout(r, 20))]); // polling /readyz
      }
      if (victim === undefined) break;
      process.kill(victim, 'SIGKILL');
      killed.push(victim);
      const dead = victim;
      await Promise.race([
        bridge.exited,
        bridge
          .waitForLog((l) => l.msg === 'worker exited' && l['workerPid'] === dead)
          .catch(() => undefined),
      ]);
    }
    const exit = await bridge.exited;
    t.diagnostic(`killed ${killed.length} workers; exit ${JSON.stringify(exit)}`);
    assert.ok(exit.code !== null && exit.code !== 0, `exit ${JSON.stringify(exit)}`);
    const fatal = bridge.logs.find(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('workers are crash-looping'),
    );
    assert.ok(fatal, 'no crash-loop log line');
    assert.equal(fatal.level, 'fatal');
    assert.ok(bridge.logs.filter(msgIs('reforking worker')).length >= 3);
  });

  it('primary SIGKILL: every worker exits and the port is released', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('kill-primary'));
    const bridge = await startBridge(
      baseConfig([publishRoute('/a', queue)], { shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS }),
    );
    t.after(() => bridge.stop());
    const pids = await workerPids(bridge);
    assert.equal(pids.length, 2);
    assert.equal((await postXml(`${bridge.url}/a`, xmlBody(1), uniqueName('pk'))).status, 202);

    bridge.child.kill('SIGKILL');
    assert.deepEqual(await bridge.exited, { code: null, signal: 'SIGKILL' });
    // The workers are not our children: no exit event to await.
    const alive = await poll(
      () => pids.filter((p) => !processGone(p)),
      (left) => left.length === 0,
      { timeoutMs: 10_000 },
    );
    assert.deepEqual(alive.last, [], 'workers still alive');
    assert.equal(await tryConnect(bridge.port), 'ECONNREFUSED');
  });
});
