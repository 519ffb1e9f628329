/** E2E: the bridge refuses to share its partner port, and refuses uWS's JS fallback unless allowed. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  baseConfig,
  MAIN,
  parseLogLine,
  startBridge,
  uwsBuildOf,
  workerPids,
  type LogLine,
} from '../helpers/bridge.js';
import { runToExit } from '../helpers/child.js';
import { openBroker, uniqueName, messageIds } from '../helpers/broker.js';
import { postXml, xmlBody } from '../helpers/load.js';

interface Outcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly lines: readonly LogLine[];
  readonly stderr: string;
}

/** Runs the bridge expecting it to exit by itself; SIGKILLs it after `timeoutMs` (then the test fails). */
async function runUntilExit(
  config: unknown,
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<Outcome> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bridge-guard-'));
  try {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, JSON.stringify(config));
    const { code, signal, stdout, stderr } = await runToExit(
      process.execPath,
      [MAIN, '--config', file],
      { env: { ...process.env, ...env }, timeoutMs },
    );
    const lines = stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map(parseLogLine);
    return { code, signal, lines, stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function fatalLines(outcome: Outcome): string[] {
  return outcome.lines.filter((l) => l.level === 'fatal').map((l) => JSON.stringify(l));
}

const route = (queue: string): Record<string, unknown> => ({
  path: '/a',
  mode: 'publish',
  exchange: '',
  routingKey: queue,
});

describe('port guard', { timeout: 90_000 }, () => {
  it('refuses to start on a port another process listens on', async (t) => {
    const other = createServer();
    other.listen(0, '127.0.0.1');
    await once(other, 'listening');
    t.after(() => other.close());
    const { port } = other.address() as AddressInfo; // a TCP server's address is an AddressInfo

    const outcome = await runUntilExit(
      baseConfig([route(uniqueName('unused'))], { listen: `127.0.0.1:${port}` }),
    );
    assert.equal(outcome.signal, null, 'the bridge did not exit by itself');
    assert.ok(outcome.code !== null && outcome.code !== 0, `exit code ${outcome.code}`);
    const fatal = fatalLines(outcome);
    assert.ok(
      fatal.some((l) => l.includes('already in use')),
      `fatal lines: ${fatal.join('\n')}\nstderr: ${outcome.stderr}`,
    );
    assert.ok(
      !outcome.lines.some((l) => l.msg === 'listening'),
      'a worker listened on the shared port',
    );
  });

  it('a second bridge on the port of a running one refuses to start; the first keeps serving', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('guard'));
    const first = await startBridge(baseConfig([route(queue)]));
    t.after(() => first.stop());
    const pids = await workerPids(first);

    const outcome = await runUntilExit(
      baseConfig([route(queue)], { listen: `127.0.0.1:${first.port}` }),
    );
    assert.equal(outcome.signal, null, 'the second bridge did not exit by itself');
    assert.ok(outcome.code !== null && outcome.code !== 0, `exit code ${outcome.code}`);
    const fatal = fatalLines(outcome);
    assert.ok(
      fatal.some((l) => l.includes('already in use')),
      `fatal lines: ${fatal.join('\n')}\nstderr: ${outcome.stderr}`,
    );
    assert.ok(
      !outcome.lines.some((l) => l.msg === 'listening'),
      'a second-bridge worker listened on the shared port',
    );

    const key = uniqueName('first');
    const answer = await postXml(`${first.url}/a`, xmlBody(1), key);
    assert.equal(answer.status, 202);
    assert.deepEqual(messageIds(await broker.drain(queue)), [key]);
    assert.deepEqual(await workerPids(first), pids);
  });

  it('refuses uWS.js JS fallback (UWS_USE_FALLBACK=1) with a fatal line', async () => {
    const outcome = await runUntilExit(baseConfig([route(uniqueName('unused'))]), {
      UWS_USE_FALLBACK: '1',
    });
    assert.equal(outcome.signal, null, 'the bridge did not exit by itself');
    assert.ok(outcome.code !== null && outcome.code !== 0, `exit code ${outcome.code}`);
    const fatal = fatalLines(outcome);
    assert.ok(
      fatal.some((l) => l.includes('native binary')),
      `fatal lines: ${fatal.join('\n')}\nstderr: ${outcome.stderr}`,
    );
    assert.ok(!outcome.lines.some((l) => l.msg === 'listening'));
  });

  it('runs on the fallback when BRIDGE_ALLOW_UWS_FALLBACK=1 says so', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('fallback'));
    // One worker: the fallback binds with `exclusive: true` (no SO_REUSEPORT), so a second worker cannot listen.
    const bridge = await startBridge(baseConfig([route(queue)], { workers: 1 }), {
      env: { UWS_USE_FALLBACK: '1', BRIDGE_ALLOW_UWS_FALLBACK: '1' },
    });
    t.after(() => bridge.stop());
    assert.ok(!bridge.logs.some((l) => l.level === 'fatal'));
    assert.equal(uwsBuildOf(bridge), 'js-fallback');
    const res = await fetch(`${bridge.url}/nope`);
    await res.arrayBuffer();
    assert.equal(res.status, 404, 'the fallback server answers HTTP');
    // Reported, not asserted: the operator opted into a server docs/failure-modes.md #9 calls broken.
    const post = await postXml(`${bridge.url}/a`, xmlBody(1), uniqueName('fb'));
    t.diagnostic(`POST on the fallback: ${post.status} ${post.body}`);
    await bridge.stop();
    assert.deepEqual(await bridge.exited, { code: 0, signal: null });
  });
});
