/** Pure Celery pieces (src/worker/amqp/celery.ts): protocol 2 task messages, query params, rpc:// results, Celery's default topology. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConsumeMessage, MessageProperties } from 'amqplib';
import {
  celeryTaskFields,
  celeryTemplate,
  interpretCeleryResult,
  queryParams,
  withCeleryTopology,
  type CeleryTaskInput,
} from '../../src/worker/amqp/celery.js';
import type { CeleryRouteConfig } from '../../src/shared/config-schema.js';
import { decodePublish, type DecodedPublish } from '../helpers/amqp-frames.js';
import { validateConfig } from '../../src/shared/config.js';
import { BridgeError } from '../../src/shared/errors.js';

const ID = '0b5c6a8e-4e0f-4b7e-9d55-3f2a1c0d9e11';
const EMBED = { callbacks: null, errbacks: null, chain: null, chord: null };

function task(over: Partial<CeleryTaskInput> = {}): CeleryTaskInput {
  return {
    id: ID,
    args: [{ 'x-partner': 'acme' }, { q: 'abc' }, '<order><名前>山田太郎</名前></order>'],
    requestId: 'req-1',
    messageId: 'msg-1',
    routingKey: 'celery',
    expires: '2030-01-01T00:00:05.000000+00:00',
    partner: undefined,
    ...over,
  };
}

function celeryRoute(wait: boolean): CeleryRouteConfig {
  const [route] = validateConfig({
    routes: [{ path: '/api/core', mode: 'celery', task: 'api.core.main', wait, timeoutMs: 5000 }],
  }).routes;
  return route as CeleryRouteConfig; // the celery route just validated
}

/** The task message as it goes on the wire, read back by amqplib's parser. */
function wire(input: CeleryTaskInput, wait = input.expires !== undefined): DecodedPublish {
  return decodePublish(
    celeryTemplate(celeryRoute(wait), 'gen123@host').encode(1, 131072, celeryTaskFields(input)),
  );
}

/** An rpc:// result message as Celery's backend sends it (JSON body, correlation_id = task id). */
function result(body: string | Record<string, unknown>): ConsumeMessage {
  const properties: MessageProperties = {
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: {},
    deliveryMode: 2,
    priority: 0,
    correlationId: ID,
    replyTo: undefined,
    expiration: undefined,
    messageId: undefined,
    timestamp: undefined,
    type: undefined,
    userId: undefined,
    appId: undefined,
    clusterId: undefined,
  };
  return {
    content: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8'),
    fields: {
      deliveryTag: 1,
      redelivered: false,
      exchange: '',
      routingKey: 'amq.rabbitmq.reply-to.x',
      consumerTag: 'c',
    },
    properties,
  };
}

function celeryResult(
  status: string,
  value: unknown,
  traceback: string | null = null,
): ConsumeMessage {
  return result({
    task_id: ID,
    status,
    result: value,
    traceback,
    children: [],
    date_done: '2030-01-01T00:00:01.000000',
  });
}

