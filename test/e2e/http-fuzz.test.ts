/**
 * E2E fuzz of the HTTP layer: a batch of malformed request heads (fast-check: request lines,
 * byte damage, risky header lines, framing and length mismatches) sent at once, each on its own
 * connection, to a real bridge. Whatever uWebSockets.js or the bridge decides, a partner either
 * gets a status from the contract's table or a closed connection; no worker crashes; every 2xx
 * is in the queue and nothing answered 4xx is. The seed is printed (set FUZZ_SEED to replay).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { baseConfig, startBridge, workerPids, type RunningBridge } from '../helpers/bridge.js';
import { openBroker, uniqueName } from '../helpers/broker.js';
import { metricValue } from '../helpers/metrics.js';
import { waitUntil } from '../helpers/poll.js';
import { openRaw, type RawConnection } from '../helpers/raw-http.js';

const CASES = Number(process.env['FUZZ_CASES'] ?? 250);
/** Statuses the contract lets a malformed or odd request end in (no 5xx but a 503 is a bug here). */
const ALLOWED = new Set([202, 400, 404, 405, 408, 413, 415, 431, 505]);
/** uWS's idle timer closes a connection whose head it is still waiting for within ~14 s. */
const SETTLE_MS = 25_000;

interface FuzzCase {
  readonly id: string;
  readonly bytes: Buffer;
}

const crlf = '\r\n';

const requestLine = fc.oneof(
  { weight: 4, arbitrary: fc.constant('POST /p HTTP/1.1') },
  fc.constantFrom(
    'POST /p HTTP/1.0',
    'POST /p HTTP/2.0',
    'POST /p HTTP/1.1x',
    'post /p HTTP/1.1',
    'GET /p HTTP/1.1',
    'PUT /p HTTP/1.1',
    'POST  /p HTTP/1.1',
    'POST /p  HTTP/1.1',
    'POST * HTTP/1.1',
    'POST //p HTTP/1.1',
    'POST http://bridge.test/p HTTP/1.1',
    'POST /p?x=1&x=2 HTTP/1.1',
    'POST /p#frag HTTP/1.1',
    'POST /%00 HTTP/1.1',
    'POST /nowhere HTTP/1.1',
    'POST',
    '',
  ),
);

const riskyHeader = fc.constantFrom(
  'Content-Length: abc',
  'Content-Length: -1',
  'Content-Length: +5',
  'Content-Length: 0x10',
  'Content-Length: 1e3',
  'Content-Length: 99999999999999999999',
  'Content-Length: 3',
  'Transfer-Encoding: chunked',
  'Transfer-Encoding: identity',
  'Transfer-Encoding: chunked, gzip',
  'Transfer-Encoding: CHUNKED',
  'Transfer-Encoding:  chunked ',
  'Host: second.test',
  'Host:',
  'Expect: 100-continue',
  'Expect: something-else',
  'Connection: close',
  'Connection: upgrade',
  'Upgrade: websocket',
  'Content-Encoding: gzip',
  'Content-Type: text/plain',
  'Content-Type: application/xml; charset=utf-16',
  'Content-Type: application/soap+xml',
  'NoColonHere',
  'Space Before : colon',
  'X-Folded: a\r\n b',
  'X-Nul: a\u0000b',
  'X-Del: a\u007fb',
  'X-High: \u00ff\u00fe',
  ': empty-name',
  `X-Long: ${'a'.repeat(5000)}`,
  'Idempotency-Key: ' + 'k'.repeat(200),
);

/** True in about `percent` % of the cases (weights, not fast-check's bias to small numbers). */
const sometimes = (percent: number): fc.Arbitrary<boolean> =>
  fc.oneof(
    { weight: percent, arbitrary: fc.constant(true) },
    { weight: 100 - percent, arbitrary: fc.constant(false) },
  );

/** Bytes that break parsers when dropped into a head. */
const damageByte = fc.constantFrom(0x00, 0x0d, 0x0a, 0x20, 0x3a, 0x09, 0x7f, 0xff, 0x61, 0x80);

