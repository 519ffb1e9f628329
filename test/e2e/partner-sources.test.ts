/**
 * E2E of partner access control by address and by rate (#13): `sources` over IPv4 and IPv6 seen
 * from real client addresses (a private network namespace whose lo carries documentation
 * addresses, clients bound to them with curl --interface), `trustedProxies` and the
 * X-Real-IP / X-Forwarded-For they are believed for, and a partner's `rateLimit` across two
 * workers under concurrent keep-alive load.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { GetMessage } from 'amqplib';
import {
  baseConfig,
  startBridge,
  workerPids,
  type LogLine,
  type RunningBridge,
} from '../helpers/bridge.js';
import { messageIds, openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { metricValue, parseExposition, sampleValue, type Sample } from '../helpers/metrics.js';
import { startNetns, type Netns } from '../helpers/netns.js';
import { waitUntil } from '../helpers/poll.js';
import { runtimeFromEnv } from '../helpers/runtime.js';

const AUTH_FAILURES = 'bridge_auth_failures_total';
const RATE_LIMITED = 'bridge_rate_limited_total';
const PARTNER_REQUESTS = 'bridge_partner_requests_total';
const XML = '<?xml version="1.0"?><order id="1"><sku>A-1</sku></order>';

/** A secret file for `keys: [file:/abs/path]`: one line, as the spec asks. */
function writeKey(dir: string, name: string): { file: string; key: string } {
  const key = randomBytes(24).toString('hex');
  const file = path.join(dir, name);
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return { file, key };
}

/**
 * An address as one canonical text: IPv4 dotted, IPv4-mapped IPv6 as its IPv4, other IPv6 as
 * the WHATWG URL parser writes it (RFC 5952). uWebSockets.js reports addresses in full hex
 * (`0000:…:ffff:cb00:7105`); this compares what they denote.
 */
function canonicalAddress(text: string): string {
  if (!text.includes(':')) return text;
  const host = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped === null) return host;
  const n = (parseInt(mapped[1]!, 16) << 16) | parseInt(mapped[2]!, 16);
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 0xff).join('.');
}

interface CurlAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly body: string;
  /** The problem's `code` when the answer is application/problem+json. */
  readonly code: string | undefined;
}

