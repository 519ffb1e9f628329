/** E2E, logs: one JSON object per line with the documented fields, state transitions, no body or AMQP password by default, the sampled access log and debugBodies; plus the logger's redaction in-process. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:net';
import {
  baseConfig,
  startBridge,
  workerPids,
  type LogLine,
  type RunningBridge,
} from '../helpers/bridge.js';
import { startPrivateBroker, type PrivateBroker } from '../helpers/private-broker.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { deadBrokerPort } from '../helpers/dead-broker.js';
import { header, send } from '../helpers/publish-http.js';
import { startLoad, summarize } from '../helpers/load.js';
import { logAfter, waitForLogCount } from '../helpers/admin.js';
import { createLogger } from '../../src/shared/log.js';

const WORKERS = 2;
const LEVELS = new Set(['debug', 'info', 'warn', 'error', 'fatal']);
const SAMPLED_RATE = 0.25;
const SAMPLED_REQUESTS = 200;

const msgIs =
  (msg: string) =>
  (l: LogLine): boolean =>
    l.msg === msg;
const isAccess = msgIs('access');

/** Asserts the line shape of README "Logs": time, level, pid, role, msg; `worker` (slot) on worker lines. */
function assertLineShape(l: LogLine, startedAt: number): void {
  const text = JSON.stringify(l);
  assert.notEqual(l.level, 'unparsed', `not JSON: ${String(l.msg)}`);
  assert.equal(typeof l['time'], 'number', text);
  assert.ok(
    Number(l['time']) >= startedAt - 1000 && Number(l['time']) <= Date.now() + 1000,
    `time is epoch ms: ${text}`,
  );
  assert.ok(typeof l.level === 'string' && LEVELS.has(l.level), `level: ${text}`);
  assert.ok(Number.isInteger(l['pid']), `pid: ${text}`);
  assert.ok(l['role'] === 'primary' || l['role'] === 'worker', `role: ${text}`);
  assert.ok(typeof l.msg === 'string' && l.msg !== '', `msg: ${text}`);
  if (l['role'] === 'worker' && l.msg !== 'primary disconnected; exiting') {
    assert.ok(
      Number.isInteger(l['worker']) && Number(l['worker']) >= 0 && Number(l['worker']) < WORKERS,
      `worker slot: ${text}`,
    );
  }
}

