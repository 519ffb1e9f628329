/** E2E, publish mode under concurrency: 2,000 varied XML bodies through 2 workers arrive exactly once, byte for byte, with the contract's properties. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import type { GetMessage } from 'amqplib';
import { baseConfig, startBridge, type RunningBridge } from '../helpers/bridge.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { header, send } from '../helpers/publish-http.js';

const REQUESTS = 2000;
const CONCURRENCY = 150;
const MAX_DOC_BYTES = 512 * 1024;
const SEED = 0x5eed_2024;
const CONTENT_TYPES = [
  'application/xml',
  'text/xml; charset=utf-8',
  'application/soap+xml',
  undefined,
] as const;

/** mulberry32: a tiny seeded PRNG, so every run sends the same documents. */
function prng(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = [
  '订单',
  '上海市浦东新区',
  '北京',
  'payment',
  'Grüße',
  '&amp;',
  '&lt;tag&gt;',
  '日本語テキスト',
  '한국어',
  '😀 emoji',
  'naïve café',
  '&#x4E2D;&#25991;',
  'plain ascii words',
];
const TINY = [
  { body: '<a/>', root: 'a' },
  { body: '<x>中</x>', root: 'x' },
  { body: '<c><![CDATA[<>&]]></c>', root: 'c' },
  { body: '<n:m xmlns:n="urn:n"/>', root: 'n:m' },
];

interface Doc {
  readonly body: Buffer;
  readonly root: string;
}

/** Document `i`: a few bytes up to 512 KiB (log-uniform, every 97th at the cap) of UTF-8 with CJK, CDATA, namespaces and attributes. */
function makeDoc(i: number): Doc {
  const rnd = prng(SEED + i);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T; // index < length
  const target =
    i % 97 === 0
      ? MAX_DOC_BYTES
      : Math.floor(Math.exp(Math.log(4) + rnd() * Math.log(MAX_DOC_BYTES / 4)));
  if (target < 48) {
    const tiny = TINY[i % TINY.length];
    assert.ok(tiny);
    return { body: Buffer.from(tiny.body), root: tiny.root };
  }
  const text = (): string =>
    Array.from({ length: 1 + Math.floor(rnd() * 6) }, () => pick(WORDS)).join(' ');
  const decl = i % 3 === 0 ? '<?xml version="1.0" encoding="UTF-8"?>\n' : '';
  const open = `${decl}<p:batch xmlns:p="urn:example:partner" xmlns="urn:example:default" seq="${i}" note="${pick(WORDS)}">`;
  const close = '</p:batch>';
  const parts: string[] = [open];
  let bytes = Buffer.byteLength(open) + Buffer.byteLength(close);
  for (let k = 0; ; k++) {
    let item: string;
    switch (Math.floor(rnd() * 4)) {
      case 0:
        item = `<p:item n="${k}" name="商品${k}" price="${(rnd() * 1000).toFixed(2)}">${text()}</p:item>`;
        break;
      case 1:
        item = `<note lang="zh"><![CDATA[${text()} <raw> & "quotes" ]] ]]></note>`;
        break;
      case 2:
        item = `<q:ext xmlns:q="urn:example:ext/${k}" q:attr='v&amp;${k}'><q:v>${text()}</q:v></q:ext>`;
        break;
      default:
        item = `<empty flag="true" k="${k}"/>\n`;
    }
    const size = Buffer.byteLength(item);
    if (bytes + size > target) break;
    parts.push(item);
    bytes += size;
  }
  parts.push(close);
  return { body: Buffer.from(parts.join(''), 'utf8'), root: 'p:batch' };
}

interface Outcome {
  status: number | undefined;
  error: string | undefined;
  requestId: string | undefined;
  messageId: string | undefined;
}

describe('publish mode: 2,000 concurrent requests over 2 workers', { timeout: 110_000 }, () => {
  let broker: TestBroker;
  let bridge: RunningBridge;
  let queue: string;
  const idPrefix = uniqueName('bulk');

  before(async () => {
    broker = await openBroker();
    queue = await broker.queue(uniqueName('bulk'));
    const config = baseConfig(
      [
        {
          path: '/bulk',
          mode: 'publish',
          exchange: '',
          routingKey: queue,
          forwardHeaders: ['x-partner-signature'],
        },
      ],
      { workers: 2, limits: { maxBodyBytes: 1024 * 1024 } },
    );
    const amqp = config['amqp'];
    assert.ok(typeof amqp === 'object' && amqp !== null);
    // A generous confirm deadline: this test is about integrity, not about a slow fsync on a shared box.
    bridge = await startBridge({ ...config, amqp: { ...amqp, confirmTimeoutMs: 30_000 } });
  });

  after(async () => {
    await bridge?.stop();
    await broker?.close();
  });

  it('answers 2xx to every request and the queue holds each message exactly once, byte for byte', async () => {
    const docs = Array.from({ length: REQUESTS }, (_, i) => makeDoc(i));
    const sizes = docs.map((d) => d.body.byteLength);
    assert.ok(Math.min(...sizes) <= 16, 'some bodies are a few bytes');
    assert.ok(
      Math.max(...sizes) > MAX_DOC_BYTES - 1024 && Math.max(...sizes) <= MAX_DOC_BYTES,
      'some bodies are ~512 KiB',
    );

    const keepAlive = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const outcomes: Outcome[] = Array.from({ length: REQUESTS }, () => ({
      status: undefined,
      error: undefined,
      requestId: undefined,
      messageId: undefined,
    }));
    let next = 0;
    const loop = async (): Promise<void> => {
      while (next < REQUESTS) {
        const i = next++;
        const doc = docs[i] as Doc; // i < REQUESTS = docs.length
        const outcome = outcomes[i] as Outcome; // same length
        const contentType = CONTENT_TYPES[i % CONTENT_TYPES.length];
        const headers: Record<string, string> = {
          'Idempotency-Key': `${idPrefix}-${i}`,
          'X-Partner-Signature': `sig-${i}`,
        };
        if (contentType !== undefined) headers['Content-Type'] = contentType;
        try {
          // Half on fresh connections, so the kernel spreads them over both workers.
          const reply = await send(`${bridge.url}/bulk?seq=${i}`, {
            headers,
            body: doc.body,
            agent: i % 2 === 0 ? keepAlive : false,
          });
          outcome.status = reply.status;
          outcome.requestId = header(reply, 'x-request-id');
          outcome.messageId = header(reply, 'message-id');
          if (reply.status < 200 || reply.status >= 300)
            outcome.error = reply.body.toString('utf8').slice(0, 200);
        } catch (err) {
          outcome.error = err instanceof Error ? err.message : String(err);
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: CONCURRENCY }, loop));
    } finally {
      keepAlive.destroy();
    }

    const failed = outcomes
      .map((o, i) => ({ i, ...o }))
      .filter((o) => o.status === undefined || o.status < 200 || o.status >= 300);
    assert.deepEqual(failed.slice(0, 5), [], `${failed.length} requests failed`);
    outcomes.forEach((o, i) => {
      assert.equal(o.messageId, `${idPrefix}-${i}`, `Message-Id of request ${i}`);
      assert.ok(o.requestId, `X-Request-Id of request ${i}`);
    });

    assert.equal(
      await broker.count(queue),
      REQUESTS,
      'the queue holds exactly one message per request',
    );
    const seen = new Set<number>();
    const check = (msg: GetMessage): void => {
      const id = String(msg.properties.messageId);
      assert.ok(id.startsWith(`${idPrefix}-`), `foreign message ${id}`);
      const i = Number(id.slice(idPrefix.length + 1));
      const doc = docs[i];
      const outcome = outcomes[i];
      assert.ok(doc && outcome, `unknown message id ${id}`);
      assert.ok(!seen.has(i), `message ${id} delivered twice`);
      seen.add(i);
      assert.ok(
        msg.content.equals(doc.body),
        `body of ${id} (${doc.body.byteLength} bytes sent, ${msg.content.byteLength} queued)`,
      );
      const p = msg.properties;
      assert.equal(p.deliveryMode, 2, id);
      assert.equal(p.contentType, CONTENT_TYPES[i % CONTENT_TYPES.length] ?? 'application/xml', id);
      assert.equal(p.appId, 'xml-amqp-bridge', id);
      assert.equal(typeof p.timestamp, 'number', id);
      const h: Record<string, unknown> = { ...p.headers };
      assert.deepEqual(
        {
          method: h['x-http-method'],
          path: h['x-http-path'],
          query: h['x-http-query'],
          remote: h['x-remote-addr'],
          requestId: h['x-request-id'],
          root: h['x-xml-root'],
          signature: h['x-partner-signature'],
        },
        {
          method: 'POST',
          path: '/bulk',
          query: `seq=${i}`,
          remote: '127.0.0.1',
          requestId: outcome.requestId,
          root: doc.root,
          signature: `sig-${i}`,
        },
        id,
      );
    };
    for (;;) {
      const msg = await broker.channel.get(queue, { noAck: true });
      if (msg === false) break;
      check(msg);
    }
    assert.equal(seen.size, REQUESTS);
  });
});