const fuzzCase = (n: number): fc.Arbitrary<FuzzCase> =>
  fc
    .record({
      line: requestLine,
      extra: fc.array(riskyHeader, { maxLength: 2 }),
      dropHost: sometimes(10),
      duplicateLength: sometimes(15),
      lineEnd: fc.oneof({ weight: 9, arbitrary: fc.constant(crlf) }, fc.constant('\n')),
      damage: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, fc.tuple(fc.nat(), damageByte)),
      chunked: sometimes(30),
      truncateBodyBy: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, fc.constantFrom(1, 5)),
    })
    .map((c) => {
      const id = `fuzz-${n}-${Math.random().toString(36).slice(2, 8)}`;
      const body = `<order id="${id}"/>`;
      const chunked = c.chunked
        ? `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`
        : undefined;
      const headers = [
        ...(c.dropHost ? [] : ['Host: bridge.test']),
        'Content-Type: application/xml',
        chunked !== undefined ? 'Transfer-Encoding: chunked' : `Content-Length: ${body.length}`,
        ...(c.duplicateLength ? [`Content-Length: ${body.length + (c.chunked ? 0 : 1)}`] : []),
        `Idempotency-Key: ${id}`,
        ...c.extra,
      ];
      const head = Buffer.from(
        [c.line, ...headers].join(c.lineEnd) + c.lineEnd + c.lineEnd,
        'latin1',
      );
      if (c.damage !== null) {
        const [at, byte] = c.damage;
        head[at % head.length] = byte;
      }
      const payload = chunked ?? body;
      const sent = Buffer.from(payload.slice(0, payload.length - c.truncateBodyBy), 'latin1');
      return { id, bytes: Buffer.concat([head, sent]) };
    });

describe('HTTP fuzz: malformed request heads', { timeout: 120_000 }, () => {
  it(`answers ${CASES} malformed requests from the contract's table or closes; publishes only what it answered 2xx`, async (t) => {
    const fromEnv = process.env['FUZZ_SEED'];
    const seed = fromEnv ? Number(fromEnv) : Date.now() % 2 ** 31;
    t.diagnostic(`FUZZ_SEED=${seed} FUZZ_CASES=${CASES}`);
    const broker = await openBroker();
    let started: RunningBridge | undefined;
    const conns: RawConnection[] = [];
    t.after(async () => {
      for (const c of conns) c.destroy();
      await started?.stop();
      await broker.close();
    });
    const queue = await broker.queue(uniqueName('fuzz'));
    const bridge = (started = await startBridge(
      baseConfig([{ path: '/p', mode: 'publish', exchange: '', routingKey: queue }], {
        workers: 2,
      }),
    ));
    const pidsBefore = await workerPids(bridge);
    const cases = fc.sample(
      fc.nat().chain((n) => fuzzCase(n)),
      { numRuns: CASES, seed },
    );
    for (const c of cases) {
      const conn = await openRaw(bridge.port);
      conns.push(conn);
      void conn.write(c.bytes).catch(() => undefined); // a reset shows as a close below
    }
    // Each connection ends answered (the bridge closes after any answer to a damaged request,
    // keeps it open after a 2xx) or closed by uWS, by its idle timer at the latest.
    await waitUntil(
      'every fuzz connection answered or closed',
      () => conns.filter((c) => !c.isClosed() && c.responses.length === 0).length,
      (open) => open === 0,
      { timeoutMs: SETTLE_MS, intervalMs: 100 },
    );
    const byId = new Map<string, number[]>();
    cases.forEach((c, i) =>
      byId.set(
        c.id,
        (conns[i] as RawConnection).responses.map((r) => r.status),
      ),
    );
    for (const [id, statuses] of byId) {
      assert.ok(
        statuses.length <= 1,
        `${id}: one request, answers ${JSON.stringify(statuses)} (seed ${seed}): ${JSON.stringify(cases.find((c) => c.id === id)?.bytes.toString('latin1'))}`,
      );
      for (const s of statuses)
        assert.ok(
          ALLOWED.has(s),
          `${id}: status ${s} is not one the contract allows (seed ${seed})`,
        );
    }
    // A valid request after the batch: confirmed behind anything the batch published.
    const probe = await openRaw(bridge.port);
    conns.push(probe);
    await probe.write(
      'POST /p HTTP/1.1\r\nHost: bridge.test\r\nContent-Type: application/xml\r\nContent-Length: 9\r\n\r\n<probe/>\n',
    );
    assert.equal((await probe.responsesArrived(1))[0]?.status, 202, 'still serving');
    const published = new Set(
      (await broker.drain(queue)).map((m) => /id="([^"]+)"/.exec(m.content.toString())?.[1]),
    );
    for (const [id, statuses] of byId) {
      if (statuses[0] !== undefined && statuses[0] >= 200 && statuses[0] < 300)
        assert.ok(
          published.has(id),
          `${id} answered ${statuses[0]} but is not in the queue (seed ${seed})`,
        );
      if (statuses[0] !== undefined && statuses[0] >= 400)
        assert.ok(
          !published.has(id),
          `${id} answered ${statuses[0]} but was published (seed ${seed})`,
        );
    }
    assert.deepEqual(await workerPids(bridge), pidsBefore, 'no worker died');
    assert.equal(await metricValue(bridge.adminUrl, 'bridge_worker_restarts_total'), 0);
    const tally = new Map<string, number>();
    for (const statuses of byId.values()) {
      const key = statuses.length === 0 ? 'closed' : String(statuses[0]);
      tally.set(key, (tally.get(key) ?? 0) + 1);
    }
    t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries([...tally].sort()))}`);
  });
});
