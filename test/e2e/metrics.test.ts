/** E2E, /metrics: exact counts for a known mix over two workers, OpenMetrics, promtool, a real Prometheus, the alert rules, a hung worker, a killed worker and a reload. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import {
  AMQP_URL,
  PROJECT_ROOT,
  baseConfig,
  startBridge,
  waitUntilReady,
  workerPids,
  type LogLine,
  type RunningBridge,
} from '../helpers/bridge.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { holdUpload, send } from '../helpers/publish-http.js';
import { startResponder, type RunningResponder } from '../helpers/responder.js';
import { promtool, startPrometheus } from '../helpers/prometheus.js';
import {
  logAfter,
  sampleKey,
  scrapeText,
  seriesOf,
  typeOfSample,
  valueOf,
  waitForLogCount,
  type Scrape,
} from '../helpers/admin.js';
import { poll } from '../helpers/poll.js';

const PROM_DIR = path.join(PROJECT_ROOT, 'deploy', 'prometheus');
const ALERTS = path.join(PROM_DIR, 'alerts.yml');
const XML = { 'Content-Type': 'application/xml' };
const MAX_BODY = 1024;
const MAX_IN_FLIGHT = 2;
const WORKERS = 2;
const RPC_TIMEOUT_MS = 400;
/** Longer than the rpc timeout, so each reply comes late (and is counted as such). */
const REPLY_DELAY_MS = 1200;
/** The primary's per-worker wait (METRICS_DEADLINE_MS in src/primary/main.ts) plus room for a busy 2-core box. */
const SCRAPE_WITH_HUNG_WORKER_MS = 3000;
const OPENMETRICS = 'application/openmetrics-text; version=1.0.0';

const REQUESTS = 'bridge_http_requests_total';
const DURATION = 'bridge_http_request_duration_seconds';
const BODY = 'bridge_http_request_body_bytes';
const PUBLISHES = 'bridge_amqp_publishes_total';
const CONFIRM = 'bridge_amqp_confirm_duration_seconds';
const REPLIES = 'bridge_rpc_replies_total';
const REJECTED = 'bridge_xml_rejected_total';

const isAccess = (l: LogLine): boolean => l.msg === 'access';

