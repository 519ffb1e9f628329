/** Config loading and validation (src/shared/config.ts, config-schema.ts): defaults, every problem with its path, env overrides. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  applyEnvOverrides,
  loadConfig,
  parseConfigText,
  validateConfig,
} from '../../src/shared/config.js';
import type { ConfigProblem } from '../../src/shared/errors.js';
import { PROJECT_ROOT } from '../helpers/bridge.js';
import { MANY_PROBLEMS_PATHS } from '../fixtures/configs/many-problems.js';
import { problemsOf } from '../helpers/config-problems.js';

const FIXTURES = path.join(PROJECT_ROOT, 'test', 'fixtures', 'configs');
const fixture = (name: string): string => path.join(FIXTURES, name);

/** No BRIDGE_* variable of the test runner's environment may leak into these tests. */
const NO_ENV: Readonly<Record<string, string | undefined>> = {};

const PUBLISH = { path: '/a', mode: 'publish', routingKey: 'a' };

function pathsOf(problems: readonly ConfigProblem[]): string[] {
  return problems.map((p) => p.path);
}

function problemAt(problems: readonly ConfigProblem[], at: string): ConfigProblem {
  const found = problems.find((p) => p.path === at);
  assert.ok(found, `no problem reported at ${at}; got ${JSON.stringify(problems)}`);
  return found;
}

/** A temp dir removed after the test, for configs written on the fly. */
function tempFile(t: { after: (fn: () => void) => void }, name: string, text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'config-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('config defaults', { timeout: 10_000 }, () => {
  it("fills in the contract's default for every omitted key", () => {
    const config = validateConfig({ routes: [PUBLISH] });
    assert.equal(config.listen, '0.0.0.0:8080');
    assert.equal(config.admin, '127.0.0.1:9464');
    assert.equal(config.workers, 'auto');
    assert.equal(config.shutdownTimeoutMs, 10_000);
    assert.deepEqual(config.amqp.urls, ['amqp://guest:guest@127.0.0.1:5672/']);
    assert.equal(config.amqp.heartbeatSeconds, 10);
    assert.equal(config.amqp.maxInFlight, 10_000);
    assert.equal(config.amqp.confirmTimeoutMs, 5000);
    assert.equal(config.limits.maxBodyBytes, 1_048_576);
    assert.equal(config.limits.maxXmlDepth, 256);
    assert.equal(config.limits.allowDoctype, false);
    assert.equal(config.limits.requestTimeoutMs, 10_000);
    assert.deepEqual(config.topology, { exchanges: [], queues: [], bindings: [] });
  });

  it('fills in partial sections key by key', () => {
    const config = validateConfig({
      amqp: { maxInFlight: 7 },
      limits: { allowDoctype: true },
      routes: [PUBLISH],
    });
    assert.equal(config.amqp.maxInFlight, 7);
    assert.equal(config.amqp.confirmTimeoutMs, 5000);
    assert.deepEqual(config.amqp.urls, ['amqp://guest:guest@127.0.0.1:5672/']);
    assert.equal(config.limits.allowDoctype, true);
    assert.equal(config.limits.maxBodyBytes, 1_048_576);
  });

  it('fills in route defaults per mode', () => {
    const config = validateConfig({
      routes: [
        { path: '/p', mode: 'publish', routingKey: 'p' },
        { path: '/p2', mode: 'publish', routingKey: 'p', response: {} },
        { path: '/r', mode: 'rpc', routingKey: 'r' },
        { path: '/c', mode: 'celery', task: 'api.core.main' },
      ],
    });
    const [publish, publishWithResponse, rpc, celery] = config.routes;
    assert.deepEqual(publish, {
      path: '/p',
      mode: 'publish',
      exchange: '',
      routingKey: 'p',
      persistent: true,
      forwardHeaders: [],
    });
    assert.ok(publishWithResponse?.mode === 'publish');
    assert.deepEqual(publishWithResponse.response, { status: 202, body: '' });
    assert.deepEqual(rpc, {
      path: '/r',
      mode: 'rpc',
      exchange: '',
      routingKey: 'r',
      forwardHeaders: [],
      timeoutMs: 5000,
      persistent: false,
      replyHeaders: [],
    });
    assert.deepEqual(celery, {
      path: '/c',
      mode: 'celery',
      task: 'api.core.main',
      queue: 'celery',
      wait: true,
      timeoutMs: 5000,
      forwardHeaders: [],
    });
  });

  it('fills in topology declaration defaults and lower-cases header names', () => {
    const config = validateConfig({
      topology: {
        exchanges: [{ name: 'x', type: 'topic' }],
        queues: [{ name: 'q' }],
        bindings: [{ queue: 'q', exchange: 'x' }],
      },
      routes: [{ ...PUBLISH, forwardHeaders: ['X-Partner-Signature'] }],
    });
    assert.deepEqual(config.topology.exchanges, [
      {
        name: 'x',
        type: 'topic',
        durable: true,
        autoDelete: false,
        internal: false,
        arguments: {},
      },
    ]);
    assert.deepEqual(config.topology.queues, [
      { name: 'q', durable: true, autoDelete: false, arguments: {} },
    ]);
    assert.deepEqual(config.topology.bindings, [
      { queue: 'q', exchange: 'x', routingKey: '', arguments: {} },
    ]);
    assert.deepEqual(config.routes[0]?.forwardHeaders, ['x-partner-signature']);
  });
});

