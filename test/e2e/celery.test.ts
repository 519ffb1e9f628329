/** E2E, celery mode against a real Celery 5 worker (rpc:// backend): results, failures, timeouts, fire-and-forget, and the raw protocol 2 message. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ConsumeMessage, GetMessage } from 'amqplib';
import { baseConfig, startBridge, type RunningBridge } from '../helpers/bridge.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import {
  celeryReadsInstant,
  startCeleryWorker,
  type CeleryWorker,
} from '../helpers/celery-worker.js';
import {
  assertProblem,
  assertRequestId,
  header,
  isUuid,
  send,
  type Reply,
} from '../helpers/publish-http.js';

const CJK_ORDER = '<order><名前>山田太郎</名前><note>支付测试 ✓</note></order>';
const GBK_DECL = '<?xml version="1.0" encoding="GBK"?>';
/** "山田太郎 支付测试" in GBK (from Python's str.encode('gbk')). */
const GBK_TEXT_BYTES = [
  0xc9, 0xbd, 0xcc, 0xef, 0xcc, 0xab, 0xc0, 0xc9, 0x20, 0xd6, 0xa7, 0xb8, 0xb6, 0xb2, 0xe2, 0xca,
  0xd4,
];
const GBK_TEXT = '山田太郎 支付测试';
const EMBED = { callbacks: null, errbacks: null, chain: null, chord: null };
const IDLE_TIMEOUT_MS = 1500;
const XML = { 'Content-Type': 'application/xml' } as const;

/** The fields of api.core.main's reply, unescaped (xml.sax.saxutils.escape: &, <, >). */
function mainReply(text: string): {
  root: string;
  len: number;
  q: string;
  h: string;
  body: string;
} {
  const field = (name: string): string => {
    const m = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(text);
    assert.ok(
      m?.[1] !== undefined || text.includes(`<${name}></${name}>`),
      `no <${name}> in ${text}`,
    );
    return (m?.[1] ?? '').replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&');
  };
  return {
    root: field('root'),
    len: Number(field('len')),
    q: field('q'),
    h: field('h'),
    body: field('body'),
  };
}

function problemCode(reply: Reply): unknown {
  const parsed: unknown = JSON.parse(reply.body.toString('utf8'));
  assert.ok(typeof parsed === 'object' && parsed !== null);
  return (parsed as Record<string, unknown>)['code']; // narrowed to an object just above
}

function taskIdOf(reply: Reply): string {
  assert.equal(reply.status, 202, reply.body.toString('utf8'));
  assert.equal(header(reply, 'content-type'), 'application/json');
  const parsed: unknown = JSON.parse(reply.body.toString('utf8'));
  assert.ok(
    typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed),
    'a JSON object',
  );
  const keys = Object.keys(parsed);
  assert.deepEqual(keys, ['task_id']);
  const id: unknown = (parsed as Record<string, unknown>)['task_id']; // narrowed to an object just above
  assert.ok(typeof id === 'string' && isUuid(id), `task_id is a UUID: ${String(id)}`);
  return id;
}

/** The one message waiting in `queue` (basic.get), failing when there is none. */
/**
 * Consumes the first message that reaches `queue`. Used for task messages that carry an AMQP
 * expiration (= the route's timeoutMs): they must be read while the request is still waiting.
 */
async function firstDelivery(broker: TestBroker, queue: string): Promise<ConsumeMessage> {
  const channel = broker.channel;
  let tag = '';
  const msg = await new Promise<ConsumeMessage>((resolve) => {
    void channel
      .consume(queue, (m) => m && resolve(m), { noAck: true })
      .then((ok) => {
        tag = ok.consumerTag;
      });
  });
  await channel.cancel(tag);
  return msg;
}

async function takeOne(broker: TestBroker, queue: string): Promise<GetMessage> {
  const msg = await broker.channel.get(queue, { noAck: true });
  assert.ok(msg !== false, `no message in ${queue}`);
  assert.equal(msg.fields.messageCount, 0, `more than one message in ${queue}`);
  return msg;
}