/** `{a="x",b="y"}` with sorted label names: the key seriesOf() uses. */
function labelsKey(labels: Readonly<Record<string, string>>): string {
  return `{${Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k] ?? ''}"`)
    .join(',')}}`;
}

/** Counts per label set, to compare with seriesOf(). */
class Tally {
  readonly map = new Map<string, number>();
  add(labels: Readonly<Record<string, string>>, n = 1): void {
    const key = labelsKey(labels);
    this.map.set(key, (this.map.get(key) ?? 0) + n);
  }
  get(labels: Readonly<Record<string, string>>): number {
    return this.map.get(labelsKey(labels)) ?? 0;
  }
}

function sorted(map: ReadonlyMap<string, number>): Array<[string, number]> {
  return [...map.entries()].sort(([a], [b]) => a.localeCompare(b));
}

/** Every counter and histogram sample: what must never go backwards. */
function cumulativeSamples(scrape: Scrape): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of scrape.samples) {
    const type = typeOfSample(scrape, s.name);
    if (type === 'counter' || type === 'histogram') out.set(sampleKey(s), s.value);
  }
  return out;
}

function assertNothingWentBackwards(before: Scrape, after: Scrape, what: string): number {
  const now = cumulativeSamples(after);
  let compared = 0;
  for (const [key, value] of cumulativeSamples(before)) {
    const later = now.get(key);
    assert.ok(later !== undefined, `${what}: ${key} disappeared (was ${value})`);
    assert.ok(later >= value, `${what}: ${key} went backwards: ${value} -> ${later}`);
    compared += 1;
  }
  return compared;
}

describe('metrics over two workers', { timeout: 110_000 }, () => {
  let broker: TestBroker;
  let bridge: RunningBridge;
  let responder: RunningResponder;
  let okQueue: string;
  const statuses = new Tally();
  let sentTotal = 0;

  /** One request with a fresh connection (SO_REUSEPORT spreads them over the workers). */
  async function post(
    pathname: string,
    body: string,
    route: string,
    expect?: number,
  ): Promise<number> {
    const reply = await send(`${bridge.url}${pathname}`, { headers: XML, body });
    if (expect !== undefined)
      assert.equal(reply.status, expect, `${pathname}: ${reply.body.toString()}`);
    statuses.add({ route, status: String(reply.status) });
    sentTotal += 1;
    return reply.status;
  }

  before(async () => {
    broker = await openBroker();
    okQueue = await broker.queue(uniqueName('metrics-ok'));
    const slowQueue = await broker.queue(uniqueName('metrics-slow'));
    responder = await startResponder({ queue: slowQueue, delayMs: REPLY_DELAY_MS });
    bridge = await startBridge(
      baseConfig(
        [
          { name: 'ok', path: '/ok', mode: 'publish', exchange: '', routingKey: okQueue },
          // The default exchange with a routing key no queue has: basic.return, then 502.
          {
            name: 'unroutable',
            path: '/unroutable',
            mode: 'publish',
            exchange: '',
            routingKey: uniqueName('no-such-queue'),
          },
          {
            name: 'slow',
            path: '/slow',
            mode: 'rpc',
            exchange: '',
            routingKey: slowQueue,
            timeoutMs: RPC_TIMEOUT_MS,
          },
        ],
        {
          workers: WORKERS,
          amqp: {
            urls: [AMQP_URL],
            heartbeatSeconds: 5,
            reconnectSeconds: 0.5,
            maxInFlight: MAX_IN_FLIGHT,
          },
          limits: { maxBodyBytes: MAX_BODY },
          // Every request logs an access line naming its worker: the per-worker view of the counts.
          logging: { accessLogSampleRate: 1 },
        },
      ),
    );
  });
  after(async () => {
    await bridge?.stop();
    await responder?.stop();
    await broker?.close();
  });

  it('counts a known mix of requests exactly, summed over the workers, with matching histogram counts', async () => {
    for (let i = 0; i < 12; i++) await post('/ok', `<xml><n>${i}</n></xml>`, 'ok', 202);
    for (let i = 0; i < 5; i++) await post('/ok', `<xml><n>${i}</n></nope>`, 'ok', 400);
    for (let i = 0; i < 4; i++) await post(`/nowhere-${randomUUID()}`, '<xml/>', 'unmatched', 404);
    for (let i = 0; i < 3; i++) {
      const upload = holdUpload(
        `${bridge.url}/ok`,
        { ...XML, 'Content-Length': String(MAX_BODY + 1) },
        '',
      );
      const reply = await upload.response;
      upload.req.destroy();
      assert.equal(reply.status, 413);
      statuses.add({ route: 'ok', status: '413' });
      sentTotal += 1;
    }
    for (let i = 0; i < 4; i++) await post('/unroutable', '<xml/>', 'unroutable', 502);
    for (let i = 0; i < 3; i++) await post('/slow', '<xml/>', 'slow', 504);
    // A burst past maxInFlight: at most MAX_IN_FLIGHT per worker are admitted (then time out
    // with 504), the rest are refused at once with 503.
    const burst = 12;
    const answers = await Promise.all(
      Array.from({ length: burst }, () => post('/slow', '<xml/>', 'slow')),
    );
    assert.ok(
      answers.every((s) => s === 503 || s === 504),
      `burst answers: ${answers.join(' ')}`,
    );
    const refused = answers.filter((s) => s === 503).length;
    assert.ok(
      refused >= burst - MAX_IN_FLIGHT * WORKERS,
      `at least ${burst - MAX_IN_FLIGHT * WORKERS} of ${burst} refused: ${answers.join(' ')}`,
    );
    const timedOut = statuses.get({ route: 'slow', status: '504' });

    // Every answer is logged by the worker that served it; the lines are also the per-worker truth.
    await waitForLogCount(bridge, isAccess, sentTotal);
    const access = bridge.logs.filter(isAccess);
    assert.equal(access.length, sentTotal);
    const byWorker = new Map<unknown, Tally>();
    for (const line of access) {
      const tally = byWorker.get(line['worker']) ?? new Tally();
      tally.add({ route: String(line['route']), status: String(line['status']) });
      byWorker.set(line['worker'], tally);
    }
    assert.equal(
      byWorker.size,
      WORKERS,
      `both workers served requests: ${JSON.stringify([...byWorker.keys()])}`,
    );
    const summed = new Tally();
    for (const t of byWorker.values())
      for (const [k, v] of t.map) summed.map.set(k, (summed.map.get(k) ?? 0) + v);
    assert.deepEqual(
      sorted(summed.map),
      sorted(statuses.map),
      'access lines summed over workers = what the client saw',
    );

    // Late replies arrive REPLY_DELAY_MS after their request gave up.
    const scrape =
      (
        await poll(
          () => scrapeText(bridge.adminUrl),
          (s) => valueOf(s, REPLIES, { route: 'slow', outcome: 'late' }) >= timedOut,
          { timeoutMs: 15_000, intervalMs: 100 },
        )
      ).last ?? (await scrapeText(bridge.adminUrl));

    assert.deepEqual(
      sorted(seriesOf(scrape, REQUESTS)),
      sorted(statuses.map),
      `${REQUESTS}: exactly what the client saw`,
    );
    for (const route of ['ok', 'unroutable', 'slow', 'unmatched']) {
      const answered = [...statuses.map]
        .filter(([k]) => k.includes(`route="${route}"`))
        .reduce((n, [, v]) => n + v, 0);
      assert.equal(
        valueOf(scrape, `${DURATION}_count`, { route }),
        answered,
        `${DURATION}_count{route="${route}"}`,
      );
      assert.equal(
        valueOf(scrape, `${DURATION}_bucket`, { route, le: '+Inf' }),
        answered,
        `${DURATION}_bucket{le="+Inf",route="${route}"}`,
      );
    }
    // Bodies read completely: the 2xx, the 502s and the admitted rpc calls (not the 400s, 413s, 503s or 404s).
    const bodies = new Tally();
    bodies.add({ route: 'ok' }, 12);
    bodies.add({ route: 'unroutable' }, 4);
    bodies.add({ route: 'slow' }, timedOut);
    assert.deepEqual(
      sorted(seriesOf(scrape, `${BODY}_count`)),
      sorted(bodies.map),
      `${BODY}_count`,
    );

    const publishes = new Tally();
    publishes.add({ route: 'ok', outcome: 'confirmed' }, 12);
    publishes.add({ route: 'unroutable', outcome: 'confirmed' }, 0); // declared at start so rate() works
    publishes.add({ route: 'unroutable', outcome: 'returned' }, 4);
    publishes.add({ route: 'slow', outcome: 'confirmed' }, timedOut);
    publishes.add({ route: 'slow', outcome: 'overloaded' }, refused);
    assert.deepEqual(sorted(seriesOf(scrape, PUBLISHES)), sorted(publishes.map), PUBLISHES);
    assert.equal(
      valueOf(scrape, `${CONFIRM}_count`),
      12 + 4 + timedOut,
      `${CONFIRM}_count: confirmed + returned`,
    );

    const replies = new Tally();
    replies.add({ route: 'slow', outcome: 'timeout' }, timedOut);
    replies.add({ route: 'slow', outcome: 'late' }, timedOut);
    assert.deepEqual(sorted(seriesOf(scrape, REPLIES)), sorted(replies.map), REPLIES);
    assert.deepEqual(
      sorted(seriesOf(scrape, REJECTED)),
      [['{reason="malformed",route="ok"}', 5]],
      REJECTED,
    );

    assert.equal(valueOf(scrape, 'bridge_workers'), WORKERS);
    assert.equal(valueOf(scrape, 'bridge_amqp_connected'), WORKERS);
    assert.equal(valueOf(scrape, 'bridge_amqp_blocked'), 0);
    assert.equal(valueOf(scrape, 'bridge_amqp_in_flight'), 0);
    assert.equal(valueOf(scrape, 'bridge_worker_restarts_total'), 0);
    assert.equal(valueOf(scrape, 'bridge_scrape_errors_total'), 0);
    // prom-client's default metrics, summed over the primary and the workers.
    assert.equal(typeOfSample(scrape, 'process_cpu_seconds_total'), 'counter');
    assert.ok(valueOf(scrape, 'process_resident_memory_bytes') > 0);
    assert.equal(typeOfSample(scrape, 'nodejs_gc_duration_seconds_count'), 'histogram');
  });

  it('takes label values only from the config and closed sets', async () => {
    const scrape = await scrapeText(bridge.adminUrl);
    const closed: Record<string, ReadonlySet<string>> = {
      route: new Set(['ok', 'unroutable', 'slow', 'unmatched']),
      outcome: new Set([
        'confirmed',
        'nacked',
        'returned',
        'timeout',
        'unavailable',
        'overloaded',
        'ok',
        'late',
      ]),
      reason: new Set(['malformed', 'too-deep', 'doctype', 'encoding', 'routing-key', 'empty']),
      // host:port of the config's amqp.urls entry, never its credentials.
      node: new Set([new URL(AMQP_URL).host]),
    };
    // bridge_build_info: the one metric whose labels describe the build, not traffic.
    const build = scrape.samples.filter((s) => s.name === 'bridge_build_info');
    assert.equal(build.length, 1, 'one bridge_build_info sample, from the primary');
    const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
      version: string;
    }; // our own package.json
    const labels = { ...build[0]?.labels };
    assert.deepEqual(Object.keys(labels).sort(), ['node', 'tls', 'uws', 'uws_package', 'version']);
    assert.equal(labels['version'], pkg.version);
    assert.equal(labels['node'], process.version);
    assert.match(labels['uws'] ?? '', /^\d+\.\d+\.\d+\S* native$/);
    // The package and its TLS go together: 20.57 has SSL, 20.30 has not.
    assert.ok(
      (labels['uws_package'] === '@btc-vision/uwebsockets.js' && labels['tls'] === 'native') ||
        (labels['uws_package'] === '@trufflesuite/uws-js-unofficial' && labels['tls'] === 'none'),
      JSON.stringify(labels),
    );
    assert.equal(build[0]?.value, 1);
    const bridgeSamples = scrape.samples.filter(
      (s) => s.name.startsWith('bridge_') && s.name !== 'bridge_build_info',
    );
    assert.ok(bridgeSamples.length > 50);
    for (const s of bridgeSamples) {
      for (const [label, value] of Object.entries(s.labels)) {
        if (label === 'le') continue;
        if (label === 'status') {
          assert.match(value, /^[1-5]\d\d$/, `${sampleKey(s)}`);
          continue;
        }
        const allowed = closed[label];
        assert.ok(allowed !== undefined, `unexpected label ${label} on ${sampleKey(s)}`);
        assert.ok(allowed.has(value), `label value ${label}="${value}" on ${sampleKey(s)}`);
      }
    }
    assert.doesNotMatch(scrape.text, /nowhere-/, 'request paths never become label values');
    // 16 buckets from 0.5 ms to 10 s (and +Inf), the same for every latency histogram.
    const les = scrape.samples
      .filter((s) => s.name === `${DURATION}_bucket` && s.labels['route'] === 'ok')
      .map((s) => s.labels['le']);
    assert.deepEqual(les, [
      '0.0005',
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '+Inf',
    ]);
  });

  it('serves OpenMetrics when the scraper asks for it, with the same counts', async () => {
    const text = await scrapeText(bridge.adminUrl);
    assert.match(text.contentType ?? '', /^text\/plain; version=0\.0\.4/);
    const om = await scrapeText(bridge.adminUrl, `${OPENMETRICS},text/plain;version=0.0.4;q=0.5`);
    assert.match(om.contentType ?? '', /^application\/openmetrics-text; version=1\.0\.0/);
    assert.ok(om.text.endsWith('# EOF\n'), 'OpenMetrics ends with # EOF');
    assert.match(
      om.text,
      /^# TYPE bridge_http_requests counter$/m,
      'counter families are named without _total',
    );
    assert.doesNotMatch(om.text, /_total_total/, 'no doubled _total suffix');
    assert.doesNotMatch(om.text, /\n\n/, 'no blank lines (OpenMetrics forbids them)');
    assert.deepEqual(sorted(seriesOf(om, REQUESTS)), sorted(seriesOf(text, REQUESTS)));
    assert.deepEqual(sorted(seriesOf(om, PUBLISHES)), sorted(seriesOf(text, PUBLISHES)));
  });

  it('passes promtool check metrics on a real scrape', async () => {
    const scrape = await scrapeText(bridge.adminUrl);
    const run = await promtool(['check', 'metrics'], scrape.text);
    assert.equal(run.code, 0, `promtool check metrics: ${run.stdout}${run.stderr}`);
    assert.equal(`${run.stdout}${run.stderr}`.trim(), '', 'no lint findings');
  });

  it('ships a scrape config and alert rules promtool accepts, and the alerts fire on what they describe', async () => {
    const config = await promtool(['check', 'config', path.join(PROM_DIR, 'prometheus.yml')]);
    assert.equal(config.code, 0, `promtool check config: ${config.stdout}${config.stderr}`);
    const rules = await promtool(['check', 'rules', ALERTS]);
    assert.equal(rules.code, 0, `promtool check rules: ${rules.stdout}${rules.stderr}`);

    const parsed: unknown = parseYaml(readFileSync(ALERTS, 'utf8'));
    const alerts = alertRulesOf(parsed);
    const names = alerts.map((a) => a.alert);
    for (const wanted of [
      'BridgeDown',
      'BridgeNotReady',
      'BridgeHigh5xxRatio',
      'BridgeOverloaded503',
      'BridgeConfirmLatencyHigh',
      'BridgeWorkerRestarts',
      'BridgeLateRpcReplies',
    ]) {
      assert.ok(names.includes(wanted), `alert ${wanted} is defined`);
    }
    for (const a of alerts) {
      for (const k of ['summary', 'description', 'runbook'])
        assert.ok(
          typeof a.annotations[k] === 'string' && a.annotations[k] !== '',
          `${a.alert} has annotation ${k}`,
        );
      assert.ok(
        ['critical', 'warning'].includes(a.labels['severity'] ?? ''),
        `${a.alert} has a severity`,
      );
    }

    // promtool's unit tests compare annotations verbatim; test the firing logic on a copy without them.
    const dir = mkdtempSync(path.join(tmpdir(), 'bridge-alerts-'));
    try {
      const bare = {
        groups: [
          {
            name: 'bridge',
            rules: alerts.map((a) => ({
              alert: a.alert,
              expr: a.expr,
              for: a.for,
              labels: a.labels,
            })),
          },
        ],
      };
      writeFileSync(path.join(dir, 'rules.yml'), stringifyYaml(bare));
      writeFileSync(
        path.join(dir, 'tests.yml'),
        stringifyYaml({
          rule_files: ['rules.yml'],
          evaluation_interval: '1m',
          tests: alertCases(),
        }),
      );
      const run = await promtool(['test', 'rules', path.join(dir, 'tests.yml')]);
      assert.equal(run.code, 0, `promtool test rules:\n${run.stdout}${run.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is scraped by a real Prometheus, which reads the counters back and evaluates the rules and dashboard queries', async (t) => {
    const expected = valueOf(await scrapeText(bridge.adminUrl), REQUESTS, {
      route: 'ok',
      status: '202',
    });
    assert.ok(expected > 0);
    const prom = await startPrometheus(
      stringifyYaml({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        rule_files: [ALERTS],
        scrape_configs: [
          {
            job_name: 'xml-amqp-bridge',
            scrape_timeout: '900ms',
            static_configs: [{ targets: [`127.0.0.1:${bridge.adminPort}`] }],
          },
        ],
      }),
    );
    t.after(() => prom.stop());

    const seen = await poll(
      async () => ({
        got: (await prom.query(`${REQUESTS}{route="ok",status="202"}`))[0]?.value,
        ruleStates: rulesOf(await prom.api('rules')),
      }),
      (s) =>
        s.got === expected &&
        s.ruleStates.length > 0 &&
        s.ruleStates.every((r) => r.health === 'ok'),
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    const got = seen.last?.got;
    const ruleStates = seen.last?.ruleStates ?? [];
    assert.equal(got, expected, `Prometheus read ${REQUESTS}{route="ok",status="202"} back`);
    assert.deepEqual(
      (await prom.query('up{job="xml-amqp-bridge"}')).map((r) => r.value),
      [1],
    );
    assert.deepEqual(
      await prom.query('{__name__=~".+_total_total"}'),
      [],
      'no doubled _total from the OpenMetrics scrape',
    );
    assert.ok(ruleStates.length >= 7, `rules loaded: ${ruleStates.length}`);
    for (const r of ruleStates) assert.equal(r.health, 'ok', `rule ${r.name}: ${r.lastError}`);

    // Every query of the Grafana dashboard parses and evaluates against real data.
    const dashboard: unknown = JSON.parse(
      readFileSync(path.join(PROM_DIR, 'grafana-dashboard.json'), 'utf8'),
    );
    const exprs = dashboardExprs(dashboard);
    assert.ok(exprs.length >= 15, `dashboard queries: ${exprs.length}`);
    for (const expr of exprs) {
      const concrete = expr
        .replaceAll('$__rate_interval', '1m')
        .replaceAll('$instance', '.*')
        .replaceAll('$route', '.*');
      await prom.query(concrete); // throws unless Prometheus answers success
    }
    const requestsPanel = await prom.query(`sum by (status) (${REQUESTS})`);
    assert.ok(requestsPanel.length >= 5, 'the dashboard sees the statuses');
  });

  it('answers a scrape by the deadline while a worker is stopped: the live worker fresh, the stopped one at its last values', async (t) => {
    const before = await scrapeText(bridge.adminUrl);
    const base = valueOf(before, REQUESTS, { route: 'ok', status: '202' });
    const accessFrom = bridge.logs.filter(isAccess).length;
    const n = 20;
    for (let i = 0; i < n; i++) await post('/ok', `<xml><hung>${i}</hung></xml>`, 'ok', 202);
    await waitForLogCount(bridge, isAccess, accessFrom + n);
    const newByPid = new Map<number, number>();
    for (const line of bridge.logs.filter(isAccess).slice(accessFrom)) {
      const pid = Number(line['pid']);
      newByPid.set(pid, (newByPid.get(pid) ?? 0) + 1);
    }
    const pids = await workerPids(bridge);
    assert.equal(pids.length, WORKERS);
    const [live, stopped] = pids;
    assert.ok(live !== undefined && stopped !== undefined);
    assert.ok(
      (newByPid.get(stopped) ?? 0) > 0 && (newByPid.get(live) ?? 0) > 0,
      `both workers served some of the ${n}: ${JSON.stringify([...newByPid])}`,
    );

    process.kill(stopped, 'SIGSTOP');
    t.after(() => {
      try {
        process.kill(stopped, 'SIGCONT'); // also if an assertion below throws
      } catch {
        // already gone
      }
    });
    let during: Scrape;
    let elapsed: number;
    try {
      const started = performance.now();
      during = await scrapeText(bridge.adminUrl, undefined, AbortSignal.timeout(10_000));
      elapsed = performance.now() - started;
    } finally {
      process.kill(stopped, 'SIGCONT');
    }
    t.diagnostic(`scrape with a stopped worker took ${Math.round(elapsed)} ms`);
    assert.ok(
      elapsed < SCRAPE_WITH_HUNG_WORKER_MS,
      `answered within ${SCRAPE_WITH_HUNG_WORKER_MS} ms (took ${Math.round(elapsed)})`,
    );
    assert.equal(
      valueOf(during, REQUESTS, { route: 'ok', status: '202' }),
      base + (newByPid.get(live) ?? 0),
      'the live worker counted fresh, the stopped one as of the previous scrape',
    );
    assert.ok(
      valueOf(during, 'bridge_scrape_errors_total') >=
        valueOf(before, 'bridge_scrape_errors_total') + 1,
      'the miss is counted',
    );
    assert.equal(valueOf(during, 'bridge_workers'), WORKERS);
    assertNothingWentBackwards(before, during, 'scrape with a stopped worker');

    const resumed = await scrapeText(bridge.adminUrl);
    assert.equal(
      valueOf(resumed, REQUESTS, { route: 'ok', status: '202' }),
      base + n,
      'after SIGCONT both workers are fresh again',
    );
  });

  it("keeps a killed worker's counts: after the refork every counter and histogram is the same or higher", async () => {
    // The primary knows a worker's counts as of its last scrape (a SIGKILLed worker sends nothing
    // more), so scrape right before the kill; no traffic in between makes the comparison exact.
    const before = await scrapeText(bridge.adminUrl);
    const pids = await workerPids(bridge);
    const victim = pids[1];
    assert.ok(victim !== undefined);
    const from = bridge.logs.length;
    process.kill(victim, 'SIGKILL');
    await logAfter(bridge, from, (l) => l.msg === 'worker exited' && l['workerPid'] === victim);
    await logAfter(bridge, from, (l) => l.msg === 'reforking worker');
    await logAfter(bridge, from, (l) => l.msg === 'listening' && l['role'] === 'worker');
    await waitUntilReady(bridge);
    assert.ok(!(await workerPids(bridge)).includes(victim));

    const after = await scrapeText(bridge.adminUrl);
    const compared = assertNothingWentBackwards(before, after, 'after SIGKILL + refork');
    assert.ok(compared > 100, `compared ${compared} counter and histogram samples`);
    for (const name of [REQUESTS, `${DURATION}_count`, PUBLISHES, REPLIES, REJECTED]) {
      assert.deepEqual(
        sorted(seriesOf(after, name)),
        sorted(seriesOf(before, name)),
        `${name} carried forward exactly`,
      );
    }
    assert.equal(
      valueOf(after, 'bridge_worker_restarts_total'),
      valueOf(before, 'bridge_worker_restarts_total') + 1,
    );
    assert.equal(valueOf(after, 'bridge_workers'), WORKERS);

    // The new worker's counts add on top of the carried ones.
    const base = valueOf(after, REQUESTS, { route: 'ok', status: '202' });
    for (let i = 0; i < 10; i++) await post('/ok', `<xml><after>${i}</after></xml>`, 'ok', 202);
    assert.equal(
      valueOf(await scrapeText(bridge.adminUrl), REQUESTS, { route: 'ok', status: '202' }),
      base + 10,
    );
  });

  it('loses no counts across a reload: each retiring worker hands over its final snapshot', async () => {
    const before = await scrapeText(bridge.adminUrl);
    const base = valueOf(before, REQUESTS, { route: 'ok', status: '202' });
    // No scrape between this traffic and the reload: only the drain's final snapshot carries it.
    for (let i = 0; i < 10; i++) await post('/ok', `<xml><reload>${i}</reload></xml>`, 'ok', 202);
    const oldPids = await workerPids(bridge);
    const from = bridge.logs.length;
    bridge.child.kill('SIGHUP');
    await logAfter(bridge, from, (l) => l.msg === 'reloaded', 30_000);
    await waitUntilReady(bridge);
    const newPids = await workerPids(bridge);
    assert.ok(
      newPids.every((p) => !oldPids.includes(p)),
      `every worker replaced: ${oldPids.join(',')} -> ${newPids.join(',')}`,
    );

    const after = await scrapeText(bridge.adminUrl);
    assert.equal(valueOf(after, REQUESTS, { route: 'ok', status: '202' }), base + 10);
    assertNothingWentBackwards(before, after, 'after a reload');
    assert.equal(
      valueOf(after, 'bridge_worker_restarts_total'),
      valueOf(before, 'bridge_worker_restarts_total'),
      'a reload is not a restart',
    );
  });
});

interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for: string | undefined;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, unknown>;
}

/** `obj[key]` when `obj` is an object that has it; parsed YAML and JSON are `unknown` until narrowed. */
function field(obj: unknown, key: string): unknown {
  return typeof obj === 'object' && obj !== null && key in obj
    ? (obj as Record<string, unknown>)[key]
    : undefined;
}

/** `obj[key]` when it is a list, else an empty one. */
function listField(obj: unknown, key: string): unknown[] {
  const value = field(obj, key);
  return Array.isArray(value) ? (value as unknown[]) : [];
}

/** `obj[key]` when it is a string. */
function stringField(obj: unknown, key: string): string | undefined {
  const value = field(obj, key);
  return typeof value === 'string' ? value : undefined;
}

/** The alerting rules of a Prometheus rules file (narrowed from parsed YAML). */
function alertRulesOf(doc: unknown): AlertRule[] {
  assert.ok(Array.isArray(field(doc, 'groups')), 'rules file has groups');
  const out: AlertRule[] = [];
  for (const group of listField(doc, 'groups')) {
    assert.ok(
      Array.isArray(field(group, 'rules')),
      `group ${JSON.stringify(field(group, 'name'))} has rules`,
    );
    for (const rule of listField(group, 'rules')) {
      const alert = stringField(rule, 'alert');
      const expr = stringField(rule, 'expr');
      assert.ok(
        alert !== undefined && expr !== undefined,
        `rule has alert and expr: ${JSON.stringify(rule)}`,
      );
      const labels = field(rule, 'labels');
      const annotations = field(rule, 'annotations');
      out.push({
        alert,
        expr,
        for: stringField(rule, 'for'),
        labels: Object.fromEntries(
          Object.entries(typeof labels === 'object' && labels !== null ? labels : {}).map(
            ([k, v]) => [k, String(v)],
          ),
        ),
        annotations: {
          ...(typeof annotations === 'object' && annotations !== null ? annotations : {}),
        },
      });
    }
  }
  return out;
}

