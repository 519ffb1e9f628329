/** E2E of deploy/upgrade.sh: a binary upgrade under load loses and fails nothing; refused or failed upgrades leave the old instance serving. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { baseConfig, PROJECT_ROOT, startBridge, waitUntilReady } from '../helpers/bridge.js';
import { runToExit, spawnChild, type Run } from '../helpers/child.js';
import { openBroker, uniqueName, messageIds } from '../helpers/broker.js';
import { postXml, summarize, xmlBody } from '../helpers/load.js';
import { netnsArgv, unixToTcp } from '../helpers/netns.js';
import { alive, stopPid as stopPidBounded } from '../helpers/pids.js';
import type { LoadReport, ScenarioArgs, ScenarioResult } from '../helpers/upgrade-scenario.js';
import { freePort } from '../helpers/free-port.js';
import { upgradeArgv } from '../helpers/upgrade-sh.js';

const SCENARIO = path.join(PROJECT_ROOT, 'dist', 'test', 'helpers', 'upgrade-scenario.js');
const SYSCTL_FILE = path.join(PROJECT_ROOT, 'deploy', 'sysctl', '90-xml-amqp-bridge.conf');

function run(
  argv: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<Run> {
  const [cmd = 'false', ...args] = argv;
  return runToExit(cmd, args, { env: { ...process.env, ...env }, timeoutMs });
}

/** SIGTERM and wait until gone (SIGKILL after 20 s). */
async function stopPid(pid: number): Promise<void> {
  await stopPidBounded(pid, 20_000);
}

/** The value deploy/sysctl sets for `key` (the scenario gives its namespace the same). */
function sysctlValue(key: string): string {
  const line = readFileSync(SYSCTL_FILE, 'utf8')
    .split('\n')
    .find((l) => l.split('=')[0]?.trim() === key);
  assert.ok(line, `${key} is not in ${SYSCTL_FILE}`);
  return (line.split('=')[1] ?? '').trim();
}

function publishRoute(queue: string): Record<string, unknown> {
  return { path: '/a', mode: 'publish', exchange: '', routingKey: queue };
}