/** Resolves once `file` has a line equal to `line`; fs.watch on its folder, bounded by timeoutMs. */
function waitForFileLine(file: string, line: string, timeoutMs: number): Promise<void> {
  const has = (): boolean => {
    try {
      return readFileSync(file, 'utf8').split('\n').includes(line);
    } catch {
      return false;
    }
  };
  return new Promise((resolve, reject) => {
    const watcher = watch(path.dirname(file), () => {
      if (has()) finish();
    });
    const timer = setTimeout(
      () => finish(new Error(`${file} got no line ${line} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      watcher.close();
      if (err) reject(err);
      else resolve();
    };
    // The write may have happened before the watch started.
    if (has()) finish();
  });
}

describe('celery mode against a real Celery worker', { timeout: 90_000 }, () => {
  // One queue per test; the worker consumes the first five, nobody consumes the idle ones.
  const q = {
    main: uniqueName('cel-main'),
    json: uniqueName('cel-json'),
    fail: uniqueName('cel-fail'),
    slow: uniqueName('cel-slow'),
    record: uniqueName('cel-record'),
    idleWait: uniqueName('cel-idle-wait'),
    idleNoWait: uniqueName('cel-idle-nowait'),
  };
  const consumed = [q.main, q.json, q.fail, q.slow, q.record];
  const recordDir = mkdtempSync(path.join(tmpdir(), 'celery-record-'));
  const recordFile = path.join(recordDir, 'task-ids.txt');
  let broker: TestBroker | undefined;
  let bridge: RunningBridge | undefined;
  let worker: CeleryWorker | undefined;

  const running = (): { broker: TestBroker; bridge: RunningBridge; worker: CeleryWorker } => {
    assert.ok(broker && bridge && worker, 'setup failed');
    return { broker, bridge, worker };
  };

  before(async () => {
    broker = await openBroker();
    const route = (
      p: string,
      task: string,
      queue: string,
      extra: Record<string, unknown> = {},
    ) => ({
      path: p,
      mode: 'celery',
      task,
      queue,
      wait: true,
      timeoutMs: 10_000,
      ...extra,
    });
    const routes = [
      route('/api/core', 'api.core.main', q.main),
      route('/api/json', 'api.core.json', q.json),
      route('/api/fail', 'api.core.fail', q.fail),
      route('/api/slow', 'api.core.slow', q.slow, { timeoutMs: 1000 }),
      route('/api/record', 'api.core.record', q.record, { wait: false }),
      route('/inspect/wait', 'api.core.main', q.idleWait, { timeoutMs: IDLE_TIMEOUT_MS }),
      route('/inspect/nowait', 'api.core.record', q.idleNoWait, { wait: false }),
    ];
    // Both declare the same queues and exchanges (Celery's defaults), so they may start together.
    const [w, b] = await Promise.allSettled([
      startCeleryWorker({ queues: consumed, env: { BRIDGE_TEST_RECORD: recordFile } }),
      startBridge(baseConfig(routes)),
    ]);
    if (w.status === 'fulfilled') worker = w.value;
    if (b.status === 'fulfilled') bridge = b.value;
    if (w.status === 'rejected') throw w.reason;
    if (b.status === 'rejected') throw b.reason;
  });

  after(async () => {
    await Promise.all([worker?.stop(), bridge?.stop()]);
    if (broker) {
      // The bridge declared each queue and a durable direct exchange of the same name.
      const ch = await broker.connection.createChannel();
      for (const name of Object.values(q)) {
        await ch.deleteQueue(name);
        await ch.deleteExchange(name);
      }
      await broker.close();
    }
    rmSync(recordDir, { recursive: true, force: true });
  });

  it('wait: SUCCESS is 200 application/xml with the result; the task got ({headers}, {query}, body) with CJK intact', async () => {
    // task_track_started makes Celery send STARTED before SUCCESS: a 200 with the result means it was skipped.
    const { bridge } = running();
    const reply = await send(`${bridge.url}/api/core?q=abc&q=ignored`, {
      headers: { ...XML, 'X-Partner': 'acme' },
      body: CJK_ORDER,
    });
    const text = reply.body.toString('utf8');
    assert.equal(reply.status, 200, text);
    assert.match(header(reply, 'content-type') ?? '', /^application\/xml\b/);
    assertRequestId(reply);
    const got = mainReply(text);
    assert.equal(got.body, CJK_ORDER);
    assert.equal(got.root, 'order');
    assert.equal(got.len, [...CJK_ORDER].length, 'Python len() of the str: characters, not bytes');
    assert.equal(got.q, 'abc', 'the first value of a repeated query parameter');
    assert.equal(got.h, 'acme', 'header names arrive lower-cased');
  });

  it('wait: a GBK-declared body reaches the task as the right Unicode text', async () => {
    const { bridge } = running();
    const body = Buffer.concat([
      Buffer.from(`${GBK_DECL}<order><note>`, 'ascii'),
      Buffer.from(GBK_TEXT_BYTES),
      Buffer.from('</note></order>', 'ascii'),
    ]);
    const reply = await send(`${bridge.url}/api/core`, { headers: XML, body });
    const text = reply.body.toString('utf8');
    assert.equal(reply.status, 200, text);
    const expected = `${GBK_DECL}<order><note>${GBK_TEXT}</note></order>`;
    const got = mainReply(text);
    assert.equal(got.body, expected);
    assert.equal(got.len, [...expected].length);
    assert.equal(got.q, '');
    assert.ok(!text.includes('\ufffd'), 'no replacement characters');
  });

  it('wait: a dict result is 200 application/json', async () => {
    const { bridge } = running();
    const reply = await send(`${bridge.url}/api/json`, { headers: XML, body: '<x/>' });
    assert.equal(reply.status, 200, reply.body.toString('utf8'));
    assert.equal(header(reply, 'content-type'), 'application/json');
    assert.deepEqual(JSON.parse(reply.body.toString('utf8')), { ok: true, n: 3 });
  });

  it('wait: FAILURE is 502 problem+json naming the exception type, without the traceback', async () => {
    const { bridge } = running();
    const reply = await send(`${bridge.url}/api/fail`, { headers: XML, body: '<x/>' });
    const problem = assertProblem(reply, 502, 'FAILURE');
    assert.equal(problemCode(reply), 'BRIDGE_TASK_FAILED');
    assert.match(problem.detail, /\bValueError\b/);
    const text = reply.body.toString('utf8');
    assert.doesNotMatch(text, /Traceback|bridge_tasks\.py|File "/);
  });

  it('wait: no result within timeoutMs is 504, and Celery did receive the task', async () => {
    const { bridge, worker } = running();
    const reply = await send(`${bridge.url}/api/slow`, { headers: XML, body: '<x/>' });
    assertProblem(reply, 504, 'slow task');
    assert.equal(problemCode(reply), 'BRIDGE_REPLY_TIMEOUT');
    await worker.waitForLine((l) => /Task api\.core\.slow\[[0-9a-f-]{36}\] received/.test(l));
  });

  it('the task message is protocol 2 as Celery 5 sends it, with expires = publish time + timeoutMs', async () => {
    const { bridge, broker } = running();
    const t0 = Date.now();
    const delivered = firstDelivery(broker, q.idleWait);
    const credentials = {
      Authorization: 'Bearer s3cr3t-token',
      'Proxy-Authorization': 'Basic cHJveHk6cHc=',
      Cookie: 'session=s3cr3t-cookie',
    };
    const reply = await send(`${bridge.url}/inspect/wait?q=abc&lang=zh`, {
      headers: { ...XML, 'X-Partner': 'acme', ...credentials },
      body: CJK_ORDER,
    });
    const t1 = Date.now();
    // This test's consumer takes the task instead of a Celery worker, so the bridge times out.
    assertProblem(reply, 504, 'no Celery worker consumes the idle queue');
    const msg = await delivered;
    // As Celery's send_task does with expires: the broker drops the task once the caller is gone.
    assert.equal(msg.properties.expiration, String(IDLE_TIMEOUT_MS));

    // Celery's defaults: the exchange named like the queue, the queue name as routing key.
    assert.equal(msg.fields.exchange, q.idleWait);
    assert.equal(msg.fields.routingKey, q.idleWait);

    const p = msg.properties;
    const h: Record<string, unknown> = { ...p.headers };
    const id = h['id'];
    assert.ok(typeof id === 'string' && isUuid(id), `id: ${String(id)}`);
    assert.equal(h['lang'], 'py');
    assert.equal(h['task'], 'api.core.main');
    assert.equal(h['root_id'], id);
    assert.equal(h['parent_id'], null);
    assert.equal(h['group'], null);
    assert.equal(h['retries'], 0);
    assert.equal(h['eta'], null);
    assert.deepEqual(h['timelimit'], [null, null]);
    assert.equal(typeof h['argsrepr'], 'string');
    assert.equal(typeof h['kwargsrepr'], 'string');
    assert.ok(typeof h['origin'] === 'string' && h['origin'].length > 0, 'origin');
    assert.equal(h['ignore_result'], false);

    const expires = h['expires'];
    assert.ok(typeof expires === 'string', `expires: ${String(expires)}`);
    assert.match(
      expires,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/,
      'an ISO 8601 timestamp',
    );
    const at = Date.parse(expires);
    assert.ok(
      at >= t0 + IDLE_TIMEOUT_MS && at <= t1 + IDLE_TIMEOUT_MS,
      `expires ${expires} is not publish time + ${IDLE_TIMEOUT_MS} ms`,
    );
    // The worker must read the same instant, or it discards tasks before the bridge gives up.
    const celeryAt = await celeryReadsInstant(expires);
    assert.ok(
      Math.abs(celeryAt - at) < 1,
      `Celery reads expires ${expires} as ${new Date(celeryAt).toISOString()} (${(celeryAt - at).toFixed(3)} ms off)`,
    );

    assert.equal(p.correlationId, id);
    assert.ok(
      typeof p.replyTo === 'string' && p.replyTo.startsWith('amq.rabbitmq.reply-to'),
      `reply_to: ${String(p.replyTo)}`,
    );
    assert.equal(p.contentType, 'application/json');
    assert.equal(p.contentEncoding, 'utf-8');
    assert.equal(p.deliveryMode, 2);

    const body: unknown = JSON.parse(msg.content.toString('utf8'));
    assert.ok(Array.isArray(body) && body.length === 3, 'body is [args, kwargs, embed]');
    const [args, kwargs, embed] = body as [unknown, unknown, unknown]; // length checked just above
    assert.deepEqual(kwargs, {});
    assert.deepEqual(embed, EMBED);
    assert.ok(Array.isArray(args) && args.length === 3, 'args is [headers, query, body]');
    const [headers, query, text] = args as [unknown, unknown, unknown]; // length checked just above
    assert.ok(
      typeof headers === 'object' && headers !== null && !Array.isArray(headers),
      'headers is a dict',
    );
    const hd = headers as Record<string, unknown>; // narrowed to an object just above
    assert.equal(hd['x-partner'], 'acme');
    assert.equal(hd['content-type'], 'application/xml');
    // Credentials never travel: not in the task's args, not in the argsrepr monitoring shows.
    for (const name of ['authorization', 'proxy-authorization', 'cookie'])
      assert.equal(hd[name], undefined, `${name} in the task's headers`);
    for (const secret of ['s3cr3t', 'cHJveHk6cHc=']) {
      assert.ok(
        !msg.content.toString('utf8').includes(secret),
        `${secret} in the task message body`,
      );
      assert.ok(!String(h['argsrepr']).includes(secret), `${secret} in argsrepr`);
    }
    assert.deepEqual(query, { q: 'abc', lang: 'zh' });
    assert.equal(text, CJK_ORDER);
  });

  it('wait: false is 202 {"task_id"} once confirmed, the task really runs, and no result is asked for', async () => {
    const { bridge, broker, worker } = running();
    const reply = await send(`${bridge.url}/api/record`, { headers: XML, body: '<event/>' });
    const id = taskIdOf(reply);
    assertRequestId(reply);
    await waitForFileLine(recordFile, id, 15_000);
    await worker.waitForLine((l) => l.includes(`Task api.core.record[${id}] succeeded`));

    // The same route shape towards a queue nobody consumes, to read what was sent.
    const idle = await send(`${bridge.url}/inspect/nowait`, { headers: XML, body: '<event/>' });
    const idleId = taskIdOf(idle);
    const msg = await takeOne(broker, q.idleNoWait);
    const h: Record<string, unknown> = { ...msg.properties.headers };
    assert.equal(h['id'], idleId);
    assert.equal(h['task'], 'api.core.record');
    assert.equal(h['ignore_result'], true);
    assert.equal(h['expires'], null);
    assert.equal(msg.properties.correlationId, idleId);
    assert.ok(
      msg.properties.replyTo === '' || msg.properties.replyTo === undefined,
      `reply_to: ${String(msg.properties.replyTo)}`,
    );
    assert.equal(msg.properties.deliveryMode, 2);
  });

  it('Celery logged no complaint about any message (only the expected api.core.fail error)', () => {
    const { worker } = running();
    // Celery 5.2's thread pool logs the failure as "raised unexpected: ExceptionWithTraceback()".
    const expected = /Task api\.core\.fail\[[0-9a-f-]{36}\] raised unexpected: /;
    const complaints = worker
      .lines()
      .filter((l) => /: (WARNING|ERROR|CRITICAL)\/|Discarding|invalid|unregistered/i.test(l))
      .filter((l) => !expected.test(l));
    assert.deepEqual(complaints, [], worker.output().slice(-4000));
    assert.ok(
      worker.lines().some((l) => expected.test(l)),
      'the failing task was logged',
    );
  });
});
