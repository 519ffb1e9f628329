/** E2E, publish mode: every status of the README's table with its problem body and headers, the AMQP message the bridge publishes, header abuse and routing-key templates. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { GetMessage } from 'amqplib';
import {
  AMQP_URL,
  MAIN,
  baseConfig,
  startBridge,
  waitUntilReady,
  type LogLine,
  type RunningBridge,
} from '../helpers/bridge.js';
import { runToExit } from '../helpers/child.js';
import { startPrivateBroker, type PrivateBroker } from '../helpers/private-broker.js';
import { openBroker, uniqueName, type TestBroker, messageIds } from '../helpers/broker.js';
import {
  assertProblem,
  assertRequestId,
  assertRetryAfter,
  header,
  holdUpload,
  isUuid,
  send,
  type Reply,
} from '../helpers/publish-http.js';

const MAX_BODY = 64 * 1024;
const MAX_DEPTH = 8;
const MAX_HEADER = 100;
const UPLOAD_TIMEOUT_MS = 500;
const ACK_BODY = '<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>';
const CONTRACT_HEADERS = [
  'x-http-method',
  'x-http-path',
  'x-http-query',
  'x-remote-addr',
  'x-request-id',
  'x-xml-root',
];
const ORDER =
  '<?xml version="1.0" encoding="UTF-8"?>\n' +
  '<ord:order xmlns:ord="urn:example:orders" id="A-1" currency="CNY">' +
  '<ord:note><![CDATA[价格 < 100 & "引号"]]></ord:note><ord:city>上海</ord:city></ord:order>';
const XML = { 'Content-Type': 'application/xml' } as const;

/** baseConfig with `amqp` options merged instead of replaced. */
function configWith(
  routes: unknown[],
  amqp: Record<string, unknown>,
  extra: Record<string, unknown>,
): Record<string, unknown> {
  const base = baseConfig(routes);
  const baseAmqp = base['amqp'];
  assert.ok(typeof baseAmqp === 'object' && baseAmqp !== null);
  return { ...base, ...extra, amqp: { ...baseAmqp, ...amqp } };
}

function headersOf(msg: GetMessage): Record<string, unknown> {
  return { ...msg.properties.headers };
}

/** Resolves with the first log line after `from` (an index into bridge.logs) that matches. */
function logAfter(
  bridge: RunningBridge,
  from: number,
  match: (l: LogLine) => boolean,
  timeoutMs = 15_000,
): Promise<LogLine> {
  return bridge.waitForLog((l) => bridge.logs.indexOf(l) >= from && match(l), timeoutMs);
}