describe(
  'partner sources: CIDR allow and deny over IPv4 and IPv6, trustedProxies',
  { timeout: 60_000 },
  () => {
    // Documentation networks (RFC 5737, RFC 3849): never anyone's real address.
    const ALLOWED_V4 = '203.0.113.5';
    const DENIED_V4 = '198.51.100.7';
    const ALLOWED_V6 = '2001:db8::5';
    const DENIED_V6 = '2001:db8:1::9';
    const ROUTE = 'acme-orders';
    let broker: TestBroker;
    let ns: Netns;
    let bridge: RunningBridge;
    let queue: string;
    let dir: string;
    let key: string;
    /** What each refusal so far should have added to the metrics. */
    let sourceRefusals = 0;
    let accepted = 0;

    before(async () => {
      broker = await openBroker();
      queue = await broker.queue(uniqueName('partner-sources'));
      dir = mkdtempSync(path.join(tmpdir(), 'partner-sources-'));
      const secret = writeKey(dir, 'acme.key');
      key = secret.key;
      ns = await startNetns([], {
        addresses: [`${ALLOWED_V4}/32`, `${DENIED_V4}/32`, `${ALLOWED_V6}/128`, `${DENIED_V6}/128`],
      });
      // [::] with IPv6 only off (uWebSockets.js' listen socket): IPv4 clients arrive as
      // ::ffff:a.b.c.d, which IPv4 `sources` and `trustedProxies` must still match.
      bridge = await startBridge(
        baseConfig(
          [
            {
              name: ROUTE,
              path: '/acme/orders',
              mode: 'publish',
              exchange: '',
              routingKey: queue,
              partners: ['acme'],
            },
          ],
          {
            listen: '[::]:0',
            workers: 1,
            trustedProxies: ['127.0.0.1/32'],
            partners: [
              {
                id: 'acme',
                // /48: 2001:db8:1::9 shares the first 32 bits and differs only in the third group.
                sources: ['203.0.113.0/24', '2001:db8::/48'],
                auth: { apiKey: { keys: [`file:${secret.file}`] } },
              },
            ],
          },
        ),
        { runtime: ns.runtime(await runtimeFromEnv()), waitReady: false },
      );
      await waitUntil(
        '/readyz 200 inside the namespace',
        () =>
          ns.run(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `${adminUrl()}/readyz`]),
        (r) => r.stdout === '200',
        { timeoutMs: 20_000 },
      );
    });

    // A test that failed may have left a message: the next one starts from an empty queue.
    beforeEach(() => broker.drain(queue));

    after(async () => {
      await bridge?.stop();
      await ns?.stop();
      await broker?.close();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    const adminUrl = (): string => `http://127.0.0.1:${bridge.adminPort}`;
    const urlAt = (address: string): string =>
      `http://${address.includes(':') ? `[${address}]` : address}:${bridge.port}/acme/orders`;

    /** A POST from `source` (bound with curl --interface) to the bridge at that same address, inside the namespace. */
    async function postFrom(source: string, headers: readonly string[]): Promise<CurlAnswer> {
      const bodyFile = path.join(dir, `body-${randomUUID()}`);
      const run = await ns.run(
        [
          'curl',
          '--silent',
          '--show-error',
          '--interface',
          source,
          '--write-out',
          '%{json}\n%{header_json}',
          '-o',
          bodyFile,
          '-H',
          'Content-Type: application/xml',
          '-H',
          `x-api-key: ${key}`,
          ...headers.flatMap((h) => ['-H', h]),
          '--data-binary',
          XML,
          urlAt(source),
        ],
        { timeoutMs: 15_000 },
      );
      assert.equal(run.code, 0, `curl from ${source}: ${run.stderr}`);
      const nl = run.stdout.indexOf('\n');
      // curl's own write-out: %{json} on one line, then %{header_json}.
      const info = JSON.parse(run.stdout.slice(0, nl)) as { http_code: number };
      const parsedHeaders = JSON.parse(run.stdout.slice(nl + 1)) as Record<string, string[]>;
      const body = readFileSync(bodyFile, 'utf8');
      rmSync(bodyFile, { force: true });
      let code: string | undefined;
      if (parsedHeaders['content-type']?.[0] === 'application/problem+json')
        code = (JSON.parse(body) as { code?: string }).code; // the bridge's problem+json
      return { status: info.http_code, headers: parsedHeaders, body, code };
    }

    /** The one message a 2xx published (its Idempotency-Key is `id`), and nothing else. */
    async function takeOne(id: string): Promise<GetMessage> {
      const got = await broker.drain(queue);
      assert.deepEqual(messageIds(got), [id], 'exactly the accepted request was published');
      return got[0]!;
    }

    async function assertAccepted(
      source: string,
      headers: readonly string[],
      clientAddress: string,
    ): Promise<string> {
      const id = uniqueName('ok');
      const reply = await postFrom(source, [...headers, `Idempotency-Key: ${id}`]);
      assert.equal(reply.status, 202, `from ${source} ${headers.join(' ')}: ${reply.body}`);
      accepted += 1;
      const h = { ...(await takeOne(id)).properties.headers };
      assert.equal(h['x-partner'], 'acme');
      const remote = String(h['x-remote-addr']);
      assert.equal(
        canonicalAddress(remote),
        clientAddress,
        `x-remote-addr ${remote} for a request from ${source} ${headers.join(' ')}`,
      );
      return remote;
    }

    async function assertRefused(source: string, headers: readonly string[]): Promise<void> {
      const reply = await postFrom(source, [...headers, `Idempotency-Key: ${uniqueName('no')}`]);
      assert.equal(reply.status, 403, `from ${source} ${headers.join(' ')}: ${reply.body}`);
      assert.equal(reply.code, 'BRIDGE_FORBIDDEN', reply.body);
      assert.ok(!reply.body.includes(key), 'the problem never quotes the key');
      sourceRefusals += 1;
      assert.equal(await broker.count(queue), 0, `from ${source}: nothing may be published`);
    }

    /** Scrapes /metrics inside the namespace. */
    async function samples(): Promise<Sample[]> {
      const run = await ns.run(['curl', '-sS', '--fail', `${adminUrl()}/metrics`]);
      assert.equal(run.code, 0, run.stderr);
      return parseExposition(run.stdout);
    }

    /** The metrics catch up with what the test did (workers report to the primary about once a second). */
    async function assertCounted(): Promise<void> {
      const expected = {
        source: sourceRefusals,
        forbidden: sourceRefusals,
        accepted,
      };
      await waitUntil(
        'the access metrics',
        async () => {
          const all = await samples();
          return {
            source: sampleValue(all, AUTH_FAILURES, { route: ROUTE, reason: 'source' }),
            forbidden: sampleValue(all, PARTNER_REQUESTS, { partner: 'acme', status: '403' }),
            accepted: sampleValue(all, PARTNER_REQUESTS, { partner: 'acme', status: '202' }),
          };
        },
        (seen) => JSON.stringify(seen) === JSON.stringify(expected),
        { timeoutMs: 10_000 },
      );
    }

    it('IPv4: a client in 203.0.113.0/24 is served and named in the message; one outside gets 403, nothing published, counted as reason "source"', async (t) => {
      const remote = await assertAccepted(ALLOWED_V4, [], ALLOWED_V4);
      // Not asserted: which text form x-remote-addr takes for a direct client is uWS's.
      t.diagnostic(`x-remote-addr for ${ALLOWED_V4} on a [::] listener: ${remote}`);
      await assertRefused(DENIED_V4, []);
      await assertCounted();
      const line = await bridge.waitForLog(
        (l: LogLine) => l.msg === 'access' && l['status'] === 403,
        5000,
      );
      assert.equal(
        line['partner'],
        'acme',
        `the access line names the partner: ${JSON.stringify(line)}`,
      );
    });

    it('IPv6: a client in 2001:db8::/48 is served; 2001:db8:1::9, just outside it, and ::1 get 403', async () => {
      await assertAccepted(ALLOWED_V6, [], ALLOWED_V6);
      await assertRefused(DENIED_V6, []);
      // ::1 is neither in the sources nor a trusted proxy.
      await assertRefused('::1', []);
      await assertCounted();
    });

    it('from a trusted proxy (127.0.0.1) the client is X-Real-IP, else the last X-Forwarded-For entry, and that is what x-remote-addr carries', async () => {
      // The last entry is the one the trusted proxy appended: the earlier ones are the client's claims.
      await assertRefused('127.0.0.1', [`X-Forwarded-For: 203.0.113.77, ${DENIED_V4}`]);
      const last = await assertAccepted(
        '127.0.0.1',
        [`X-Forwarded-For: ${DENIED_V4}, 203.0.113.77`],
        '203.0.113.77',
      );
      assert.equal(last, '203.0.113.77', 'x-remote-addr is the forwarded address as sent');
      const real = await assertAccepted('127.0.0.1', ['X-Real-IP: 203.0.113.9'], '203.0.113.9');
      assert.equal(real, '203.0.113.9');
      // X-Real-IP wins over X-Forwarded-For, both ways.
      await assertAccepted(
        '127.0.0.1',
        ['X-Real-IP: 203.0.113.9', `X-Forwarded-For: ${DENIED_V4}`],
        '203.0.113.9',
      );
      await assertRefused('127.0.0.1', [`X-Real-IP: ${DENIED_V4}`, 'X-Forwarded-For: 203.0.113.9']);
      await assertAccepted('127.0.0.1', ['X-Real-IP: 2001:db8::77'], '2001:db8::77');
      // Without either header the proxy's own address is judged: 127.0.0.1 is not in the sources.
      await assertRefused('127.0.0.1', []);
      await assertCounted();
    });

    it('from a peer that is not a trusted proxy, X-Real-IP and X-Forwarded-For are ignored', async () => {
      const spoofDenied = [`X-Real-IP: ${DENIED_V4}`, `X-Forwarded-For: ${DENIED_V4}`];
      await assertAccepted(ALLOWED_V4, spoofDenied, ALLOWED_V4);
      await assertAccepted(ALLOWED_V6, spoofDenied, ALLOWED_V6);
      const spoofAllowed = ['X-Real-IP: 203.0.113.9', 'X-Forwarded-For: 203.0.113.9'];
      await assertRefused(DENIED_V4, spoofAllowed);
      await assertRefused(DENIED_V6, spoofAllowed);
      // ::1 is loopback too, but only 127.0.0.1/32 is trusted.
      await assertRefused('::1', spoofAllowed);
      await assertCounted();
    });
  },
);

interface Answer {
  readonly id: string;
  readonly status: number;
  readonly retryAfter: string | undefined;
  readonly code: string | undefined;
  readonly endedAt: number;
}

/**
 * `lanes` loops, each POSTing back to back over a keep-alive agent, until `durationMs` passed;
 * returns every answer, when the first request was sent, and how many connections were opened.
 */
async function hammer(
  url: string,
  headers: Readonly<Record<string, string>>,
  lanes: number,
  durationMs: number,
): Promise<{ answers: Answer[]; startedAt: number; connections: number; errors: string[] }> {
  const agent = new Agent({ keepAlive: true, maxSockets: lanes });
  const sockets = new Set<Socket>();
  const answers: Answer[] = [];
  const errors: string[] = [];
  const body = Buffer.from(XML);
  const post = (id: string): Promise<void> =>
    new Promise((resolve) => {
      const req = request(
        url,
        {
          method: 'POST',
          agent,
          headers: {
            ...headers,
            'Content-Type': 'application/xml',
            'Content-Length': String(body.length),
            'Idempotency-Key': id,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            let code: string | undefined;
            if (res.headers['content-type'] === 'application/problem+json')
              code = (JSON.parse(Buffer.concat(chunks).toString()) as { code?: string }).code; // problem+json
            const retry = res.headers['retry-after'];
            answers.push({ id, status, retryAfter: retry, code, endedAt: performance.now() });
            resolve();
          });
          res.on('error', (err) => {
            errors.push(err.message);
            resolve();
          });
        },
      );
      req.on('socket', (s) => sockets.add(s));
      req.on('error', (err) => {
        errors.push(`${id}: ${err.message}`);
        resolve();
      });
      req.end(body);
    });
  const startedAt = performance.now();
  const end = startedAt + durationMs;
  let n = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (performance.now() < end) await post(`quota-${n++}`);
    }),
  );
  agent.destroy();
  return { answers, startedAt, connections: sockets.size, errors };
}

