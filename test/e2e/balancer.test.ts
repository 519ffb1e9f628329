/**
 * E2E: deploy/haproxy/xml-amqp-bridge.cfg, the shipped file itself, in a private HAProxy (Debian's
 * /usr/sbin/haproxy) in front of two bridges on 127.0.0.2 and 127.0.0.3, publishing to one queue.
 * Keep-alive clients POST under load, each request with an Idempotency-Key of its own; one bridge
 * is killed -9 (primary and workers) mid-load; clients retry every failed attempt with the same
 * key until 2xx. The ledger: every key in the queue, duplicates only for keys whose first attempt
 * failed (a bridge died after publishing, before answering), never for a key whose client sent it
 * once (HAProxy never resent it); the health check took the dead bridge out and the survivor
 * served the rest. HAProxy 2.6 hands a request that was in flight on the dying bridge to the
 * client as a closed connection (ECONNRESET), with no log line: the clients retry those too.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumeMessage } from 'amqplib';
import { PROJECT_ROOT, baseConfig, startBridge, type RunningBridge } from '../helpers/bridge.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { asText, runToExit, spawnChild, type Child } from '../helpers/child.js';
import { freePort } from '../helpers/free-port.js';
import { xmlBody } from '../helpers/load.js';
import { errorCode } from '../helpers/keyed-load.js';
import { alive } from '../helpers/pids.js';
import { poll, waitUntil } from '../helpers/poll.js';

const HAPROXY = '/usr/sbin/haproxy';
const CFG_FILE = path.join(PROJECT_ROOT, 'deploy', 'haproxy', 'xml-amqp-bridge.cfg');
/** The clients' own address: the bridges must see it (X-Real-IP), not HAProxy's 127.0.0.1. */
const CLIENT_ADDR = '127.0.0.9';
const CLIENTS = 32;
/** Hard bounds on the load: keys issued in all, and how long the load runs after the kill. */
const MAX_KEYS = 20_000;
const BEFORE_KILL_MS = 3000;
const AFTER_KILL_MS = 5000;
/** A key still without a 2xx after this many attempts fails the test (no endless retrying). */
const MAX_ATTEMPTS = 40;
const RETRY_PAUSE_MS = 100;

interface Bridge {
  readonly name: string;
  readonly host: string;
  readonly run: RunningBridge;
  readonly port: number;
  readonly adminPort: number;
  readonly adminUrl: string;
}

interface Attempt {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly status: number | undefined;
  readonly error: string | undefined;
}

interface KeyRecord {
  readonly key: string;
  readonly attempts: Attempt[];
  ok: boolean;
}

interface LogLine {
  readonly at: number;
  readonly text: string;
}

/** An active directive on one line: its lead-in, then its arguments. */
const directiveLine = (directive: string): RegExp =>
  new RegExp(`^([ \\t]*${directive}[ \\t]+)(.*)$`, 'gm');

/** Replaces the arguments of the active `directive` lines (exactly `count` of them). */
function editDirective(
  conf: string,
  directive: string,
  count: number,
  edit: (args: string, n: number) => string,
): string {
  let found = 0;
  const out = conf.replace(
    directiveLine(directive),
    (_all, head: string, args: string) => `${head}${edit(args, found++)}`,
  );
  assert.equal(found, count, `${CFG_FILE}: ${count} active "${directive}" lines, found ${found}`);
  return out;
}

/** The shipped file with only addresses, ports, the stats socket path and the log target changed. */
function haproxyConfig(
  shipped: string,
  o: { port: number; bridges: readonly Bridge[]; dir: string },
): string {
  let conf = shipped;
  conf = editDirective(conf, 'bind', 1, (args) => args.replace(/^\S+/, `127.0.0.1:${o.port}`));
  conf = editDirective(conf, 'server', o.bridges.length, (args, n) => {
    const b = o.bridges[n]!;
    const m = /^(\S+) (\S+) port (\d+)$/.exec(args);
    assert.ok(m, `server line: name address port <admin>: ${args}`);
    return `${m[1]} ${b.host}:${b.port} port ${b.adminPort}`;
  });
  conf = editDirective(conf, 'stats socket', 1, (args) =>
    args.replace(/^\S+/, path.join(o.dir, 'admin.sock')),
  );
  // `log global` (defaults) stays; the global section's syslog target becomes stdout.
  conf = editDirective(conf, 'log', 2, (args) => {
    if (args === 'global') return args;
    assert.equal(args, '/dev/log local0', 'the shipped file logs to syslog');
    return 'stdout format raw local0';
  });
  return conf;
}