describe('log lines of a running bridge', { timeout: 100_000 }, () => {
  const user = uniqueName('logs-user');
  const password = `pw-${randomUUID()}`;
  const startedAt = Date.now();
  let node: PrivateBroker;
  let broker: TestBroker;
  let bridge: RunningBridge;
  let dead: Server;
  let config: Record<string, unknown>;
  let queue: string;
  /** Strings that must never reach a log line (in every phase). */
  const secrets: string[] = [password];

  /** The config with a different `logging` block (for SIGHUP reloads). */
  function withLogging(logging: Record<string, unknown>): Record<string, unknown> {
    return { ...config, logging };
  }

  async function reload(logging: Record<string, unknown>): Promise<void> {
    bridge.rewriteConfig(withLogging(logging));
    const from = bridge.logs.length;
    bridge.child.kill('SIGHUP');
    const reloading = await logAfter(bridge, from, (l) => (l.msg ?? '').startsWith('reloading:'));
    assert.equal(reloading['role'], 'primary');
    await logAfter(bridge, from, msgIs('reloaded'), 30_000);
  }

  function assertNoSecrets(lines: readonly LogLine[], what: string): void {
    for (const l of lines) {
      const text = JSON.stringify(l);
      for (const s of secrets)
        assert.ok(!text.includes(s), `${what}: a log line contains "${s}": ${text}`);
    }
    for (const s of secrets)
      assert.ok(!bridge.stderr().includes(s), `${what}: stderr contains "${s}"`);
  }

  before(async () => {
    // A user with a password of its own, on a node of the test's own: the shared broker's users stay as they are.
    node = await startPrivateBroker('logs');
    await node.ctl('add_user', user, password);
    await node.ctl('set_permissions', '-p', '/', user, '.*', '.*', '.*');
    broker = await openBroker(node.url);
    queue = await broker.queue(uniqueName('logs'));
    const deadPort = await deadBrokerPort();
    dead = deadPort.server;
    const base = baseConfig(
      [
        {
          name: 'a',
          path: '/a',
          mode: 'publish',
          exchange: '',
          routingKey: queue,
          forwardHeaders: ['x-partner-signature'],
        },
        // The routing key comes from the body: an unroutable key makes a 502 whose detail echoes it.
        { name: 'k', path: '/k', mode: 'publish', exchange: '', routingKey: '{/xml/kind}' },
      ],
      { workers: WORKERS },
    );
    // The first URL fails (a connection error is logged), the second works; both carry the password.
    config = {
      ...base,
      amqp: {
        urls: [
          `amqp://${user}:${password}@127.0.0.1:${deadPort.port}/`,
          `amqp://${user}:${password}@127.0.0.1:${node.port}/`,
        ],
        heartbeatSeconds: 5,
        reconnectSeconds: 0.5,
      },
    };
    bridge = await startBridge(config);
  });
  after(async () => {
    await bridge?.stop();
    await broker?.close();
    dead?.close();
    await node?.stop();
  });

  it('writes one JSON object per line: time, level, pid, role, msg, and the worker slot on worker lines', async () => {
    for (const l of bridge.logs) assertLineShape(l, startedAt);
    const ready = bridge.logs.find(msgIs('ready to serve'));
    assert.ok(ready !== undefined);
    assert.equal(ready['role'], 'primary');
    assert.equal(ready['pid'], bridge.pid);
    assert.ok(Array.isArray(ready['amqp']));
    for (const url of ready['amqp'])
      assert.match(String(url), new RegExp(`^amqp://${user}:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/$`));
    const pids = await workerPids(bridge);
    for (let slot = 0; slot < WORKERS; slot++) {
      const listening = bridge.logs.find((l) => l.msg === 'listening' && l['worker'] === slot);
      assert.ok(
        listening !== undefined &&
          listening['role'] === 'worker' &&
          pids.includes(Number(listening['pid'])),
        `slot ${slot} listening`,
      );
      assert.ok(
        bridge.logs.some(
          (l) => l.msg === 'broker state' && l['state'] === 'connected' && l['worker'] === slot,
        ),
        `slot ${slot} connected`,
      );
      const failed = bridge.logs.find(
        (l) => l.msg === 'broker connection failed' && l['worker'] === slot,
      );
      // Worker N starts at URL N (modulo): even slots meet the dead first URL, odd ones start on
      // the live second one.
      if (slot % 2 === 1) {
        assert.equal(failed, undefined, `slot ${slot} starts at the second URL`);
        const connected = bridge.logs.find(
          (l) => l.msg === 'broker connected' && l['worker'] === slot,
        );
        assert.equal(connected?.['node'], `127.0.0.1:${node.port}`, `slot ${slot}'s node`);
        continue;
      }
      assert.ok(
        failed !== undefined && failed.level === 'warn',
        `slot ${slot}: the dead first URL is logged as a failed connection`,
      );
      const err = failed['err'];
      assert.ok(
        typeof err === 'object' &&
          err !== null &&
          'message' in err &&
          typeof err.message === 'string',
        `err is serialized: ${JSON.stringify(failed)}`,
      );
    }
    assertNoSecrets(bridge.logs, 'start');
    assert.equal(bridge.stderr(), '', 'nothing on stderr');
  });

  it('logs neither request bodies nor credentials in the default mode; non-2xx answers get an access line with code, reason, method, path and client', async () => {
    const marker = `BODY${randomUUID().replaceAll('-', '')}`;
    const signature = `SIG-${randomUUID()}`;
    const token = `TOKEN-${randomUUID()}`;
    secrets.push(marker, signature, token);
    const headers = {
      'Content-Type': 'application/xml',
      'X-Partner-Signature': signature,
      Authorization: `Bearer ${token}`,
    };
    const nowhere = `/nowhere-${randomUUID()}`;
    const cases: Array<[string, string, number]> = [
      ['/a', `<xml><secret>${marker}</secret></xml>`, 202],
      [`/a?sig=${marker}`, `<xml><secret>${marker}</secret></xml>`, 202],
      ['/a', `<xml><secret>${marker}</oops></xml>`, 400],
      ['/a', `<!DOCTYPE x [<!ENTITY e "${marker}">]><x>&e;</x>`, 400],
      ['/a', `<x>&${marker};</x>`, 400],
      ['/k', `<xml><kind>${marker}</kind></xml>`, 502],
      [`${nowhere}?sig=${marker}`, `<xml>${marker}</xml>`, 404],
    ];
    const ids = new Map<string, number>();
    for (const [pathname, body, status] of cases) {
      const reply = await send(`${bridge.url}${pathname}`, { headers, body });
      assert.equal(reply.status, status, `${pathname}: ${reply.body.toString()}`);
      ids.set(String(header(reply, 'x-request-id')), status);
    }
    // Lines the workers wrote while handling these are in the pipe before any later line: kill
    // a worker and wait for the primary's report of it (also the next test's transition).
    const from = bridge.logs.length;
    const victim = (await workerPids(bridge))[1];
    assert.ok(victim !== undefined);
    process.kill(victim, 'SIGKILL');
    const exited = await logAfter(
      bridge,
      from,
      (l) => l.msg === 'worker exited' && l['workerPid'] === victim,
    );
    const upTo = bridge.logs.indexOf(exited);
    const lines = bridge.logs.slice(0, upTo);
    const access = lines.filter(isAccess);
    assert.deepEqual(
      access.map((l) => ids.get(String(l['requestId']))).sort(),
      [400, 400, 400, 404, 502],
      'an access line for each non-2xx answer, none for 2xx (accessLogSampleRate: 0)',
    );
    for (const l of access) {
      assert.equal(l.level, Number(l['status']) >= 500 ? 'warn' : 'info');
      assert.equal(l['method'], 'POST');
      assert.match(String(l['client']), /127\.0\.0\.1$/);
      assert.match(String(l['code']), /^BRIDGE_[A-Z_]+$/);
      assert.equal(typeof l['reason'], 'string');
    }
    const notFound = access.find((l) => l['status'] === 404);
    assert.equal(notFound?.['path'], nowhere, 'the path, without its query string');
    assert.equal(notFound?.['reason'], 'Not Found');
    assert.ok(access.some((l) => l['reason'] === 'Invalid XML (doctype)'));
    assert.equal(
      lines.filter(msgIs('request body')).length,
      0,
      'no bodies by default (debugBodies: false)',
    );
    assert.equal(lines.filter((l) => l.level === 'debug').length, 0, 'level info by default');
    assertNoSecrets(lines, 'default mode');
  });

  it('holds back non-2xx access lines past errorAccessLogPerSecond and counts them', async () => {
    await reload({ level: 'info', errorAccessLogPerSecond: 3 });
    const from = bridge.logs.length;
    const burst = 40;
    const ids = new Set<string>();
    for (let i = 0; i < burst; i++) {
      const reply = await send(`${bridge.url}/nowhere-${i}`, {
        headers: { 'Content-Type': 'application/xml' },
        body: '<x/>',
      });
      assert.equal(reply.status, 404);
      ids.add(String(header(reply, 'x-request-id')));
    }
    // Each worker that held lines back says how many once its second is over.
    const heldBack = (): number =>
      bridge.logs
        .slice(from)
        .filter(msgIs('access lines held back'))
        .reduce((n, l) => n + Number(l['count']), 0);
    const written = (): number =>
      bridge.logs.slice(from).filter((l) => isAccess(l) && ids.has(String(l['requestId']))).length;
    await bridge.waitForLog(() => written() + heldBack() === burst, 10_000);
    assert.ok(
      written() <= 3 * WORKERS * 2,
      `${written()} access lines for ${burst} 404s at 3 per worker and second`,
    );
    assert.ok(heldBack() > 0);
  });

  it("logs a worker's death and its refork, then the new worker's broker connection and listener", async () => {
    const exited = bridge.logs.find((l) => l.msg === 'worker exited' && l['signal'] === 'SIGKILL');
    assert.ok(exited !== undefined);
    assertLineShape(exited, startedAt);
    assert.equal(exited.level, 'warn');
    assert.equal(exited['role'], 'primary');
    assert.equal(exited['expected'], false);
    const slot = exited['slot'];
    assert.equal(typeof slot, 'number');
    const from = bridge.logs.indexOf(exited);
    const refork = await logAfter(bridge, from, msgIs('reforking worker'));
    assert.equal(refork.level, 'warn');
    assert.equal(refork['slot'], slot);
    assert.equal(typeof refork['delayMs'], 'number');
    const connected = await logAfter(
      bridge,
      from,
      (l) => l.msg === 'broker state' && l['state'] === 'connected' && l['worker'] === slot,
    );
    const listening = await logAfter(
      bridge,
      from,
      (l) => l.msg === 'listening' && l['worker'] === slot,
    );
    assert.equal(connected['pid'], listening['pid']);
    assert.notEqual(listening['pid'], exited['pid']);
    assert.ok(
      bridge.logs.indexOf(connected) < bridge.logs.indexOf(listening),
      'a replacement connects to the broker before it listens',
    );
  });

  it('after a reload to accessLogSampleRate 1 and debugBodies, logs one access line per request and the bodies', async () => {
    await reload({ level: 'debug', accessLogSampleRate: 1, debugBodies: true });
    const marker = `DEBUG${randomUUID().replaceAll('-', '')}`;
    const signature = `SIG-${randomUUID()}`;
    const token = `TOKEN-${randomUUID()}`;
    secrets.push(signature, token);
    const headers = {
      'Content-Type': 'application/xml',
      'X-Partner-Signature': signature,
      Authorization: `Bearer ${token}`,
    };
    const from = bridge.logs.length;
    const cases: Array<[string, string, number, string]> = [
      ['/a', `<xml><n>${marker}</n></xml>`, 202, 'a'],
      ['/a', `<xml><n>${marker}</n></xml>`, 202, 'a'],
      ['/a', `<xml><n>${marker}</n></xml>`, 202, 'a'],
      ['/a', `<xml><n>${marker}</oops></xml>`, 400, 'a'],
      ['/k', `<xml><kind>${uniqueName('nobody')}</kind></xml>`, 502, 'k'],
      [`/nowhere-${randomUUID()}`, '<xml/>', 404, 'unmatched'],
    ];
    const expected = new Map<string, { status: number; route: string }>();
    for (const [pathname, body, status, route] of cases) {
      const reply = await send(`${bridge.url}${pathname}`, { headers, body });
      assert.equal(reply.status, status, `${pathname}: ${reply.body.toString()}`);
      const requestId = header(reply, 'x-request-id');
      assert.ok(requestId !== undefined);
      expected.set(requestId, { status, route });
    }
    await waitForLogCount(
      bridge,
      (l) => bridge.logs.indexOf(l) >= from && isAccess(l),
      cases.length,
    );
    const access = bridge.logs.slice(from).filter(isAccess);
    assert.equal(access.length, cases.length);
    for (const l of access) {
      assertLineShape(l, startedAt);
      assert.equal(l['role'], 'worker');
      const want = expected.get(String(l['requestId']));
      assert.ok(want !== undefined, `access line for a request we sent: ${JSON.stringify(l)}`);
      assert.equal(l.level, want.status >= 500 ? 'warn' : 'info');
      assert.equal(l['status'], want.status);
      assert.equal(l['route'], want.route);
      assert.equal(typeof l['ms'], 'number');
      assert.equal(typeof l['bytes'], 'number');
      if (want.status >= 400) assert.match(String(l['code']), /^BRIDGE_[A-Z_]+$/);
    }
    // debugBodies: the body of each request that reached its route's mode, at debug level.
    const bodies = bridge.logs.slice(from).filter(msgIs('request body'));
    assert.equal(bodies.filter((l) => String(l['body']).includes(marker)).length, 3);
    for (const l of bodies) {
      assert.equal(l.level, 'debug');
      assert.ok(expected.has(String(l['requestId'])));
    }
    assertNoSecrets(bridge.logs, 'debug mode');
  });

  it(`samples the access log at accessLogSampleRate (${SAMPLED_RATE}), and logs the stop`, async () => {
    await reload({ level: 'info', accessLogSampleRate: SAMPLED_RATE, debugBodies: false });
    const from = bridge.logs.length;
    const result = await startLoad({
      url: `${bridge.url}/a`,
      concurrency: 4,
      maxRequests: SAMPLED_REQUESTS,
      maxDurationMs: 30_000,
      keepAlive: true,
      idPrefix: uniqueName('sampled'),
    }).done;
    assert.deepEqual(result.statuses, { '202': SAMPLED_REQUESTS }, summarize(result));
    // Every worker line about those requests precedes its own "drained" line.
    const stopFrom = bridge.logs.length;
    await bridge.stop();
    const stopping = bridge.logs.slice(stopFrom).find(msgIs('stopping'));
    assert.ok(
      stopping !== undefined && stopping['signal'] === 'SIGTERM' && stopping['role'] === 'primary',
    );
    assert.equal(bridge.logs.slice(stopFrom).filter(msgIs('drained')).length, WORKERS);
    const stopped = bridge.logs.slice(stopFrom).find(msgIs('stopped'));
    assert.ok(stopped !== undefined && stopped['clean'] === true);

    const sampled = bridge.logs.slice(from).filter(isAccess).length;
    // Binomial(200, 0.25): mean 50, sd 6.1; these bounds fail about once in a million runs.
    assert.ok(
      sampled >= 20 && sampled <= 90,
      `${sampled} access lines for ${SAMPLED_REQUESTS} requests at rate ${SAMPLED_RATE}`,
    );
    assert.equal(
      bridge.logs.slice(from).filter(msgIs('request body')).length,
      0,
      'debugBodies off again',
    );
    for (const l of bridge.logs) assertLineShape(l, startedAt);
    assertNoSecrets(bridge.logs, 'whole run');
  });
});