describe('partner rateLimit across two workers', { timeout: 60_000 }, () => {
  it('concurrent keep-alive load for ~3 s: 2xx stay within burst + perSecond·T yet exceed one worker share; the rest are 429 with Retry-After, counted and never published', async (t) => {
    const PER_SECOND = 50;
    const BURST = 20;
    const WORKERS = 2;
    const LANES = 16;
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('partner-quota'));
    const dir = mkdtempSync(path.join(tmpdir(), 'partner-quota-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const secret = writeKey(dir, 'quota.key');
    const bridge = await startBridge(
      baseConfig(
        [
          {
            name: 'quota',
            path: '/quota',
            mode: 'publish',
            exchange: '',
            routingKey: queue,
            partners: ['quota'],
          },
        ],
        {
          workers: WORKERS,
          partners: [
            {
              id: 'quota',
              auth: { apiKey: { keys: [`file:${secret.file}`] } },
              rateLimit: { perSecond: PER_SECOND, burst: BURST },
            },
          ],
          // Every 2xx gets an access line (with the worker's pid); refusals none.
          logging: { accessLogSampleRate: 1, errorAccessLogPerSecond: 0 },
        },
      ),
    );
    t.after(() => bridge.stop());
    const pids = await workerPids(bridge);
    assert.equal(pids.length, WORKERS, 'both workers up');

    const run = await hammer(`${bridge.url}/quota`, { 'x-api-key': secret.key }, LANES, 3000);
    const lastAnswer = Math.max(...run.answers.map((a) => a.endedAt));
    const seconds = (lastAnswer - run.startedAt) / 1000;
    const ok = run.answers.filter((a) => a.status >= 200 && a.status < 300);
    const limited = run.answers.filter((a) => a.status === 429);
    const others = run.answers.filter(
      (a) => a.status !== 429 && !(a.status >= 200 && a.status < 300),
    );
    t.diagnostic(
      `${run.answers.length} answers in ${seconds.toFixed(3)} s over ${run.connections} connections: ` +
        `${ok.length} 2xx, ${limited.length} 429, ${others.length} other, ${run.errors.length} errors`,
    );
    assert.deepEqual(run.errors, [], 'no request failed without an answer');
    assert.deepEqual(
      others.map((a) => `${a.status} ${String(a.code)}`),
      [],
      'only 2xx and 429',
    );
    assert.ok(run.connections > WORKERS, `more connections (${run.connections}) than workers`);

    // The documented ceiling: burst + perSecond·T for the partner over all workers (a burst below
    // the worker count still gives every worker one token).
    const ceiling = Math.max(BURST, WORKERS) + PER_SECOND * seconds;
    assert.ok(
      ok.length <= ceiling,
      `${ok.length} 2xx > ${ceiling.toFixed(1)} allowed in ${seconds} s`,
    );
    // One worker alone can never give more than its share: served by both, and clearly above 0.
    const oneWorker = Math.max(1, Math.floor(BURST / WORKERS)) + (PER_SECOND / WORKERS) * seconds;
    assert.ok(
      ok.length > oneWorker,
      `${ok.length} 2xx: no more than one worker's share (${oneWorker.toFixed(1)})`,
    );

    for (const a of limited) {
      assert.equal(a.code, 'BRIDGE_RATE_LIMITED', `429 for ${a.id}`);
      assert.match(String(a.retryAfter), /^\d+$/, `Retry-After of ${a.id} in whole seconds`);
      assert.ok(Number(a.retryAfter) >= 1, `Retry-After ${String(a.retryAfter)} >= 1`);
    }
    assert.ok(limited.length > 0, 'the load went over the limit');

    // Every 2xx in the queue once, nothing else.
    const published = await waitUntil(
      'the queue holds as many messages as 2xx answers',
      () => broker.count(queue),
      (n) => n >= ok.length,
      { timeoutMs: 5000 },
    );
    assert.equal(published, ok.length, 'messages in the queue = 2xx answers');
    assert.deepEqual(
      messageIds(await broker.drain(queue)).sort(),
      ok.map((a) => a.id).sort(),
      'the queue holds exactly the requests answered 2xx',
    );

    const metricsSeen = await waitUntil(
      'the partner metrics',
      async () => ({
        limited: await metricValue(bridge.adminUrl, RATE_LIMITED, { partner: 'quota' }),
        ok: await metricValue(bridge.adminUrl, PARTNER_REQUESTS, {
          partner: 'quota',
          status: '202',
        }),
        refused: await metricValue(bridge.adminUrl, PARTNER_REQUESTS, {
          partner: 'quota',
          status: '429',
        }),
      }),
      (m) => m.limited === limited.length && m.ok === ok.length && m.refused === limited.length,
      { timeoutMs: 10_000 },
    );
    assert.equal(metricsSeen.limited, limited.length);

    // Both workers served 2xx: their access lines, each naming the partner.
    const okLines = (): LogLine[] =>
      bridge.logs.filter((l) => l.msg === 'access' && l['status'] === 202);
    await waitUntil(
      'an access line per 2xx',
      () => okLines().length,
      (n) => n >= ok.length,
      { timeoutMs: 5000 },
    );
    const byPid = new Map<number, number>();
    for (const line of okLines()) {
      assert.equal(
        line['partner'],
        'quota',
        `access line names the partner: ${JSON.stringify(line)}`,
      );
      byPid.set(Number(line['pid']), (byPid.get(Number(line['pid'])) ?? 0) + 1);
    }
    t.diagnostic(`2xx per worker pid: ${JSON.stringify([...byPid])}`);
    assert.deepEqual([...byPid.keys()].sort(), [...pids].sort(), 'both workers answered 2xx');
  });
});