describe('binary upgrade (deploy/upgrade.sh)', { timeout: 110_000 }, () => {
  it('under load on 127.0.0.1: zero refused connections, zero failed requests, every 2xx in the queue', async (t) => {
    // The scenario runs in its own network namespace with deploy/sysctl's tcp_migrate_req applied
    // there, as install.sh applies it on the host; the shared broker is reached through a relay.
    const migrate = sysctlValue('net.ipv4.tcp_migrate_req');
    assert.equal(migrate, '1');
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('upgrade'));
    const dir = mkdtempSync(path.join(tmpdir(), 'upgrade-test-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const amqpSocket = path.join(dir, 'amqp.sock');
    const relay = await unixToTcp(amqpSocket, 5672);
    t.after(() => relay.close());

    const args: ScenarioArgs = {
      queue,
      amqpSocket,
      dir,
      idPrefix: uniqueName('up'),
      port: 18080,
      adminOld: 19464,
      adminNew: 19465,
      shutdownTimeoutMs: 5000,
      settleBefore: 300,
      settleAfter: 300,
    };
    const [cmd = 'unshare', ...argv] = [
      ...netnsArgv([`net/ipv4/tcp_migrate_req=${migrate}`]),
      process.execPath,
      SCENARIO,
      JSON.stringify(args),
    ];
    let newPid: number | undefined;
    t.after(() => (newPid === undefined ? undefined : stopPid(newPid)));
    let result: ScenarioResult | undefined;
    const scenario = spawnChild(cmd, argv, {
      name: 'the upgrade scenario',
      // upgrade-scenario.ts prints one typed JSON object per line.
      parse: (raw) => JSON.parse(raw) as { type?: unknown; pid?: unknown },
      onLine: (line) => {
        if (line.type === 'new-pid' && typeof line.pid === 'number') newPid = line.pid;
        if (line.type === 'result') result = line as ScenarioResult; // the one 'result' line, see ScenarioResult
      },
    });
    t.after(() => scenario.stop());
    const stderr = scenario.stderr;
    const { code: exitCode } = await scenario.closed;
    assert.equal(exitCode, 0, `the scenario failed:\n${stderr()}`);
    assert.ok(result, `the scenario printed no result:\n${stderr()}`);
    assert.equal(result.tcpMigrateReq, '1', 'the namespace did not get tcp_migrate_req');

    const inQueue = messageIds(await broker.drain(queue));
    const queued = new Set(inQueue);
    const totals = (pick: (l: LoadReport) => number): number =>
      result?.loads.reduce((n, l) => n + pick(l), 0) ?? 0;
    const count = (o: Readonly<Record<string, number>>, keep: (k: string) => boolean): number =>
      Object.entries(o).reduce((n, [k, v]) => n + (keep(k) ? v : 0), 0);
    const requests = totals((l) => l.sentIds.length);
    const ok = totals((l) => l.okIds.length);
    const refused = totals((l) => l.errors['ECONNREFUSED'] ?? 0);
    const failed = totals(
      (l) => count(l.errors, () => true) + count(l.statuses, (s) => !/^2\d\d$/.test(s)),
    );
    t.diagnostic(
      `upgrade.sh took ${result.upgrade.ms} ms; requests ${requests}, 2xx ${ok}, refused ${refused}, failed ${failed}, ` +
        `messages in the queue ${inQueue.length}; ${result.loads.map((l) => `${l.kind}: ${summarize(l)}, ${l.afterOldExit} after the old exit`).join('; ')}`,
    );
    t.diagnostic(result.upgrade.stderr.trim().replaceAll('\n', ' | '));

    assert.equal(result.upgrade.code, 0, `upgrade.sh failed:\n${result.upgrade.stderr}`);
    assert.match(result.upgrade.stdout, /^new_pid=\d+$/m);
    assert.deepEqual(
      result.oldExit,
      { code: 0, signal: null },
      'the old instance did not drain cleanly',
    );
    assert.ok(result.newStopped, 'the new instance did not stop on SIGTERM');
    for (const load of result.loads) {
      assert.equal(
        load.errors['ECONNREFUSED'] ?? 0,
        0,
        `${load.kind}: refused connections (${summarize(load)})`,
      );
      assert.deepEqual(load.failures, [], `${load.kind}: failed requests (${summarize(load)})`);
      assert.ok(
        load.afterOldExit >= args.settleAfter,
        `${load.kind}: the new instance served only ${load.afterOldExit} requests alone`,
      );
      assert.deepEqual(
        load.okIds.filter((id) => !queued.has(id)),
        [],
        `${load.kind}: 2xx answered but not in the queue`,
      );
    }
    const sent = new Set(result.loads.flatMap((l) => l.sentIds));
    assert.deepEqual(
      inQueue.filter((id) => !sent.has(id)),
      [],
      'the queue holds ids nobody sent',
    );
    assert.equal(queued.size, inQueue.length, 'a message was published twice');
    assert.equal(inQueue.length, ok, 'the queue holds messages that were not answered 2xx');
    // The instances read the broker URL from a file: credential; no log line may carry its password.
    assert.ok(!result.logText.includes('guest:guest@'), 'a log line carries the AMQP password');
  });

  it('a config the new release refuses: exit 2 with the problem, nothing started, the old instance keeps serving', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('upgrade-refused'));
    const old = await startBridge(baseConfig([publishRoute(queue)]));
    t.after(() => old.stop());
    const dir = mkdtempSync(path.join(tmpdir(), 'upgrade-test-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      JSON.stringify(
        baseConfig([publishRoute(queue)], { amqp: { urls: ['file:/nonexistent/amqp-url'] } }),
      ),
    );

    const out = await run(upgradeArgv(old.pid, bad, `127.0.0.1:${await freePort()}`));
    assert.equal(out.code, 2, out.stderr);
    assert.match(
      out.stderr,
      /amqp\.urls\[0\]: cannot read secret file \/nonexistent\/amqp-url \(ENOENT\)/,
    );
    assert.match(out.stderr, /nothing changed/);
    assert.doesNotMatch(out.stderr, /started the new release/);
    assert.ok(alive(old.pid));
    await waitUntilReady(old);
    const key = uniqueName('still');
    assert.equal((await postXml(`${old.url}/a`, xmlBody(1), key)).status, 202);
    assert.deepEqual(messageIds(await broker.drain(queue)), [key]);
  });

  it('a new instance that does not get ready in time is stopped; the old one keeps serving', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('upgrade-unready'));
    const port = await freePort();
    const old = await startBridge(
      baseConfig([publishRoute(queue)], { listen: `127.0.0.1:${port}` }),
    );
    t.after(() => old.stop());
    const dir = mkdtempSync(path.join(tmpdir(), 'upgrade-test-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));

    // The new instance's broker URL points at a closed port: its workers never connect, /readyz stays 503.
    const out = await run(
      upgradeArgv(old.pid, old.configFile, `127.0.0.1:${await freePort()}`, [
        '--log',
        path.join(dir, 'new.log'),
        '--timeout',
        '3',
      ]),
      { BRIDGE_AMQP_URLS: `amqp://guest:guest@127.0.0.1:${await freePort()}/` },
    );
    assert.equal(out.code, 1, out.stderr);
    assert.match(
      out.stderr,
      /was not ready within 3s .*stopped it, the old instance \d+ keeps serving/,
    );
    const started = /started the new release as pid (\d+)/.exec(out.stderr);
    assert.ok(started, out.stderr);
    assert.equal(alive(Number(started[1])), false, 'the unready new instance is still running');
    assert.ok(alive(old.pid));
    await waitUntilReady(old);
    const key = uniqueName('still');
    assert.equal((await postXml(`${old.url}/a`, xmlBody(1), key)).status, 202);
    assert.deepEqual(messageIds(await broker.drain(queue)), [key]);
  });

  it('refuses an admin address something already answers on, before starting anything', async (t) => {
    const old = await startBridge(baseConfig([publishRoute(uniqueName('unused'))]));
    t.after(() => old.stop());
    const out = await run(upgradeArgv(old.pid, old.configFile, `127.0.0.1:${old.adminPort}`));
    assert.equal(out.code, 2, out.stderr);
    assert.match(out.stderr, new RegExp(`127\\.0\\.0\\.1:${old.adminPort} already answers`));
    assert.doesNotMatch(out.stderr, /started the new release/);
    assert.ok(alive(old.pid));
  });
});