describe('the logger (in-process)', () => {
  function capture(level: 'debug' | 'info' = 'info'): {
    lines: Array<Record<string, unknown>>;
    log: ReturnType<typeof createLogger>;
  } {
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger({ role: 'worker', worker: 3 }, level, (line) => {
      assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), 'one line per record');
      lines.push(JSON.parse(line) as Record<string, unknown>); // the logger writes one JSON object per line
    });
    return { lines, log };
  }

  it('masks AMQP URL passwords anywhere: message, fields, nested values, errors and their causes', () => {
    const { lines, log } = capture();
    const err = new Error('connect amqp://bridge:s3cret-1@mq:5672/ failed', {
      cause: new Error('inner amqps://bridge:s3cret-2@mq2/'),
    });
    log.warn('broker amqp://bridge:s3cret-3@mq/ down', {
      err,
      urls: ['amqp://bridge:s3cret-4@a/', 'amqp://bridge:s3cret-5@b/'],
      problems: [{ path: 'amqp.urls[0]', message: 'bad amqp://bridge:s3cret-6@c/' }],
      info: { slot: 1, err: new Error('nested amqp://bridge:s3cret-7@d/') },
    });
    const text = JSON.stringify(lines);
    assert.doesNotMatch(text, /s3cret/);
    assert.match(text, /amqp:\/\/bridge:\*\*\*@mq:5672\//);
    const line = lines[0];
    assert.ok(line !== undefined);
    assert.deepEqual(Object.keys(line).slice(0, 5), ['time', 'level', 'pid', 'role', 'worker']);
    assert.equal(line['msg'], 'broker amqp://bridge:***@mq/ down');
    assert.deepEqual(line['urls'], ['amqp://bridge:***@a/', 'amqp://bridge:***@b/']);
    const e = line['err'];
    assert.ok(typeof e === 'object' && e !== null && 'cause' in e && 'type' in e);
    assert.equal(e.type, 'Error');
    const nested = line['info'];
    assert.ok(
      typeof nested === 'object' && nested !== null && 'err' in nested,
      'errors nested in objects keep their message',
    );
    assert.match(JSON.stringify(nested.err), /nested amqp:\/\/bridge:\*\*\*@d\//);
  });

  it('replaces Authorization, cookies, API keys, tokens and signature headers whole, at any depth', () => {
    const { lines, log } = capture('debug');
    log.debug('headers', {
      authorization: 'Bearer abc',
      headers: {
        Authorization: 'Basic dXNlcjpwYXNz',
        'Proxy-Authorization': 'Basic eA==',
        Cookie: 'session=1',
        'x-api-key': 'k-1',
        'X-Partner-Signature': 'sig-1',
        'x-hub-signature-256': 'sha256=abc',
        'wechatpay-signature': 'w-1',
        'x-auth-token': 't-1',
        'content-type': 'application/xml',
      },
    });
    const line = lines[0];
    assert.ok(line !== undefined);
    assert.equal(line['authorization'], '[redacted]');
    assert.deepEqual(line['headers'], {
      Authorization: '[redacted]',
      'Proxy-Authorization': '[redacted]',
      Cookie: '[redacted]',
      'x-api-key': '[redacted]',
      'X-Partner-Signature': '[redacted]',
      'x-hub-signature-256': '[redacted]',
      'wechatpay-signature': '[redacted]',
      'x-auth-token': '[redacted]',
      'content-type': 'application/xml',
    });
  });

  it('drops lines below the configured level and carries child bindings', () => {
    const { lines, log } = capture('info');
    log.debug('hidden');
    log.child({ requestId: 'r-1' }).info('shown');
    assert.deepEqual(
      lines.map((l) => [l['level'], l['msg'], l['requestId'], l['worker']]),
      [['info', 'shown', 'r-1', 3]],
    );
  });
});