interface PrivateHaproxy {
  readonly url: string;
  readonly child: Child<LogLine>;
  /** `show stat` over the stats socket: one record per proxy/server. */
  stat(): Promise<Array<Record<string, string>>>;
  /** `show info`. */
  info(): Promise<string>;
  stop(): Promise<void>;
}

async function startHaproxy(bridges: readonly Bridge[]): Promise<PrivateHaproxy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'haproxy-test-'));
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  const port = await freePort();
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, haproxyConfig(readFileSync(CFG_FILE, 'utf8'), { port, bridges, dir }));
  const check = await runToExit(HAPROXY, ['-c', '-f', file], { timeoutMs: 20_000 });
  assert.equal(
    check.code,
    0,
    `haproxy -c (Debian package haproxy): ${check.stdout}${check.stderr}`,
  );
  // -db: foreground, whatever `daemon` says; its PID is the child's.
  const child = spawnChild(HAPROXY, ['-db', '-f', file], {
    name: 'haproxy',
    parse: (text): LogLine => ({ at: Date.now(), text: asText(text) }),
    lineStreams: ['stdout', 'stderr'],
    killAfterMs: 5000,
  });
  const sock = path.join(dir, 'admin.sock');
  const command = (cmd: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const conn = createConnection(sock);
      let out = '';
      conn.setEncoding('utf8');
      conn.on('data', (d: string) => (out += d));
      conn.on('end', () => resolve(out));
      conn.on('error', reject);
      conn.end(`${cmd}\n`);
    });
  const stat = async (): Promise<Array<Record<string, string>>> => {
    const [head, ...rows] = (await command('show stat')).trim().split('\n');
    const names = (head ?? '').replace(/^# /, '').split(',');
    return rows.map((r) => Object.fromEntries(r.split(',').map((v, i) => [names[i] ?? '', v])));
  };
  await waitUntil(
    'the stats socket answers',
    () => {
      if (child.process.exitCode !== null) throw new Error(`haproxy exited: ${child.output()}`);
      return command('show info');
    },
    (info) => info.includes('Name: HAProxy'),
    { timeoutMs: 10_000 },
  ).catch(async (err: unknown) => {
    await child.stop(1000);
    removeDir();
    throw new Error(`${String(err)}\n${child.output()}`);
  });
  let stopping: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    stat,
    info: () => command('show info'),
    stop: () =>
      (stopping ??= (async () => {
        await child.stop(5000); // SIGTERM to its PID, SIGKILL after 5 s
        removeDir();
      })()),
  };
}

async function startOne(name: string, host: string, queue: string): Promise<Bridge> {
  const port = await freePort();
  const adminPort = await freePort();
  const config = baseConfig(
    [{ path: '/orders', mode: 'publish', exchange: '', routingKey: queue }],
    {
      listen: `${host}:${port}`,
      admin: `${host}:${adminPort}`,
      workers: 2,
      // HAProxy connects from 127.0.0.1: it is the trusted proxy, and X-Real-IP names the client.
      trustedProxies: ['127.0.0.1/32'],
    },
  );
  // waitReady would poll /readyz on 127.0.0.1; this bridge's admin is on `host`.
  const run = await startBridge(config, { waitReady: false });
  const adminUrl = `http://${host}:${adminPort}`;
  await waitUntil(
    `${name} /readyz 200`,
    async () => (await fetch(`${adminUrl}/readyz`)).status,
    (s) => s === 200,
    { timeoutMs: 20_000 },
  );
  return { name, host, run, port, adminPort, adminUrl };
}

/** The primary's PID and its workers' (from /readyz). */
async function pidsOf(b: Bridge): Promise<number[]> {
  const body = (await (await fetch(`${b.adminUrl}/readyz`)).json()) as {
    workers: Array<{ pid?: number }>;
  }; // admin-server.ts shape
  const workers = body.workers.map((w) => w.pid).filter((p): p is number => typeof p === 'number');
  assert.ok(workers.length > 0, `${b.name}: worker PIDs`);
  return [b.run.pid, ...workers];
}