/** Name, health and last error of every rule from Prometheus' /api/v1/rules. */
function rulesOf(data: unknown): Array<{ name: string; health: string; lastError: string }> {
  return listField(data, 'groups').flatMap((g) =>
    listField(g, 'rules').map((r) => ({
      name: stringField(r, 'name') ?? '?',
      health: stringField(r, 'health') ?? '?',
      lastError: stringField(r, 'lastError') ?? '',
    })),
  );
}

/** Every `expr` of the dashboard's panels (rows included). */
function dashboardExprs(doc: unknown): string[] {
  assert.ok(Array.isArray(field(doc, 'panels')), 'dashboard has panels');
  const walk = (panels: unknown[]): string[] =>
    panels.flatMap((p) => [
      ...walk(listField(p, 'panels')),
      ...listField(p, 'targets').flatMap((target) => stringField(target, 'expr') ?? []),
    ]);
  return walk(listField(doc, 'panels'));
}

/** promtool unit-test groups: each alert fires on its condition (with its labels) and stays quiet otherwise. */
function alertCases(): unknown[] {
  const I = 'instance="b:9464", job="xml-amqp-bridge"';
  const inst = { instance: 'b:9464' };
  const job = { ...inst, job: 'xml-amqp-bridge' };
  const test = (
    series: Array<[string, string]>,
    checks: Array<[string, string, Array<Record<string, string>>]>,
  ): unknown => ({
    interval: '1m',
    input_series: series.map(([s, values]) => ({ series: s, values })),
    alert_rule_test: checks.map(([eval_time, alertname, exp]) => ({
      eval_time,
      alertname,
      exp_alerts: exp.map((exp_labels) => ({ exp_labels })),
    })),
  });
  return [
    test([[`up{${I}}`, '0x5']], [['3m', 'BridgeDown', [{ ...job, severity: 'critical' }]]]),
    test([[`up{${I}}`, '1x5']], [['3m', 'BridgeDown', []]]),
    test(
      [[`bridge_workers{${I}}`, '2x5']],
      [['3m', 'BridgeDown', [{ job: 'xml-amqp-bridge', severity: 'critical' }]]],
    ),
    test(
      [
        [`bridge_workers{${I}}`, '2x10'],
        [`bridge_amqp_connected{${I}}`, '2 2 1x8'],
        [`bridge_amqp_blocked{${I}}`, '0x10'],
      ],
      [
        ['3m', 'BridgeNotReady', []],
        ['6m', 'BridgeNotReady', [{ ...job, severity: 'critical' }]],
      ],
    ),
    test(
      [
        [`bridge_workers{${I}}`, '2x10'],
        [`bridge_amqp_connected{${I}}`, '2x10'],
        [`bridge_amqp_blocked{${I}}`, '0 0 1x8'],
      ],
      [
        ['6m', 'BridgeNotReady', [{ ...job, severity: 'critical' }]],
        ['6m', 'BridgeOverloaded503', []],
      ],
    ),
    test(
      [
        [`bridge_http_requests_total{${I}, route="a", status="202"}`, '0+100x30'],
        [`bridge_http_requests_total{${I}, route="a", status="502"}`, '0+10x30'],
      ],
      [
        ['15m', 'BridgeHigh5xxRatio', [{ ...inst, severity: 'warning' }]],
        ['15m', 'BridgeOverloaded503', []],
      ],
    ),
    test(
      [
        [`bridge_http_requests_total{${I}, route="a", status="202"}`, '0+100x30'],
        [`bridge_http_requests_total{${I}, route="a", status="503"}`, '0+10x30'],
      ],
      [
        ['15m', 'BridgeHigh5xxRatio', []],
        ['15m', 'BridgeOverloaded503', [{ ...inst, severity: 'warning' }]],
      ],
    ),
    test(
      [
        [`bridge_amqp_confirm_duration_seconds_bucket{${I}, le="0.1"}`, '0x30'],
        [`bridge_amqp_confirm_duration_seconds_bucket{${I}, le="1"}`, '0+10x30'],
        [`bridge_amqp_confirm_duration_seconds_bucket{${I}, le="+Inf"}`, '0+10x30'],
      ],
      [['20m', 'BridgeConfirmLatencyHigh', [{ ...inst, severity: 'warning' }]]],
    ),
    test(
      [
        [`bridge_amqp_confirm_duration_seconds_bucket{${I}, le="0.01"}`, '0+10x30'],
        [`bridge_amqp_confirm_duration_seconds_bucket{${I}, le="1"}`, '0+10x30'],
        [`bridge_amqp_confirm_duration_seconds_bucket{${I}, le="+Inf"}`, '0+10x30'],
      ],
      [['20m', 'BridgeConfirmLatencyHigh', []]],
    ),
    test(
      [[`bridge_worker_restarts_total{${I}}`, '0 0 0 1 1 1']],
      [['4m', 'BridgeWorkerRestarts', [{ ...job, severity: 'warning' }]]],
    ),
    test([[`bridge_worker_restarts_total{${I}}`, '0x10']], [['8m', 'BridgeWorkerRestarts', []]]),
    test(
      [
        [`bridge_rpc_replies_total{${I}, route="orders", outcome="late"}`, '0+1x30'],
        [`bridge_rpc_replies_total{${I}, route="orders", outcome="ok"}`, '0+100x30'],
      ],
      [['20m', 'BridgeLateRpcReplies', [{ ...inst, route: 'orders', severity: 'warning' }]]],
    ),
    test(
      [[`bridge_rpc_replies_total{${I}, route="orders", outcome="ok"}`, '0+100x30']],
      [['20m', 'BridgeLateRpcReplies', []]],
    ),
    test(
      [[`bridge_scrape_errors_total{${I}}`, '0+1x20']],
      [['15m', 'BridgeScrapeErrors', [{ ...job, severity: 'warning' }]]],
    ),
    test(
      [[`bridge_config_reload_success{${I}}`, '1 1 0 0']],
      [['3m', 'BridgeConfigReloadFailed', [{ ...job, severity: 'warning' }]]],
    ),
    test([[`bridge_config_reload_success{${I}}`, '1x5']], [['4m', 'BridgeConfigReloadFailed', []]]),
    // promtool's clock starts at 0: 10 days left fires, 100 days does not.
    test(
      [
        [
          `bridge_tls_certificate_expiry_timestamp_seconds{${I}, subject="CN=partners"}`,
          '864000x90',
        ],
      ],
      [
        [
          '70m',
          'BridgeTlsCertificateExpiresSoon',
          [{ ...job, subject: 'CN=partners', severity: 'warning' }],
        ],
      ],
    ),
    test(
      [
        [
          `bridge_tls_certificate_expiry_timestamp_seconds{${I}, subject="CN=partners"}`,
          '8640000x90',
        ],
      ],
      [['70m', 'BridgeTlsCertificateExpiresSoon', []]],
    ),
  ];
}