describe('valid config files', { timeout: 10_000 }, () => {
  it("accepts the contract's full example config", () => {
    const config = loadConfig(fixture('contract-example.yaml'), NO_ENV);
    assert.equal(config.listen, '0.0.0.0:8080');
    assert.equal(config.workers, 'auto');
    assert.deepEqual(config.amqp.urls, ['amqp://guest:guest@127.0.0.1:5672/']);
    assert.deepEqual(config.topology.queues[0]?.arguments, { 'x-queue-type': 'quorum' });
    assert.deepEqual(config.topology.bindings[0], {
      queue: 'wechat.notify',
      exchange: 'partners',
      routingKey: 'wechat.#',
      arguments: {},
    });
    assert.deepEqual(
      config.routes.map((r) => [r.path, r.mode]),
      [
        ['/wechat/notify', 'publish'],
        ['/orders', 'rpc'],
        ['/api/core', 'celery'],
      ],
    );
    const [wechat, orders, celery] = config.routes;
    assert.ok(wechat?.mode === 'publish');
    assert.equal(wechat.routingKey, 'wechat.{/xml/MsgType}');
    assert.deepEqual(wechat.forwardHeaders, ['x-partner-signature']);
    assert.deepEqual(wechat.response, {
      status: 200,
      contentType: 'application/xml',
      body: '<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>',
    });
    assert.ok(orders?.mode === 'rpc');
    assert.deepEqual(orders.replyHeaders, ['x-order-state']);
    assert.ok(celery?.mode === 'celery');
    assert.equal(celery.wait, true);
    assert.equal(celery.queue, 'celery');
  });

  it('accepts the repository config/example.yaml', () => {
    const config = loadConfig(path.join(PROJECT_ROOT, 'config', 'example.yaml'), NO_ENV);
    assert.ok(config.routes.length > 0);
  });

  it('accepts JSON (JSON is YAML), from a file and from text', () => {
    const config = loadConfig(fixture('valid.json'), NO_ENV);
    assert.equal(config.listen, '127.0.0.1:18080');
    assert.equal(config.workers, 2);
    assert.equal(config.routes[0]?.path, '/orders');
    const fromText = validateConfig(
      parseConfigText(JSON.stringify({ routes: [PUBLISH] }), 'inline.json'),
    );
    assert.equal(fromText.routes[0]?.path, '/a');
  });
});