/** One POST through the balancer from CLIENT_ADDR, with headers a client might forge. */
function post(
  url: string,
  key: string,
  agent: Agent,
): Promise<{ status: number | undefined; error: string | undefined }> {
  const body = xmlBody(key);
  return new Promise((resolve) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        localAddress: CLIENT_ADDR,
        headers: {
          'Content-Type': 'application/xml',
          'Content-Length': String(Buffer.byteLength(body)),
          'Idempotency-Key': key,
          // Forged: HAProxy replaces X-Real-IP and appends the real address to X-Forwarded-For.
          'X-Real-IP': '198.51.100.66',
          'X-Forwarded-For': '198.51.100.66',
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, error: undefined }));
        res.on('error', (err) => resolve({ status: undefined, error: errorCode(err) }));
      },
    );
    req.setTimeout(15_000, () =>
      req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })),
    );
    req.on('error', (err) => resolve({ status: undefined, error: errorCode(err) }));
    req.end(body);
  });
}

/** How often each value occurs. */
function countBy(values: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}

const ok = (a: Attempt): boolean => a.status !== undefined && a.status >= 200 && a.status < 300;

/** Every message in `queue` (consumed, no ack), once `expected` arrived and 500 ms stayed quiet. */
async function consumeAll(
  broker: TestBroker,
  queue: string,
  expected: number,
): Promise<ConsumeMessage[]> {
  const got: ConsumeMessage[] = [];
  const ch = await broker.connection.createChannel();
  await ch.prefetch(1000);
  let last = Date.now();
  const { consumerTag } = await ch.consume(
    queue,
    (m) => {
      if (m === null) return;
      got.push(m);
      last = Date.now();
    },
    { noAck: true },
  );
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && (got.length < expected || Date.now() - last < 500))
    await sleep(100); // a consumer has no "queue is empty" event
  await ch.cancel(consumerTag);
  await ch.close();
  return got;
}

