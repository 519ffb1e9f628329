/** The command line of the built bin: `check-config FILE`, `--help`, usage errors, and refusing to start on a broken config. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AMQP_URL, MAIN, PROJECT_ROOT } from '../helpers/bridge.js';
import { runToExit, type Run } from '../helpers/child.js';
import { openBroker, uniqueName } from '../helpers/broker.js';
import { MANY_PROBLEMS_PATHS } from '../fixtures/configs/many-problems.js';

const FIXTURES = path.join(PROJECT_ROOT, 'test', 'fixtures', 'configs');
const VALID = path.join(FIXTURES, 'contract-example.yaml');
const BROKEN = path.join(FIXTURES, 'many-problems.yaml');

const BROKEN_PATHS = MANY_PROBLEMS_PATHS;

/** The runner's own BRIDGE_* variables (BRIDGE_CONFIG, overrides) must not change what the bin sees. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BRIDGE_')) env[k] = v;
  return env;
}

/** Runs the bin to completion; SIGKILL after 20 s so a hang fails the test instead of stalling it. */
function runMain(args: readonly string[]): Promise<Run> {
  return runToExit(process.execPath, [MAIN, ...args], { env: cleanEnv(), timeoutMs: 20_000 });
}

/** stdout as JSON log lines; a non-JSON line fails the test (the contract: one JSON object per line). */
function jsonLines(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const parsed: unknown = JSON.parse(l);
      assert.ok(
        typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed),
        `not a JSON object: ${l}`,
      );
      return parsed as Record<string, unknown>; // narrowed to a non-array object just above
    });
}

describe('--version', { timeout: 30_000 }, () => {
  it('prints the bridge, Node.js and uWebSockets.js versions and exits 0', async () => {
    const run = await runMain(['--version']);
    assert.equal(run.code, 0, run.stderr);
    const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
      version: string;
    }; // our own package.json
    const prefix = `xml-amqp-bridge ${pkg.version} (Node.js ${process.version}, uWebSockets.js `;
    assert.ok(run.stdout.startsWith(prefix), run.stdout);
    // Either build, named with its package and whether it serves TLS (README, Supported platforms).
    assert.match(
      run.stdout.slice(prefix.length),
      /^(20\.30\.0-unofficial\.0 native \(@trufflesuite\/uws-js-unofficial, no TLS\)|20\.57\.0 native \(@btc-vision\/uwebsockets\.js, native TLS\))\)\n$/,
    );
    assert.equal(run.stderr, '');
  });
});

describe('check-config', { timeout: 60_000 }, () => {
  it('exits 0 and says OK for a valid config', async () => {
    const run = await runMain(['check-config', VALID]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /\bOK\b/);
    assert.ok(run.stdout.includes(VALID), run.stdout);
    assert.equal(run.stderr, '');
  });

  it('accepts the repository config/example.yaml', async () => {
    const run = await runMain(['check-config', path.join(PROJECT_ROOT, 'config', 'example.yaml')]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /\bOK\b/);
  });

  it('exits 2 and lists every problem, one per line with its path', async () => {
    const run = await runMain(['check-config', BROKEN]);
    assert.equal(run.code, 2);
    assert.equal(run.stdout, '');
    const lines = run.stderr.split('\n').filter((l) => l.trim() !== '');
    const [header, ...problemLines] = lines;
    const count = /: (\d+) problem/.exec(header ?? '')?.[1];
    assert.ok(count !== undefined, `no problem count in ${JSON.stringify(header)}`);
    assert.equal(problemLines.length, Number(count), run.stderr);
    for (const at of BROKEN_PATHS) {
      assert.ok(
        problemLines.some((l) => l.trimStart().startsWith(`${at}: `)),
        `no line for ${at} in:\n${run.stderr}`,
      );
    }
    for (const line of problemLines) {
      const at = line.trimStart().split(': ')[0] ?? '';
      assert.ok(BROKEN_PATHS.includes(at), `unexpected problem line: ${line}`);
    }
  });

  it('exits 2 with a clear message for a missing file', async () => {
    const missing = path.join(FIXTURES, 'no-such-config.yaml');
    const run = await runMain(['check-config', missing]);
    assert.equal(run.code, 2);
    assert.ok(run.stderr.includes(missing), run.stderr);
    assert.match(run.stderr, /cannot read|no such file/i);
  });

  it('exits 2 with usage when FILE is missing', async () => {
    const run = await runMain(['check-config']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /Usage:/);
  });
});