describe('config problems', { timeout: 10_000 }, () => {
  it('reports every problem of a badly broken file, each with its path', () => {
    const problems = problemsOf(() => loadConfig(fixture('many-problems.yaml'), NO_ENV));
    const expected = MANY_PROBLEMS_PATHS;
    const reported = new Set(pathsOf(problems));
    for (const at of expected)
      assert.ok(reported.has(at), `missing a problem at ${at}; got ${JSON.stringify(problems)}`);
    assert.deepEqual(
      [...reported].filter((p) => !expected.includes(p)),
      [],
      'problems reported at unexpected paths',
    );
    for (const p of problems) assert.ok(p.message.trim() !== '', `empty message at ${p.path}`);
    assert.match(problemAt(problems, 'routes[1].mode').message, /publish.*rpc.*celery/);
    assert.match(problemAt(problems, 'amqp.urls[0]').message, /amqp/);
  });

  it('says what a missing or wrong value should be, in sentences', () => {
    const problems = problemsOf(() =>
      validateConfig({
        shutdownTimeoutMs: 'soon',
        workers: 0,
        routes: [
          { path: '/a', routingKey: 'k' },
          { path: '/b', mode: 'teleport', routingKey: 'k' },
        ],
      }),
    );
    assert.equal(
      problemAt(problems, 'routes[0].mode').message,
      'is required: one of publish, rpc, celery',
    );
    assert.equal(
      problemAt(problems, 'routes[1].mode').message,
      'the string "teleport" is not one of publish, rpc, celery',
    );
    assert.equal(
      problemAt(problems, 'shutdownTimeoutMs').message,
      'must be a number, not the string "soon"',
    );
    assert.equal(problemAt(problems, 'workers').message, 'must be at least 1, not number 0');
    assert.equal(
      problemAt(
        problemsOf(() => validateConfig({})),
        'routes',
      ).message,
      'is required: a list',
    );
  });

  it('reports an unknown key where it is, with the closest key the schema knows', () => {
    const problems = problemsOf(() =>
      validateConfig({
        colour: 'blue',
        amqp: { urlz: [] },
        limits: { maxBodyByte: 1 },
        routes: [PUBLISH, { ...PUBLISH, path: '/b', colour: 'red' }],
      }),
    );
    assert.equal(problemAt(problems, 'colour').message, 'unknown key');
    assert.equal(problemAt(problems, 'amqp.urlz').message, 'unknown key; did you mean urls?');
    assert.equal(
      problemAt(problems, 'limits.maxBodyByte').message,
      'unknown key; did you mean maxBodyBytes?',
    );
    assert.equal(problemAt(problems, 'routes[1].colour').message, 'unknown key');
    assert.equal(
      problemAt(
        problemsOf(() => validateConfig({ workrs: 2, routes: [PUBLISH] })),
        'workrs',
      ).message,
      'unknown key; did you mean workers?',
    );
    assert.equal(problems.length, 4, JSON.stringify(problems));
  });

  it('refuses duplicate route paths, naming the first one', () => {
    const problems = problemsOf(() =>
      validateConfig({
        routes: [PUBLISH, { ...PUBLISH, path: '/b' }, { path: '/a', mode: 'rpc', routingKey: 'r' }],
      }),
    );
    assert.match(problemAt(problems, 'routes[2].path').message, /routes\[0\]/);
  });

  it('refuses duplicate route paths even when another route is invalid', () => {
    // The operator should see every problem in one round, not a second list after fixing the first.
    const problems = problemsOf(() =>
      validateConfig({ routes: [PUBLISH, { path: '/b', mode: 'teleport' }, { ...PUBLISH }] }),
    );
    problemAt(problems, 'routes[1].mode');
    assert.match(problemAt(problems, 'routes[2].path').message, /routes\[0\]/);
  });

  it('refuses reserved forwardHeaders (cc, bcc, x-request-id) in any case', () => {
    const problems = problemsOf(() =>
      validateConfig({
        routes: [{ ...PUBLISH, forwardHeaders: ['x-ok', 'cc', 'BCC', 'X-Request-Id'] }],
      }),
    );
    assert.deepEqual(pathsOf(problems), [
      'routes[0].forwardHeaders[1]',
      'routes[0].forwardHeaders[2]',
      'routes[0].forwardHeaders[3]',
    ]);
    for (const p of problems) assert.match(p.message, /reserved/);
  });

  it('refuses routing-key placeholders that are not absolute element paths', () => {
    for (const routingKey of [
      'wechat.{xml/MsgType}',
      '{/a/@}',
      '{}',
      '{/}',
      '{/a//b}',
      'a.{/a/@b/c}',
    ]) {
      const problems = problemsOf(() => validateConfig({ routes: [{ ...PUBLISH, routingKey }] }));
      assert.deepEqual(pathsOf(problems), ['routes[0].routingKey'], routingKey);
      assert.match(problems[0]?.message ?? '', /placeholder/, routingKey);
    }
    for (const routingKey of ['{/a', 'a}']) {
      const problems = problemsOf(() => validateConfig({ routes: [{ ...PUBLISH, routingKey }] }));
      assert.deepEqual(pathsOf(problems), ['routes[0].routingKey'], routingKey);
    }
  });

  it('accepts well-formed placeholders', () => {
    const config = validateConfig({
      routes: [{ ...PUBLISH, routingKey: 'wechat.{/xml/MsgType}.{/xml/Event}.{/order/item/@sku}' }],
    });
    assert.equal(config.routes[0]?.mode, 'publish');
  });

  it('requires at least one route', () => {
    assert.deepEqual(pathsOf(problemsOf(() => validateConfig({}))), ['routes']);
    assert.deepEqual(pathsOf(problemsOf(() => validateConfig({ routes: [] }))), ['routes']);
  });

  it('refuses a document that is not a mapping', () => {
    assert.deepEqual(
      pathsOf(problemsOf(() => validateConfig(parseConfigText('- a\n- b\n', 'list.yaml')))),
      ['(root)'],
    );
  });
});

describe('YAML syntax', { timeout: 10_000 }, () => {
  it('reports syntax errors under the file name, with the line', () => {
    const file = fixture('syntax-error.yaml');
    const problems = problemsOf(() => loadConfig(file, NO_ENV));
    assert.ok(problems.length >= 1);
    for (const p of problems) {
      assert.equal(p.path, file);
      assert.match(p.message, /line \d+/);
    }
  });

  it('refuses a key given twice in one mapping', () => {
    const problems = problemsOf(() =>
      parseConfigText('listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n', 'dup.yaml'),
    );
    assert.equal(problems[0]?.path, 'dup.yaml');
    assert.match(problems[0]?.message ?? '', /unique/i);
  });

  it('reports an unreadable file under its name', () => {
    const file = path.join(FIXTURES, 'does-not-exist.yaml');
    const problems = problemsOf(() => loadConfig(file, NO_ENV));
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.path, file);
    assert.match(problems[0]?.message ?? '', /cannot read/);
  });
});