describe('publish mode: statuses, problem bodies and the AMQP message', { timeout: 90_000 }, () => {
  let broker: TestBroker;
  let bridge: RunningBridge;
  let exchange: string;
  let queue: string;
  let wechatEvents: string;
  let ccTarget: string;
  let ccQueue: string;
  const missingExchange = uniqueName('missing-ex');

  before(async () => {
    broker = await openBroker();
    exchange = await broker.exchange(uniqueName('st-ex'), 'topic');
    queue = await broker.queue(uniqueName('st-plain'));
    wechatEvents = await broker.queue(uniqueName('st-wechat-event'));
    ccTarget = uniqueName('other-queue');
    ccQueue = await broker.queue(ccTarget);
    await broker.channel.bindQueue(queue, exchange, 'plain');
    await broker.channel.bindQueue(wechatEvents, exchange, 'wechat.event');
    // A copy would land here if CC/BCC reached the broker as headers (sender-selected distribution).
    await broker.channel.bindQueue(ccQueue, exchange, ccTarget);
    await broker.channel.bindQueue(ccQueue, exchange, 'x');
    const routes = [
      {
        path: '/plain',
        mode: 'publish',
        exchange,
        routingKey: 'plain',
        forwardHeaders: ['X-Partner-Signature', 'x-trace-id'],
      },
      {
        path: '/ack',
        mode: 'publish',
        exchange,
        routingKey: 'plain',
        response: { status: 200, contentType: 'application/xml', body: ACK_BODY },
      },
      { path: '/unroutable', mode: 'publish', exchange, routingKey: 'nobody.home' },
      { path: '/missing-exchange', mode: 'publish', exchange: missingExchange, routingKey: 'x' },
      { path: '/wechat/notify', mode: 'publish', exchange, routingKey: 'wechat.{/xml/MsgType}' },
    ];
    // One worker: the request after a channel error provably reaches the worker that lost its channel.
    bridge = await startBridge(
      configWith(
        routes,
        {},
        {
          workers: 1,
          limits: {
            maxBodyBytes: MAX_BODY,
            maxXmlDepth: MAX_DEPTH,
            requestTimeoutMs: UPLOAD_TIMEOUT_MS,
            maxHeaderValueBytes: MAX_HEADER,
            allowDoctype: false,
          },
        },
      ),
    );
  });

  after(async () => {
    await bridge?.stop();
    await broker?.close();
  });

  /** Drains the route queue and asserts it held exactly `n` messages. */
  async function takeExactly(n: number, q = queue, what = ''): Promise<GetMessage[]> {
    const got = await broker.drain(q);
    assert.equal(got.length, n, `${what}: expected ${n} message(s) in ${q}, found ${got.length}`);
    return got;
  }

  async function takeOne(q = queue, what = ''): Promise<GetMessage> {
    const [msg] = await takeExactly(1, q, what);
    assert.ok(msg);
    return msg;
  }

  async function assertNothingPublished(what: string): Promise<void> {
    assert.equal(await broker.count(queue), 0, `${what}: nothing may be published`);
  }

  it('202 with an empty body after the confirm; the message carries the contract properties and headers', async () => {
    const before = Math.floor(Date.now() / 1000);
    const reply = await send(`${bridge.url}/plain?a=1&b=2`, {
      headers: {
        'Content-Type': 'text/xml; charset=utf-8',
        'Idempotency-Key': 'order-2024-0001',
        'X-Partner-Signature': 'sha256=c2lnbmF0dXJl',
        'X-Trace-Id': 'trace-1',
        'X-Not-Forwarded': 'must not appear',
        Authorization: 'Bearer must-not-appear',
        'User-Agent': 'partner/1.0',
      },
      body: ORDER,
    });
    const after = Math.floor(Date.now() / 1000);
    assert.equal(reply.status, 202, reply.body.toString());
    assert.equal(reply.body.length, 0);
    assert.equal(header(reply, 'message-id'), 'order-2024-0001');
    const requestId = assertRequestId(reply, '202');

    const msg = await takeOne();
    assert.deepEqual(msg.content, Buffer.from(ORDER, 'utf8'), 'body byte for byte');
    assert.equal(msg.fields.exchange, exchange);
    assert.equal(msg.fields.routingKey, 'plain');
    const p = msg.properties;
    assert.equal(p.deliveryMode, 2, 'persistent');
    assert.equal(p.contentType, 'text/xml; charset=utf-8');
    assert.equal(p.messageId, 'order-2024-0001');
    assert.equal(p.appId, 'xml-amqp-bridge');
    assert.equal(typeof p.timestamp, 'number');
    assert.ok(
      p.timestamp >= before && p.timestamp <= after,
      `timestamp ${String(p.timestamp)} within the request`,
    );
    const h = headersOf(msg);
    assert.deepEqual(
      Object.keys(h).sort(),
      [...CONTRACT_HEADERS, 'x-partner-signature', 'x-trace-id'].sort(),
    );
    assert.equal(h['x-http-method'], 'POST');
    assert.equal(h['x-http-path'], '/plain');
    assert.equal(h['x-http-query'], 'a=1&b=2');
    assert.equal(h['x-remote-addr'], '127.0.0.1');
    assert.equal(h['x-request-id'], requestId);
    assert.equal(h['x-xml-root'], 'ord:order');
    assert.equal(h['x-partner-signature'], 'sha256=c2lnbmF0dXJl');
    assert.equal(h['x-trace-id'], 'trace-1');
  });

  it('defaults content_type to application/xml and Message-Id to a fresh UUID when the request sends neither', async () => {
    const reply = await send(`${bridge.url}/plain`, { body: '<xml><a>1</a></xml>' });
    assert.equal(reply.status, 202, reply.body.toString());
    const messageId = header(reply, 'message-id');
    assert.ok(isUuid(messageId), `Message-Id ${String(messageId)} is a UUID`);
    const msg = await takeOne();
    assert.equal(msg.properties.contentType, 'application/xml');
    assert.equal(msg.properties.messageId, messageId);
    assert.equal(headersOf(msg)['x-http-query'], '');
    assert.equal(headersOf(msg)['x-xml-root'], 'xml');
  });

  it("answers a route's configured response exactly", async () => {
    const reply = await send(`${bridge.url}/ack`, {
      headers: { ...XML, 'Idempotency-Key': 'wx-4200000001' },
      body: '<xml><MsgType>event</MsgType></xml>',
    });
    assert.equal(reply.status, 200);
    assert.equal(header(reply, 'content-type'), 'application/xml');
    assert.equal(reply.body.toString('utf8'), ACK_BODY);
    assert.equal(header(reply, 'message-id'), 'wx-4200000001');
    assertRequestId(reply, 'configured response');
    assert.equal((await takeOne()).properties.messageId, 'wx-4200000001');
  });

  it('replaces an invalid Idempotency-Key with a fresh UUID', async () => {
    for (const key of ['k'.repeat(200), 'has a space', 'k'.repeat(129)]) {
      const reply = await send(`${bridge.url}/plain`, {
        headers: { ...XML, 'Idempotency-Key': key },
        body: '<a/>',
      });
      assert.equal(reply.status, 202, reply.body.toString());
      const messageId = header(reply, 'message-id');
      assert.ok(
        isUuid(messageId),
        `key ${JSON.stringify(key.slice(0, 20))}: Message-Id ${String(messageId)} is a UUID`,
      );
      assert.equal((await takeOne()).properties.messageId, messageId);
    }
    // The longest valid key is kept.
    const longest = 'k'.repeat(128);
    const reply = await send(`${bridge.url}/plain`, {
      headers: { ...XML, 'Idempotency-Key': longest },
      body: '<a/>',
    });
    assert.equal(header(reply, 'message-id'), longest);
    await takeExactly(1);
  });

  it('404 for an unknown path', async () => {
    assertProblem(
      await send(`${bridge.url}/nope`, { headers: XML, body: '<a/>' }),
      404,
      'POST /nope',
    );
    assertProblem(
      await send(`${bridge.url}/plain/extra`, { method: 'GET' }),
      404,
      'GET /plain/extra',
    );
  });

  it('405 with Allow: POST for other methods', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const reply = await send(
        `${bridge.url}/plain`,
        method === 'PUT' ? { method, headers: XML, body: '<a/>' } : { method },
      );
      assertProblem(reply, 405, method);
      assert.equal(header(reply, 'allow'), 'POST', `${method}: Allow`);
    }
    await assertNothingPublished('405');
  });

  it('415 for a Content-Type that is not XML', async () => {
    for (const type of ['application/json', 'text/plain; charset=utf-8']) {
      assertProblem(
        await send(`${bridge.url}/plain`, { headers: { 'Content-Type': type }, body: '<a/>' }),
        415,
        type,
      );
    }
    await assertNothingPublished('415');
  });

  it('415 naming the encoding for a compressed body; identity is fine', async () => {
    const gzipped = gzipSync('<a/>');
    for (const encoding of ['gzip', 'br', 'deflate, gzip']) {
      const problem = assertProblem(
        await send(`${bridge.url}/plain`, {
          headers: { ...XML, 'Content-Encoding': encoding },
          body: gzipped,
        }),
        415,
        encoding,
      );
      assert.ok(problem.detail.includes(`Content-Encoding "${encoding}"`), problem.detail);
    }
    await assertNothingPublished('415 for Content-Encoding');
    const plain = await send(`${bridge.url}/plain`, {
      headers: { ...XML, 'Content-Encoding': 'identity' },
      body: '<a/>',
    });
    assert.equal(plain.status, 202, plain.body.toString());
    assert.equal((await broker.drain(queue)).length, 1, 'the identity-encoded body was published');
  });

  it('400 for malformed XML', async () => {
    const bodies = [
      '<a><b></a>',
      '<a>',
      'not xml at all',
      '<a/><b/>',
      '<a/>trailing',
      ' <?xml version="1.0"?><a/>',
      '',
    ];
    for (const body of bodies) {
      assertProblem(
        await send(`${bridge.url}/plain`, { headers: XML, body }),
        400,
        JSON.stringify(body),
      );
    }
    await assertNothingPublished('malformed');
  });

  it(`400 for nesting deeper than maxXmlDepth (${MAX_DEPTH}); exactly ${MAX_DEPTH} levels pass`, async () => {
    const nest = (levels: number): string => '<e>'.repeat(levels) + '</e>'.repeat(levels);
    const problem = assertProblem(
      await send(`${bridge.url}/plain`, { headers: XML, body: nest(MAX_DEPTH + 1) }),
      400,
      'too deep',
    );
    assert.match(problem.detail, /deeper|depth|nest/i);
    await assertNothingPublished('too deep');
    const ok = await send(`${bridge.url}/plain`, { headers: XML, body: nest(MAX_DEPTH) });
    assert.equal(ok.status, 202, ok.body.toString());
    await takeExactly(1);
  });

  it('400 for a DOCTYPE when allowDoctype is false', async () => {
    const bodies = [
      '<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/cXML.dtd"><cXML/>',
      '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',
    ];
    for (const body of bodies) {
      const problem = assertProblem(
        await send(`${bridge.url}/plain`, { headers: XML, body }),
        400,
        body,
      );
      assert.match(problem.detail, /DOCTYPE/i);
    }
    await assertNothingPublished('doctype');
  });

  it('400 for an undefined entity', async () => {
    const problem = assertProblem(
      await send(`${bridge.url}/plain`, { headers: XML, body: '<xml>&nbsp;</xml>' }),
      400,
      '&nbsp;',
    );
    assert.match(problem.detail, /entity/i);
    await assertNothingPublished('undefined entity');
  });

  it('400 for a forwarded header longer than maxHeaderValueBytes; nothing is published', async () => {
    const reply = await send(`${bridge.url}/plain`, {
      headers: { ...XML, 'X-Partner-Signature': 's'.repeat(MAX_HEADER + 1) },
      body: '<a/>',
    });
    assertProblem(reply, 400, 'long forwarded header');
    await assertNothingPublished('long header');
    // At the limit it is forwarded as is.
    const ok = await send(`${bridge.url}/plain`, {
      headers: { ...XML, 'X-Partner-Signature': 's'.repeat(MAX_HEADER) },
      body: '<a/>',
    });
    assert.equal(ok.status, 202, ok.body.toString());
    const msg = await takeOne();
    assert.equal(headersOf(msg)['x-partner-signature'], 's'.repeat(MAX_HEADER));
  });

  it('never publishes CC/BCC request headers (sender-selected distribution)', async () => {
    const reply = await send(`${bridge.url}/plain`, {
      headers: { ...XML, CC: ccTarget, BCC: 'x', 'Idempotency-Key': 'cc-abuse' },
      body: '<a/>',
    });
    assert.equal(reply.status, 202, reply.body.toString());
    const msg = await takeOne();
    const names = Object.keys(headersOf(msg)).map((n) => n.toLowerCase());
    assert.ok(!names.includes('cc') && !names.includes('bcc'), `headers: ${names.join(', ')}`);
    assert.equal(await broker.count(ccQueue), 0, 'no copy reached the CC/BCC routing keys');
  });

  it('413 for a declared Content-Length over maxBodyBytes, before any body is sent', async () => {
    const upload = holdUpload(
      `${bridge.url}/plain`,
      { ...XML, 'Content-Length': String(MAX_BODY + 1) },
      '',
    );
    const reply = await upload.response;
    upload.req.destroy();
    assertProblem(reply, 413, 'declared length');
    await assertNothingPublished('413 declared');
  });

  it('413 while streaming a chunked body that grows past maxBodyBytes', async () => {
    const upload = holdUpload(
      `${bridge.url}/plain`,
      { ...XML, 'Transfer-Encoding': 'chunked' },
      '<xml><pad>',
    );
    await upload.sent;
    const chunk = Buffer.alloc(16 * 1024, 'a');
    let written = '<xml><pad>'.length;
    while (written <= MAX_BODY) {
      await new Promise<void>((resolve, reject) =>
        upload.req.write(chunk, (err) => (err ? reject(err) : resolve())),
      );
      written += chunk.length;
    }
    // The upload is never ended: the answer must come from counting the streamed bytes.
    const reply = await upload.response;
    upload.req.destroy();
    assertProblem(reply, 413, 'chunked');
    await assertNothingPublished('413 chunked');
  });

  it(`408 when the body upload stalls past requestTimeoutMs (${UPLOAD_TIMEOUT_MS} ms)`, async () => {
    const body = '<xml><stalled>' + 'x'.repeat(100) + '</stalled></xml>';
    const half = body.slice(0, body.length / 2);
    const upload = holdUpload(
      `${bridge.url}/plain`,
      { ...XML, 'Content-Length': String(body.length) },
      half,
    );
    const reply = await upload.response;
    upload.req.destroy();
    assertProblem(reply, 408, 'stalled upload');
    await assertNothingPublished('408');
  });

  it('502 when the message is unroutable (exchange exists, nothing bound)', async () => {
    const reply = await send(`${bridge.url}/unroutable`, {
      headers: { ...XML, 'Idempotency-Key': 'unroutable-1' },
      body: '<a/>',
    });
    const problem = assertProblem(reply, 502, 'unroutable');
    assert.equal(header(reply, 'message-id'), 'unroutable-1');
    assert.match(problem.detail, /nobody\.home/);
    // The returned message did not cost the channel.
    const ok = await send(`${bridge.url}/plain`, { headers: XML, body: '<a/>' });
    assert.equal(ok.status, 202, ok.body.toString());
    await takeExactly(1);
  });

  it('routes by the {/xml/MsgType} template; a missing value renders empty', async () => {
    const event = await send(`${bridge.url}/wechat/notify`, {
      headers: XML,
      body: '<xml><ToUserName><![CDATA[gh_1]]></ToUserName><MsgType><![CDATA[event]]></MsgType></xml>',
    });
    assert.equal(event.status, 202, event.body.toString());
    assert.equal((await takeOne(wechatEvents, 'wechat.event')).fields.routingKey, 'wechat.event');

    const missing = '<xml><ToUserName>gh_1</ToUserName></xml>';
    assertProblem(
      await send(`${bridge.url}/wechat/notify`, { headers: XML, body: missing }),
      502,
      'wechat. unbound',
    );

    const empty = await broker.queue(uniqueName('st-wechat-empty'));
    await broker.channel.bindQueue(empty, exchange, 'wechat.');
    const routed = await send(`${bridge.url}/wechat/notify`, { headers: XML, body: missing });
    assert.equal(routed.status, 202, routed.body.toString());
    assert.equal((await takeOne(empty, 'wechat.')).fields.routingKey, 'wechat.');
    assert.equal(await broker.count(wechatEvents), 0);
  });

  // Last in this suite, so a request refused while the channel reopens cannot spill into other tests.
  it('502 for a route whose exchange does not exist, and the very next request succeeds (channel recreated every time)', async () => {
    for (let round = 0; round < 4; round++) {
      const bad = await send(`${bridge.url}/missing-exchange`, { headers: XML, body: '<a/>' });
      assertProblem(bad, 502, `missing exchange, round ${round}`);
      const ok = await send(`${bridge.url}/plain`, {
        headers: { ...XML, 'Idempotency-Key': `after-404-${round}` },
        body: `<round n="${round}"/>`,
      });
      assert.equal(ok.status, 202, `round ${round}: ${ok.status} ${ok.body.toString()}`);
    }
    const got = await takeExactly(4);
    assert.deepEqual(messageIds(got), ['after-404-0', 'after-404-1', 'after-404-2', 'after-404-3']);
  });
});