/** Runs `fn`, which must throw a BridgeError, and returns it. */
function bridgeErrorOf(fn: () => unknown): BridgeError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BridgeError, `expected a BridgeError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a BridgeError');
}

describe('celery task messages', { timeout: 10_000 }, () => {
  it('set every protocol 2 header the way Celery 5 as_task_v2 does', () => {
    assert.deepEqual(wire(task()).properties.headers, {
      lang: 'py',
      task: 'api.core.main',
      id: ID,
      shadow: null,
      eta: null,
      expires: '2030-01-01T00:00:05.000000+00:00',
      group: null,
      group_index: null,
      retries: 0,
      timelimit: [null, null],
      root_id: ID,
      parent_id: null,
      argsrepr: JSON.stringify(task().args),
      kwargsrepr: '{}',
      origin: 'gen123@host',
      ignore_result: false,
      'x-request-id': 'req-1',
    });
  });

  it('are persistent, mandatory JSON with correlation_id = task id, the reply_to and the timeout as expiration', () => {
    const m = wire(task());
    assert.equal(m.properties['deliveryMode'], 2);
    assert.equal(m.method['mandatory'], true);
    assert.equal(m.method['exchange'], 'celery');
    assert.equal(m.method['routingKey'], 'celery');
    assert.equal(m.properties['contentType'], 'application/json');
    assert.equal(m.properties['contentEncoding'], 'utf-8');
    assert.equal(m.properties['correlationId'], ID);
    assert.equal(m.properties['messageId'], 'msg-1');
    assert.equal(m.properties['replyTo'], 'amq.rabbitmq.reply-to');
    assert.equal(m.properties['expiration'], '5000');
  });

  it('encode the body as UTF-8 JSON [args, kwargs, embed]', () => {
    const input = task();
    const m = wire(input);
    assert.deepEqual(JSON.parse(m.body.toString('utf8')), [input.args, {}, EMBED]);
    // Bytes are UTF-8, not JSON \u escapes of the CJK text: Celery decodes with content_encoding.
    assert.ok(m.body.includes(Buffer.from('山田太郎', 'utf8')));
  });

  it('ask for no result, and set no expiry, when the route does not wait', () => {
    const m = wire(task({ expires: undefined }), false);
    assert.equal(m.properties['replyTo'], '');
    assert.equal(m.properties['expiration'], undefined);
    assert.equal(m.properties.headers?.['ignore_result'], true);
    assert.equal(m.properties.headers?.['expires'], null);
  });

  it("cut argsrepr at Celery's 1024 characters, keeping the full args in the body", () => {
    const big = 'x'.repeat(5000);
    const m = wire(task({ args: [{}, {}, big] }));
    const argsrepr: unknown = m.properties.headers?.['argsrepr'];
    assert.equal(typeof argsrepr, 'string');
    assert.equal(String(argsrepr).length, 1024);
    assert.ok(String(argsrepr).endsWith('...'));
    const body: unknown = JSON.parse(m.body.toString('utf8'));
    assert.ok(Array.isArray(body));
    assert.deepEqual(body[0], [{}, {}, big]);
  });
});

describe('queryParams', { timeout: 10_000 }, () => {
  it('keeps the first value of a repeated name', () => {
    assert.deepEqual(queryParams('q=abc&q=def&n=1'), { q: 'abc', n: '1' });
  });

  it('percent- and plus-decodes names and values', () => {
    assert.deepEqual(queryParams('%E5%90%8D=%E5%B1%B1%E7%94%B0+%E5%A4%AA%E9%83%8E&a%26b=c%3Dd'), {
      名: '山田 太郎',
      'a&b': 'c=d',
    });
  });

  it('reads a bare name as an empty value and an empty query as no params', () => {
    assert.deepEqual(queryParams('flag&x='), { flag: '', x: '' });
    assert.deepEqual(queryParams(''), {});
  });
});

describe('interpretCeleryResult', { timeout: 10_000 }, () => {
  it('returns the result of SUCCESS as is: a string, a dict, null', () => {
    assert.deepEqual(interpretCeleryResult(celeryResult('SUCCESS', '<ok/>')), { result: '<ok/>' });
    assert.deepEqual(interpretCeleryResult(celeryResult('SUCCESS', { ok: true, n: 3 })), {
      result: { ok: true, n: 3 },
    });
    assert.deepEqual(interpretCeleryResult(celeryResult('SUCCESS', null)), { result: null });
  });

  it('fails FAILURE with BRIDGE_TASK_FAILED naming exc_type, never the traceback', () => {
    const traceback =
      'Traceback (most recent call last):\n  File "/srv/app/tasks.py", line 9, in fail\nValueError: secret-detail';
    const err = bridgeErrorOf(() =>
      interpretCeleryResult(
        celeryResult(
          'FAILURE',
          { exc_type: 'ValueError', exc_message: ['secret-detail'], exc_module: 'builtins' },
          traceback,
        ),
      ),
    );
    assert.equal(err.code, 'BRIDGE_TASK_FAILED');
    assert.equal(err.status, 502);
    assert.match(err.message, /\bValueError\b/);
    assert.doesNotMatch(err.message, /Traceback|tasks\.py|secret-detail/);
  });

  it('fails FAILURE without an exc_type too', () => {
    const err = bridgeErrorOf(() => interpretCeleryResult(celeryResult('FAILURE', 'boom')));
    assert.equal(err.code, 'BRIDGE_TASK_FAILED');
    assert.equal(err.status, 502);
  });

  it('fails REVOKED with BRIDGE_TASK_FAILED', () => {
    const err = bridgeErrorOf(() =>
      interpretCeleryResult(
        celeryResult('REVOKED', {
          exc_type: 'TaskRevokedError',
          exc_message: ['expired'],
          exc_module: 'celery.exceptions',
        }),
      ),
    );
    assert.equal(err.code, 'BRIDGE_TASK_FAILED');
    assert.equal(err.status, 502);
  });

  it('skips the interim states STARTED, RETRY, RECEIVED and PENDING', () => {
    assert.equal(
      interpretCeleryResult(celeryResult('STARTED', { pid: 1, hostname: 'w@h' })),
      undefined,
    );
    assert.equal(
      interpretCeleryResult(
        celeryResult('RETRY', {
          exc_type: 'Retry',
          exc_message: [],
          exc_module: 'celery.exceptions',
        }),
      ),
      undefined,
    );
    assert.equal(interpretCeleryResult(celeryResult('RECEIVED', null)), undefined);
    assert.equal(interpretCeleryResult(celeryResult('PENDING', null)), undefined);
  });

  it('fails a non-JSON result (pickle serializer) and one without a status with BRIDGE_BAD_REPLY', () => {
    for (const body of ['\x80\x04\x95 not json', '<xml/>', '']) {
      const err = bridgeErrorOf(() => interpretCeleryResult(result(body)));
      assert.equal(err.code, 'BRIDGE_BAD_REPLY', JSON.stringify(body));
      assert.equal(err.status, 502);
    }
    for (const body of ['[]', '"SUCCESS"', '{"result": 1}', '{"status": 1}']) {
      assert.equal(
        bridgeErrorOf(() => interpretCeleryResult(result(body))).code,
        'BRIDGE_BAD_REPLY',
        body,
      );
    }
  });
});

describe('withCeleryTopology', { timeout: 10_000 }, () => {
  const config = (routes: unknown[], topology: unknown = {}) =>
    validateConfig({ routes, topology });

  it("adds Celery's defaults: a durable direct exchange named like the queue, the durable queue, the binding", () => {
    const c = config([{ path: '/api/core', mode: 'celery', task: 'api.core.main', queue: 'jobs' }]);
    assert.deepEqual(withCeleryTopology(c.topology, c.routes), {
      exchanges: [
        {
          name: 'jobs',
          type: 'direct',
          durable: true,
          autoDelete: false,
          internal: false,
          arguments: {},
        },
      ],
      queues: [{ name: 'jobs', durable: true, autoDelete: false, arguments: {} }],
      bindings: [{ queue: 'jobs', exchange: 'jobs', routingKey: 'jobs', arguments: {} }],
    });
  });

  it("uses the route's exchange and routing key when given, and no exchange for the default ''", () => {
    const c = config([
      {
        path: '/a',
        mode: 'celery',
        task: 't.a',
        queue: 'qa',
        exchange: 'tasks',
        routingKey: 'rk.a',
      },
      { path: '/b', mode: 'celery', task: 't.b', queue: 'qb', exchange: '' },
    ]);
    const t = withCeleryTopology(c.topology, c.routes);
    assert.deepEqual(
      t.exchanges.map((e) => e.name),
      ['tasks'],
    );
    assert.deepEqual(
      t.queues.map((q) => q.name),
      ['qa', 'qb'],
    );
    assert.deepEqual(
      t.bindings.map((b) => [b.queue, b.exchange, b.routingKey]),
      [['qa', 'tasks', 'rk.a']],
    );
  });

  it('keeps what the topology already declares (a quorum queue) and adds nothing twice', () => {
    const c = config(
      [
        { path: '/a', mode: 'celery', task: 't.a', queue: 'jobs' },
        { path: '/b', mode: 'celery', task: 't.b', queue: 'jobs' },
        { path: '/p', mode: 'publish', exchange: 'other', routingKey: 'x' },
      ],
      {
        exchanges: [{ name: 'jobs', type: 'direct' }],
        queues: [{ name: 'jobs', arguments: { 'x-queue-type': 'quorum' } }],
        bindings: [{ queue: 'jobs', exchange: 'jobs', routingKey: 'jobs' }],
      },
    );
    const t = withCeleryTopology(c.topology, c.routes);
    assert.equal(t.exchanges.length, 1);
    assert.deepEqual(t.queues, [
      { name: 'jobs', durable: true, autoDelete: false, arguments: { 'x-queue-type': 'quorum' } },
    ]);
    assert.equal(t.bindings.length, 1);
  });

  it('adds nothing for publish/rpc routes and does not modify its input', () => {
    const c = config([
      { path: '/p', mode: 'publish', routingKey: 'x' },
      { path: '/r', mode: 'rpc', routingKey: 'y' },
    ]);
    assert.deepEqual(withCeleryTopology(c.topology, c.routes), {
      exchanges: [],
      queues: [],
      bindings: [],
    });
    const d = config([{ path: '/a', mode: 'celery', task: 't.a', queue: 'jobs' }]);
    const before = JSON.stringify(d.topology);
    withCeleryTopology(d.topology, d.routes);
    assert.equal(JSON.stringify(d.topology), before);
  });
});