describe('environment overrides', { timeout: 10_000 }, () => {
  const file = fixture('valid.json');

  it('BRIDGE_LISTEN and BRIDGE_ADMIN_LISTEN replace the file values', () => {
    const config = loadConfig(file, {
      BRIDGE_LISTEN: '127.0.0.1:9000',
      BRIDGE_ADMIN_LISTEN: '[::1]:9001',
    });
    assert.equal(config.listen, '127.0.0.1:9000');
    assert.equal(config.admin, '[::1]:9001');
  });

  it('a bad BRIDGE_LISTEN is reported under the variable, not the key it overrides', () => {
    const problems = problemsOf(() => loadConfig(file, { BRIDGE_LISTEN: 'localhost' }));
    assert.deepEqual(pathsOf(problems), ['BRIDGE_LISTEN']);
    assert.match(problemAt(problems, 'BRIDGE_LISTEN').message, /must be host:port/);
  });

  it('BRIDGE_WORKERS takes a number or auto', () => {
    assert.equal(loadConfig(file, { BRIDGE_WORKERS: '3' }).workers, 3);
    assert.equal(loadConfig(file, { BRIDGE_WORKERS: 'auto' }).workers, 'auto');
  });

  it('BRIDGE_WORKERS=abc is a problem under BRIDGE_WORKERS', () => {
    const problems = problemsOf(() => loadConfig(file, { BRIDGE_WORKERS: 'abc' }));
    assert.deepEqual(pathsOf(problems), ['BRIDGE_WORKERS']);
    assert.match(problems[0]?.message ?? '', /abc/);
  });

  it('BRIDGE_WORKERS problems are listed together with the file problems', () => {
    const problems = problemsOf(() =>
      loadConfig(fixture('many-problems.yaml'), { BRIDGE_WORKERS: 'abc' }),
    );
    problemAt(problems, 'BRIDGE_WORKERS');
    problemAt(problems, 'routes[1].mode');
  });

  it('BRIDGE_AMQP_URLS is split on commas, in order', () => {
    const config = loadConfig(file, {
      BRIDGE_AMQP_URLS: 'amqp://u:p@rabbit-1:5672/, amqps://u:p@rabbit-2:5671/vhost',
    });
    assert.deepEqual(config.amqp.urls, [
      'amqp://u:p@rabbit-1:5672/',
      'amqps://u:p@rabbit-2:5671/vhost',
    ]);
  });

  it('a bad URL in BRIDGE_AMQP_URLS is reported under the variable with its entry', () => {
    const problems = problemsOf(() =>
      loadConfig(file, { BRIDGE_AMQP_URLS: 'amqp://rabbit-1/,http://rabbit-2/' }),
    );
    assert.deepEqual([...new Set(pathsOf(problems))], ['BRIDGE_AMQP_URLS (entry 2)']);
  });

  it('empty variables change nothing', () => {
    const config = loadConfig(file, {
      BRIDGE_LISTEN: '',
      BRIDGE_WORKERS: '',
      BRIDGE_AMQP_URLS: '',
    });
    assert.equal(config.listen, '127.0.0.1:18080');
    assert.equal(config.workers, 2);
  });

  it('applyEnvOverrides creates missing sections and leaves its input alone', (t) => {
    const raw = { routes: [PUBLISH] };
    const { raw: out, problems } = applyEnvOverrides(raw, {
      BRIDGE_AMQP_URLS: 'amqp://a/,amqp://b/',
      BRIDGE_WORKERS: '4',
    });
    assert.deepEqual(problems, []);
    assert.deepEqual(out, {
      routes: [PUBLISH],
      workers: 4,
      amqp: { urls: ['amqp://a/', 'amqp://b/'] },
    });
    assert.deepEqual(raw, { routes: [PUBLISH] });
    // Overrides also reach a YAML file whose amqp section sets other keys.
    const yamlFile = tempFile(
      t,
      'c.yaml',
      'amqp:\n  maxInFlight: 5\nroutes:\n  - { path: /a, mode: publish, routingKey: a }\n',
    );
    const config = loadConfig(yamlFile, { BRIDGE_AMQP_URLS: 'amqp://a/' });
    assert.deepEqual(config.amqp.urls, ['amqp://a/']);
    assert.equal(config.amqp.maxInFlight, 5);
  });
});