describe('publish mode with allowDoctype: true', { timeout: 60_000 }, () => {
  let broker: TestBroker;
  let bridge: RunningBridge;
  let queue: string;

  before(async () => {
    broker = await openBroker();
    queue = await broker.queue(uniqueName('st-doctype'));
    bridge = await startBridge(
      configWith(
        [{ path: '/cxml', mode: 'publish', exchange: '', routingKey: queue }],
        {},
        {
          workers: 1,
          limits: { allowDoctype: true },
        },
      ),
    );
  });
  after(async () => {
    await bridge?.stop();
    await broker?.close();
  });

  it('lets an external DOCTYPE through but refuses an internal subset and undefined entities', async () => {
    const cxml =
      '<?xml version="1.0"?><!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/cXML.dtd"><cXML/>';
    const ok = await send(`${bridge.url}/cxml`, { headers: XML, body: cxml });
    assert.equal(ok.status, 202, ok.body.toString());
    const got = await broker.drain(queue);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.content.toString('utf8'), cxml);

    const refused = [
      '<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',
      '<!DOCTYPE x [<!ELEMENT x ANY>]><x/>',
      '<!DOCTYPE x SYSTEM "x.dtd" [ ]><x/>',
      '<!DOCTYPE x SYSTEM "file:///etc/passwd"><x>&ext;</x>',
    ];
    for (const body of refused) {
      assertProblem(await send(`${bridge.url}/cxml`, { headers: XML, body }), 400, body);
    }
    assert.equal(await broker.count(queue), 0, 'nothing published');
  });
});