describe('two bridges behind HAProxy (deploy/haproxy/xml-amqp-bridge.cfg)', () => {
  let broker: TestBroker;
  let queue: string;
  const bridges: Bridge[] = [];
  let lb: PrivateHaproxy;

  before(async () => {
    broker = await openBroker();
    queue = await broker.queue(uniqueName('balancer'));
    bridges.push(await startOne('bridge1', '127.0.0.2', queue));
    bridges.push(await startOne('bridge2', '127.0.0.3', queue));
    lb = await startHaproxy(bridges);
  });

  after(async () => {
    await lb?.stop();
    for (const b of bridges) await b.run.stop();
    await broker?.close();
  });

  it('one bridge killed -9 under load: no 2xx lost, duplicates only after a failed attempt, never a POST resent by HAProxy, the survivor takes over', async () => {
    // Both servers UP by the health check before any load.
    await waitUntil(
      'both bridges UP in HAProxy',
      async () => (await lb.stat()).filter((r) => r['svname']?.startsWith('bridge')),
      (rows) => rows.length === 2 && rows.every((r) => r['status'] === 'UP'),
      { timeoutMs: 10_000 },
    );
    const victim = bridges[0]!;
    const survivor = bridges[1]!;
    const victimPids = await pidsOf(victim);

    const url = `${lb.url}/orders`;
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS, maxFreeSockets: CLIENTS });
    const prefix = uniqueName('lb');
    const records: KeyRecord[] = [];
    let issuing = true;
    const client = async (): Promise<void> => {
      while (issuing && records.length < MAX_KEYS) {
        const rec: KeyRecord = { key: `${prefix}-${records.length}`, attempts: [], ok: false };
        records.push(rec);
        // Once issued, a key is retried until 2xx (bounded), even after issuing stopped.
        while (!rec.ok && rec.attempts.length < MAX_ATTEMPTS) {
          const startedAt = Date.now();
          const answer = await post(url, rec.key, agent);
          const attempt = { startedAt, endedAt: Date.now(), ...answer };
          rec.attempts.push(attempt);
          rec.ok = ok(attempt);
          if (!rec.ok) await sleep(RETRY_PAUSE_MS); // a partner backing off before its retry
        }
      }
    };
    const loadStarted = Date.now();
    const load = Promise.all(Array.from({ length: CLIENTS }, client));
    await sleep(BEFORE_KILL_MS);
    const keysBeforeKill = records.length;
    const killedAt = Date.now();
    for (const pid of victimPids) process.kill(pid, 'SIGKILL');
    await waitUntil(
      'the killed bridge is gone',
      () => victimPids.filter(alive),
      (left) => left.length === 0,
      { timeoutMs: 5000 },
    );
    const down = await lb.child.waitForLine(
      (l) => /Server xml_amqp_bridges\/bridge1 is DOWN/.test(l.text),
      10_000,
    );
    await sleep(Math.max(0, killedAt + AFTER_KILL_MS - Date.now()));
    issuing = false;
    await load;
    const loadEnded = Date.now();
    agent.destroy();

    // The health check (not only failed traffic) says why the bridge is out.
    const rows = await lb.stat();
    const row = (name: string): Record<string, string> =>
      rows.find((r) => r['svname'] === name) ?? {};
    assert.equal(row('bridge1')['status'], 'DOWN', JSON.stringify(row('bridge1')));
    assert.match(row('bridge1')['check_status'] ?? '', /^L4/, 'down by the layer-4 check');
    assert.equal(row('bridge2')['status'], 'UP');

    // Client ledger.
    const attempts = records.flatMap((r) => r.attempts);
    const failed = attempts.filter((a) => !ok(a));
    const gaveUp = records.filter((r) => !r.ok);
    assert.deepEqual(
      gaveUp.map((r) => r.key).slice(0, 5),
      [],
      'every key got a 2xx within its attempts',
    );
    const retried = records.filter((r) => r.attempts.length > 1);

    // Broker ledger.
    const messages = await consumeAll(broker, queue, records.length);
    const byKey = new Map<string, number>();
    for (const m of messages) {
      const id = String(m.properties.messageId);
      byKey.set(id, (byKey.get(id) ?? 0) + 1);
    }
    const keys = new Set(records.map((r) => r.key));
    const lost = records.filter((r) => !byKey.has(r.key)).map((r) => r.key);
    assert.deepEqual(lost, [], 'no key that got a 2xx is missing from the queue');
    const strangers = [...byKey.keys()].filter((k) => !keys.has(k));
    assert.deepEqual(strangers, [], 'nothing in the queue but these keys');
    const dupKeys = records.filter((r) => (byKey.get(r.key) ?? 0) > 1);
    const dupOfSingle = dupKeys.filter((r) => r.attempts.length === 1);
    assert.deepEqual(
      dupOfSingle.map((r) => `${r.key} x${byKey.get(r.key)}`),
      [],
      'a key its client sent once is in the queue once: HAProxy never sent a POST twice',
    );
    for (const r of dupKeys)
      assert.ok(
        (byKey.get(r.key) ?? 0) <= r.attempts.length,
        `${r.key}: no more copies than the client's attempts`,
      );
    // The bridges saw the client, not HAProxy, whatever the client claimed itself.
    const addrs = new Set(messages.map((m) => String(m.properties.headers?.['x-remote-addr'])));
    assert.deepEqual([...addrs], [CLIENT_ADDR], 'x-remote-addr is the client (X-Real-IP)');

    // HAProxy's log: one line per client attempt that HAProxy answered, each naming its server.
    const answered = attempts.filter((a) => a.status !== undefined).length;
    const ours = (): LogLine[] => lb.child.lines.filter((l) => l.text.includes(` {${prefix}-`));
    // HAProxy writes a request's line once it is done, which may be after the client read it.
    const logged = await poll(
      () => ours().length,
      (n) => n >= answered,
      { timeoutMs: 5000 },
    );
    const logLines = ours();
    const perKey = new Map<string, number>();
    const parsed = logLines.map((l) => {
      const m =
        /xml_amqp_bridges\/(\S+) \S+ (-?\d+) \S+ (\S{4}) \d+\/\d+\/\d+\/\d+\/(\+?\d+) \S+ \{([^}|]*)\}/.exec(
          l.text,
        );
      assert.ok(m, `log line: ${l.text}`);
      perKey.set(m[5]!, (perKey.get(m[5]!) ?? 0) + 1);
      return { at: l.at, server: m[1]!, status: Number(m[2]), term: m[3]!, retries: m[4]! };
    });
    const short = records
      .filter((r) => (perKey.get(r.key) ?? 0) !== r.attempts.filter((a) => a.status).length)
      .slice(0, 5)
      .map((r) => ({ key: r.key, logged: perKey.get(r.key) ?? 0, attempts: r.attempts }));
    // HAProxy drops a log line rather than block when stdout's pipe is full (show info counts
    // them): every answered attempt has its line, but for those.
    const dropped = Number(/^DroppedLogs: (\d+)$/m.exec(await lb.info())?.[1]);
    assert.ok(
      parsed.length <= answered && parsed.length >= answered - dropped,
      `one HAProxy log line per answered attempt: ${parsed.length} lines, ${answered} answered, ${dropped} dropped (${JSON.stringify(logged)}; ${JSON.stringify(short)})`,
    );
    for (const r of records)
      assert.ok(
        (perKey.get(r.key) ?? 0) <= r.attempts.length,
        `${r.key}: HAProxy logged no more requests than the client sent`,
      );
    const redispatched = parsed.filter((p) => p.retries.startsWith('+')).length;
    const connRetries = parsed.reduce((n, p) => n + Number(p.retries.replace('+', '')), 0);
    // Traffic moved: both served before the kill; after DOWN, only the survivor.
    const served = (server: string, from: number, to: number): number =>
      parsed.filter((p) => p.server === server && p.at >= from && p.at < to).length;
    assert.ok(served('bridge1', loadStarted, killedAt) > 0, 'bridge1 served before the kill');
    assert.ok(served('bridge2', loadStarted, killedAt) > 0, 'bridge2 served before the kill');
    const afterDown = down.at + 100;
    assert.equal(
      served('bridge1', afterDown, Infinity),
      0,
      'nothing to the dead bridge once it is DOWN',
    );
    assert.ok(served('bridge2', afterDown, Infinity) > 0, 'the survivor served after DOWN');
    const lastFailure = Math.max(killedAt, ...failed.map((a) => a.endedAt));
    assert.ok(
      failed.every((a) => a.startedAt >= killedAt - 1000),
      `failures only around the kill: ${JSON.stringify(failed.slice(0, 3))}`,
    );

    const ledger = {
      keys: records.length,
      keysBeforeKill,
      attempts: attempts.length,
      ok2xx: attempts.filter(ok).length,
      failedAttempts: countBy(
        failed.map((a) => (a.status === undefined ? (a.error ?? '?') : String(a.status))),
      ),
      keysRetried: retried.length,
      messages: messages.length,
      duplicateKeys: dupKeys.length,
      duplicates: dupKeys.map((r) => ({
        key: r.key,
        copies: byKey.get(r.key),
        attempts: r.attempts.map((a) => a.status ?? a.error),
      })),
      haproxyLinesOfRetriedKeys: retried
        .slice(0, 4)
        .flatMap((r) => logLines.filter((l) => l.text.includes(`{${r.key}}`)).map((l) => l.text)),
      haproxyLogStatuses: countBy(parsed.map((p) => `${p.status} ${p.term}`)),
      haproxyLogDropped: dropped,
      haproxyConnRetries: connRetries,
      haproxyRedispatched: redispatched,
      killToDownMs: down.at - killedAt,
      killToLastFailureMs: lastFailure - killedAt,
      servedBeforeKill: {
        bridge1: served('bridge1', loadStarted, killedAt),
        bridge2: served('bridge2', loadStarted, killedAt),
      },
      servedAfterDown: {
        bridge1: served('bridge1', afterDown, Infinity),
        bridge2: served('bridge2', afterDown, Infinity),
      },
      loadSeconds: (loadEnded - loadStarted) / 1000,
      survivor: survivor.name,
    };
    console.log(`balancer ledger: ${JSON.stringify(ledger, null, 2)}`);
  });
});