describe('command line', { timeout: 60_000 }, () => {
  it('--help prints usage and exits 0', async () => {
    const run = await runMain(['--help']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /Usage:/);
    assert.match(run.stdout, /check-config \[--broker\] FILE/);
    assert.match(run.stdout, /--version/);
    assert.match(run.stdout, /--config FILE/);
  });

  it('an unknown argument exits 2 with usage', async () => {
    const run = await runMain(['--frobnicate']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--frobnicate/);
    assert.match(run.stderr, /Usage:/);
    assert.equal(run.stdout, '');
  });

  it('no config at all exits 2 with usage', async () => {
    const run = await runMain([]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /Usage:/);
  });

  it('refuses to start on a broken config: exit 2 with one fatal log line listing every problem', async () => {
    const run = await runMain(['--config', BROKEN]);
    assert.equal(run.code, 2, `stdout: ${run.stdout}\nstderr: ${run.stderr}`);
    const fatal = jsonLines(run.stdout).filter((l) => l['level'] === 'fatal');
    assert.equal(fatal.length, 1, run.stdout);
    const line = fatal[0] ?? {};
    assert.equal(line['file'], BROKEN);
    const problems = line['problems'];
    assert.ok(Array.isArray(problems), `no problems array in ${JSON.stringify(line)}`);
    const reported = new Set(
      problems.map((p: unknown) =>
        typeof p === 'object' && p !== null && 'path' in p && typeof p.path === 'string'
          ? p.path
          : JSON.stringify(p),
      ),
    );
    for (const at of BROKEN_PATHS)
      assert.ok(reported.has(at), `fatal line lacks ${at}: ${JSON.stringify(line)}`);
    assert.equal(reported.size, BROKEN_PATHS.length, JSON.stringify([...reported]));
  });

  it('refuses to start on a missing config file: exit 2 naming the file', async () => {
    const missing = path.join(FIXTURES, 'no-such-config.yaml');
    const run = await runMain(['--config', missing]);
    assert.equal(run.code, 2);
    assert.ok(run.stdout.includes(missing), run.stdout);
  });
});

describe('check-config --broker', { timeout: 60_000 }, () => {
  /** A config file written for one test, deleted after it. */
  function configFile(t: { after: (fn: () => void) => void }, config: unknown): string {
    const dir = mkdtempSync(path.join(tmpdir(), 'check-broker-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, JSON.stringify(config));
    return file;
  }

  it('exits 0 when every exchange and queue named exists or is declared, and changes nothing', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('check-ok'));
    const exchange = await broker.exchange(uniqueName('check-ok-ex'), 'topic');
    const declared = uniqueName('check-declared');
    const file = configFile(t, {
      amqp: { urls: [AMQP_URL] },
      topology: {
        queues: [{ name: declared }],
        bindings: [
          { queue, exchange, routingKey: 'a.#' },
          { queue: declared, exchange: 'amq.topic', routingKey: 'b' },
        ],
      },
      routes: [
        { path: '/a', mode: 'publish', exchange, routingKey: 'a.{/xml/MsgType}' },
        { path: '/b', mode: 'publish', exchange: '', routingKey: queue },
        { path: '/c', mode: 'rpc', exchange: '', routingKey: declared },
        { path: '/d', mode: 'celery', task: 'x', queue: uniqueName('check-celery') },
      ],
    });
    const run = await runMain(['check-config', '--broker', file]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /has every exchange and queue it names \(\d+ checked/);
    // Passive: what topology declares was not created by the check.
    await assert.rejects(
      broker.connection.createChannel().then(async (ch) => {
        ch.on('error', () => undefined);
        await ch.checkQueue(declared);
      }),
    );
  });

  it('exits 3 naming every exchange and queue the broker does not have, by its path in the file', async (t) => {
    const missingExchange = uniqueName('check-no-ex');
    const missingQueue = uniqueName('check-no-q');
    const missingRouteQueue = uniqueName('check-no-route-q');
    const file = configFile(t, {
      amqp: { urls: [AMQP_URL] },
      topology: { bindings: [{ queue: missingQueue, exchange: 'amq.direct', routingKey: 'k' }] },
      routes: [
        { path: '/a', mode: 'publish', exchange: missingExchange, routingKey: 'k' },
        { path: '/b', mode: 'publish', exchange: '', routingKey: missingRouteQueue },
      ],
    });
    const run = await runMain(['check-config', '--broker', file]);
    assert.equal(run.code, 3, `${run.stdout}\n${run.stderr}`);
    const lines = run.stderr.split('\n').filter((l) => l.startsWith('  '));
    const byPath = new Map(lines.map((l) => [l.trim().split(':')[0], l]));
    assert.deepEqual([...byPath.keys()].sort(), [
      'routes[0].exchange',
      'routes[1].routingKey',
      'topology.bindings[0].queue',
    ]);
    assert.ok(byPath.get('routes[0].exchange')?.includes(missingExchange));
    assert.ok(byPath.get('topology.bindings[0].queue')?.includes(`NOT_FOUND`), lines.join('\n'));
  });

  it('exits 3 when no broker answers, naming the URL without its password', async (t) => {
    const file = configFile(t, {
      amqp: { urls: ['amqp://guest:s3cr3t@127.0.0.1:1/'] },
      routes: [{ path: '/a', mode: 'publish', routingKey: 'k' }],
    });
    const run = await runMain(['check-config', '--broker', file]);
    assert.equal(run.code, 3, run.stderr);
    assert.match(run.stderr, /did not answer: amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1\//);
    assert.ok(!run.stderr.includes('s3cr3t'));
  });
});