describe('publish mode at maxUploads', { timeout: 60_000 }, () => {
  let broker: TestBroker;
  let bridge: RunningBridge;
  let queue: string;

  before(async () => {
    broker = await openBroker();
    queue = await broker.queue(uniqueName('st-inflight'));
    // One worker with one upload slot: a held upload occupies it (maxInFlight is not touched
    // by uploads; test/e2e/http-edges.test.ts shows the two apart).
    bridge = await startBridge(
      configWith(
        [{ path: '/one', mode: 'publish', exchange: '', routingKey: queue }],
        { maxInFlight: 1 },
        { workers: 1, limits: { maxUploads: 1 } },
      ),
    );
  });
  after(async () => {
    await bridge?.stop();
    await broker?.close();
  });

  it('503 with Retry-After at once while the only upload slot holds an upload; served again after it ends', async () => {
    const body = '<xml><held>' + 'h'.repeat(200) + '</held></xml>';
    const half = body.length / 2;
    const held = holdUpload(
      `${bridge.url}/one`,
      { ...XML, 'Content-Length': String(body.length), 'Idempotency-Key': 'held' },
      body.slice(0, half),
    );
    await held.sent;
    // Answered while the first upload is still open: nothing waits for a slot.
    const refused = await send(`${bridge.url}/one`, {
      headers: { ...XML, 'Idempotency-Key': 'refused' },
      body: '<a/>',
    });
    const problem = assertProblem(refused, 503, 'maxUploads');
    assert.match(problem.detail, /maxUploads \(1\)/);
    assertRetryAfter(refused, 'maxUploads');

    held.req.end(body.slice(half));
    const first: Reply = await held.response;
    assert.equal(first.status, 202, first.body.toString());
    const next = await send(`${bridge.url}/one`, {
      headers: { ...XML, 'Idempotency-Key': 'next' },
      body: '<a/>',
    });
    assert.equal(next.status, 202, next.body.toString());
    const ids = messageIds(await broker.drain(queue));
    assert.deepEqual(ids, ['held', 'next']);
  });
});

describe(
  'publish mode while the broker blocks publishers (memory alarm, on a private node)',
  { timeout: 120_000 },
  () => {
    let node: PrivateBroker;
    let broker: TestBroker;
    let bridge: RunningBridge;
    let queue: string;

    before(async () => {
      node = await startPrivateBroker('alarm');
      broker = await openBroker(node.url);
      queue = await broker.queue(uniqueName('st-alarm'));
      bridge = await startBridge(
        configWith(
          [{ path: '/alarm', mode: 'publish', exchange: '', routingKey: queue }],
          { urls: [node.url], confirmTimeoutMs: 1000 },
          { workers: 1 },
        ),
      );
    });
    after(async () => {
      await bridge?.stop();
      await broker?.close();
      await node?.stop();
    });

    it('503 with Retry-After while blocked, served again once the alarm clears', async (t) => {
      const restore = async (): Promise<void> => {
        await node.ctl('set_vm_memory_high_watermark', '0.4');
      };
      t.after(restore);
      const post = (id: string): Promise<Reply> =>
        send(`${bridge.url}/alarm`, {
          headers: { ...XML, 'Idempotency-Key': id },
          body: `<xml><id>${id}</id></xml>`,
        });
      const okIds: string[] = [];
      const refusedIds: string[] = [];

      const baseline = await post('before-alarm');
      assert.equal(baseline.status, 202, baseline.body.toString());
      okIds.push('before-alarm');

      const fromLog = bridge.logs.length;
      let blockedAt: number;
      try {
        await node.ctl('set_vm_memory_high_watermark', 'absolute', '1');
        // connection.blocked only arrives once this connection publishes after the alarm (docs/failure-modes.md
        // 2.4): that publish is never confirmed (504 after confirmTimeoutMs) or already refused.
        let first: Reply | undefined;
        for (let i = 0; i < 10 && first === undefined; i++) {
          const reply = await post(`probe-${i}`);
          if (reply.status === 202) okIds.push(`probe-${i}`);
          else first = reply;
        }
        assert.ok(first, 'a publish after the alarm was not confirmed');
        assert.ok(
          first.status === 504 || first.status === 503,
          `first answer after the alarm: ${first.status} ${first.body.toString()}`,
        );
        assertProblem(first, first.status, 'first after alarm');
        const blocked = await logAfter(
          bridge,
          fromLog,
          (l) => l.msg === 'broker state' && l['state'] === 'blocked',
        );
        blockedAt = bridge.logs.indexOf(blocked);

        for (let i = 0; i < 3; i++) {
          const reply = await post(`blocked-${i}`);
          assertProblem(reply, 503, `blocked ${i}`);
          assertRetryAfter(reply, `blocked ${i}`);
          refusedIds.push(`blocked-${i}`);
        }
        const readyz = await fetch(`${bridge.adminUrl}/readyz`);
        assert.equal(readyz.status, 503, 'not ready while blocked');
        await readyz.arrayBuffer();
      } finally {
        await restore();
      }
      await logAfter(
        bridge,
        blockedAt + 1,
        (l) => l.msg === 'broker state' && l['state'] === 'connected',
      );
      await waitUntilReady(bridge);
      for (let i = 0; i < 3; i++) {
        const reply = await post(`after-${i}`);
        assert.equal(
          reply.status,
          202,
          `after the alarm: ${reply.status} ${reply.body.toString()}`,
        );
        okIds.push(`after-${i}`);
      }
      const inQueue = new Set(messageIds(await broker.drain(queue)));
      for (const id of okIds) assert.ok(inQueue.has(id), `2xx ${id} is in the queue`);
      for (const id of refusedIds) assert.ok(!inQueue.has(id), `503 ${id} was never published`);
    });
  },
);

describe('publish route config refused at start', { timeout: 30_000 }, () => {
  it('refuses forwardHeaders naming CC/BCC: exit 2 and the problem paths in the log', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bridge-refused-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'config.yaml');
    const routes = [
      { path: '/a', mode: 'publish', exchange: '', routingKey: 'a', forwardHeaders: ['cc'] },
      {
        path: '/b',
        mode: 'publish',
        exchange: '',
        routingKey: 'b',
        forwardHeaders: ['x-ok', 'Bcc'],
      },
    ];
    writeFileSync(file, JSON.stringify({ ...baseConfig(routes), amqp: { urls: [AMQP_URL] } }));
    const run = await runToExit(process.execPath, [MAIN, '--config', file], { timeoutMs: 20_000 });
    const output = run.stdout + run.stderr;
    assert.equal(run.code, 2, output);
    assert.match(output, /routes\[0\]\.forwardHeaders\[0\]/);
    assert.match(output, /routes\[1\]\.forwardHeaders\[1\]/);
    assert.doesNotMatch(output, /routes\[1\]\.forwardHeaders\[0\]/, 'x-ok is fine');
    assert.doesNotMatch(output, /ready to serve/);
  });
});
