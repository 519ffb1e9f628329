/**
 * E2E, partner access control (#13): every verifier (apiKey, Standard Webhooks, WeChat, client
 * certificates through a trusted proxy) good, missing, wrong, expired, replayed and rotated (two
 * keys at once, then a SIGHUP with rewritten secret files); 403 for a partner not on the route or
 * outside its sources; the WeChat echostr handshake; the metrics, the access lines and the celery
 * task headers; and the partner config errors refused at start.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { GetMessage } from 'amqplib';
import {
  MAIN,
  baseConfig,
  parseLogLine,
  startBridge,
  waitUntilReady,
  workerPids,
  type LogLine,
  type RunningBridge,
} from '../helpers/bridge.js';
import { messageIds, openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { runToExit, type Run } from '../helpers/child.js';
import { parseExposition, sampleValue, waitForMetric, type Sample } from '../helpers/metrics.js';
import {
  assertProblem,
  header,
  holdUpload,
  send,
  type Reply,
  type SendOptions,
} from '../helpers/publish-http.js';
import { signStandardWebhook } from '../../src/worker/partners/standard-webhooks.js';
import { wechatSignature } from '../../src/worker/partners/wechat-signature.js';

const XML = { 'Content-Type': 'application/xml' } as const;
const TOLERANCE_SECONDS = 300;
const REALM = 'Bearer realm="xml-amqp-bridge"';

const hex = (bytes: number): string => randomBytes(bytes).toString('hex');
const whsec = (): string => `whsec_${randomBytes(24).toString('base64')}`;
const now = (): number => Math.floor(Date.now() / 1000);

// Fresh secrets per run; none may ever appear in an answer.
const ACME_K1 = hex(24);
const ACME_K2 = hex(24);
const ACME_K2_NEW = hex(24);
const BEARER_K = hex(24);
const FENCED_K = hex(24);
const HOOK_S1 = whsec();
const HOOK_S2 = whsec();
const HOOK_S2_NEW = whsec();
const WX_TOKEN = `wx${hex(8)}`;
const WX_TOKEN_NEW = `wx${hex(8)}`;
const SECRETS = [
  ACME_K1,
  ACME_K2,
  ACME_K2_NEW,
  BEARER_K,
  FENCED_K,
  HOOK_S1,
  HOOK_S2,
  HOOK_S2_NEW,
  WX_TOKEN,
  WX_TOKEN_NEW,
];
const SUBJECT = 'CN=acme-gateway,O=Acme';
const SUBJECT_2 = 'CN=acme-gateway-2,O=Acme';
const SUBJECT_NEW = 'CN=acme-gateway-3,O=Acme';
const PROXY_CLIENT = '198.51.100.23';

function codeOf(reply: Reply): unknown {
  const parsed: unknown = JSON.parse(reply.body.toString('utf8'));
  assert.ok(typeof parsed === 'object' && parsed !== null, 'problem body is an object');
  return (parsed as Record<string, unknown>)['code']; // narrowed to an object just above
}

/** A problem answer with `status` and `code` that quotes no secret. */
function assertRefused(reply: Reply, status: number, code: string, what: string): void {
  assertProblem(reply, status, what);
  assert.equal(codeOf(reply), code, `${what}: code`);
  const text = reply.body.toString('utf8');
  for (const secret of SECRETS)
    assert.ok(!text.includes(secret), `${what}: the answer quotes a secret`);
}

const unauthorized = (reply: Reply, what: string): void =>
  assertRefused(reply, 401, 'BRIDGE_UNAUTHORIZED', what);
const forbidden = (reply: Reply, what: string): void =>
  assertRefused(reply, 403, 'BRIDGE_FORBIDDEN', what);

function assertAccepted(reply: Reply, what: string): void {
  assert.ok(
    reply.status >= 200 && reply.status < 300,
    `${what}: expected 2xx, got ${reply.status}: ${reply.body.toString('utf8')}`,
  );
}

/** Standard Webhooks headers for `body`, signed with `secret` unless a signature is given. */
function webhookHeaders(
  secret: string,
  id: string,
  timestamp: number,
  body: string,
  signature?: string,
): Record<string, string> {
  return {
    ...XML,
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signature ?? signStandardWebhook(secret, id, timestamp, body),
  };
}

const webhookId = (): string => `msg_${hex(10)}`;

/** The WeChat query string (signature, timestamp, nonce, plus `extra`) signed with `token`. */
function wechatQuery(token: string, timestamp = now(), extra: Record<string, string> = {}): string {
  const nonce = hex(6);
  return new URLSearchParams({
    signature: wechatSignature(token, String(timestamp), nonce),
    timestamp: String(timestamp),
    nonce,
    ...extra,
  }).toString();
}

/** What nginx sets for a verified client certificate (deploy/nginx), plus the client address. */
function certHeaders(
  subject: string,
  verify = 'SUCCESS',
  realIp = PROXY_CLIENT,
): Record<string, string> {
  return { ...XML, 'X-Client-Verify': verify, 'X-Client-Subject': subject, 'X-Real-IP': realIp };
}

function headersOf(msg: GetMessage): Record<string, unknown> {
  return { ...msg.properties.headers };
}

describe('partner access control', { timeout: 120_000 }, () => {
  const credentials = mkdtempSync(path.join(tmpdir(), 'bridge-partners-'));
  const fencedKeyFile = path.join(credentials, 'fenced-abs.k');
  let broker: TestBroker;
  let bridge: RunningBridge;
  let queue: string;
  const lateQueue = uniqueName('partners-late');
  const celeryQueue = uniqueName('partners-celery');

  function partners(
    acmeKeys: string[],
    hookSecrets: string[],
    subjects: string[],
  ): Record<string, unknown>[] {
    return [
      { id: 'acme', auth: { apiKey: { header: 'x-api-key', keys: acmeKeys } } },
      { id: 'bearerco', auth: { apiKey: { header: 'authorization', keys: ['file:bearer.k'] } } },
      {
        id: 'hooks',
        auth: { webhook: { secrets: hookSecrets, toleranceSeconds: TOLERANCE_SECONDS } },
      },
      {
        id: 'wx',
        auth: { wechat: { token: 'file:wx.token', toleranceSeconds: TOLERANCE_SECONDS } },
      },
      { id: 'gw', auth: { clientCert: { subjects } } },
      {
        id: 'fenced',
        sources: ['203.0.113.0/24'],
        auth: { apiKey: { keys: [`file:${fencedKeyFile}`] } },
      },
    ];
  }

  function routes(): Record<string, unknown>[] {
    const publish = (name: string, ids: string[] | undefined, routingKey = queue) => ({
      name,
      path: name === 'open-door' ? '/open' : `/p/${name}`,
      mode: 'publish',
      exchange: '',
      routingKey,
      ...(ids === undefined ? {} : { partners: ids }),
    });
    return [
      publish('acme', ['acme']),
      publish('bearer', ['bearerco']),
      publish('hooks', ['hooks']),
      publish('wx', ['wx']),
      publish('gw', ['gw', 'fenced']),
      publish('m', ['acme', 'hooks', 'fenced']),
      // Unroutable (no such queue yet) until the test declares it: 502, then 2xx.
      publish('late', ['hooks'], lateQueue),
      publish('open-door', undefined),
      {
        name: 'celery',
        path: '/p/celery',
        mode: 'celery',
        task: 'partners.record',
        queue: celeryQueue,
        wait: false,
        partners: ['acme', 'hooks', 'gw'],
      },
    ];
  }

  function config(
    acmeKeys = ['file:acme.k1', 'file:acme.k2'],
    hookSecrets = ['file:hook.s1', 'file:hook.s2'],
    subjects = [SUBJECT, SUBJECT_2],
  ): Record<string, unknown> {
    return baseConfig(routes(), {
      trustedProxies: ['127.0.0.1/32', '::1/128'],
      partners: partners(acmeKeys, hookSecrets, subjects),
      logging: { accessLogSampleRate: 1, errorAccessLogPerSecond: 10_000 },
    });
  }

  function writeSecret(name: string, value: string): void {
    writeFileSync(path.isAbsolute(name) ? name : path.join(credentials, name), `${value}\n`, {
      mode: 0o600,
    });
  }

  before(async () => {
    writeSecret('acme.k1', ACME_K1);
    writeSecret('acme.k2', ACME_K2);
    writeSecret('bearer.k', BEARER_K);
    writeSecret(fencedKeyFile, FENCED_K);
    writeSecret('hook.s1', HOOK_S1);
    writeSecret('hook.s2', HOOK_S2);
    writeSecret('wx.token', WX_TOKEN);
    broker = await openBroker();
    queue = await broker.queue(uniqueName('partners'));
    bridge = await startBridge(config(), { env: { CREDENTIALS_DIRECTORY: credentials } });
  });

  after(async () => {
    await bridge?.stop();
    if (broker) {
      // The bridge declared the celery queue and a direct exchange of the same name.
      const ch = await broker.connection.createChannel();
      await ch.deleteQueue(celeryQueue);
      await ch.deleteExchange(celeryQueue);
      await ch.close();
      await broker.close();
    }
    rmSync(credentials, { recursive: true, force: true });
  });

  // What a failed test left behind must not fail the next one: each asserts its own messages.
  beforeEach(async () => {
    await broker.drain(queue);
  });

  const post = (route: string, options: SendOptions): Promise<Reply> =>
    send(`${bridge.url}${route}`, { body: '<order n="1"/>', ...options });

  async function takeExactly(n: number, what: string, q = queue): Promise<GetMessage[]> {
    const got = await broker.drain(q);
    assert.equal(got.length, n, `${what}: expected ${n} message(s) in ${q}, found ${got.length}`);
    return got;
  }

  function logAfter(from: number, match: (l: LogLine) => boolean, timeoutMs = 15_000) {
    return bridge.waitForLog((l) => bridge.logs.indexOf(l) >= from && match(l), timeoutMs);
  }

  /** The access line of the request that got `reply` (by its X-Request-Id). */
  function accessLineOf(reply: Reply): Promise<LogLine> {
    const id = header(reply, 'x-request-id');
    assert.ok(id !== undefined, 'X-Request-Id');
    return bridge.waitForLog((l) => l.msg === 'access' && l['requestId'] === id, 10_000);
  }

  /** The pid of the worker that answered `reply` (its access line's). */
  async function servedBy(reply: Reply): Promise<number> {
    const pid = (await accessLineOf(reply))['pid'];
    assert.equal(typeof pid, 'number', 'access line pid');
    return pid as number; // checked just above
  }

  /**
   * Repeats `attempt` over fresh connections until every worker answered at least once (replay
   * memory is per worker), checking each answer; at most 40 tries.
   */
  async function onEveryWorker(
    what: string,
    attempt: () => Promise<Reply>,
    check: (reply: Reply, i: number) => void,
  ): Promise<void> {
    const workers = await workerPids(bridge);
    const seen = new Set<number>();
    for (let i = 0; i < 40 && seen.size < workers.length; i++) {
      const reply = await attempt();
      check(reply, i);
      seen.add(await servedBy(reply));
    }
    assert.deepEqual(
      [...seen].sort(),
      [...workers].sort(),
      `${what}: not answered by every worker`,
    );
  }

  it('apiKey: either of two keys is accepted, the message carries x-partner (a client X-Partner is not believed); missing or wrong keys are 401', async () => {
    for (const key of [ACME_K1, ACME_K2]) {
      const reply = await post('/p/acme', {
        headers: { ...XML, 'x-api-key': key, 'X-Partner': 'evil' },
      });
      assertAccepted(reply, 'acme key');
    }
    const got = await takeExactly(2, 'two good keys');
    for (const msg of got) assert.equal(headersOf(msg)['x-partner'], 'acme');

    const missing = await post('/p/acme', { headers: XML });
    unauthorized(missing, 'no key');
    assert.equal(
      header(missing, 'www-authenticate'),
      undefined,
      'WWW-Authenticate only where a partner uses the authorization header',
    );
    for (const [what, key] of [
      ['unknown key', hex(24)],
      ['a good key plus a character', `${ACME_K1}0`],
      ['a prefix of a good key', ACME_K1.slice(0, 40)],
      ['a good key in upper case', ACME_K1.toUpperCase()],
      ['empty', ''],
    ] as const) {
      unauthorized(await post('/p/acme', { headers: { ...XML, 'x-api-key': key } }), what);
    }
    // The right key in another header is no key.
    unauthorized(
      await post('/p/acme', { headers: { ...XML, 'x-api-token': ACME_K1 } }),
      'key in another header',
    );
    await takeExactly(0, 'refused requests');
  });

  it('apiKey in Authorization: Bearer <key> (any case of the scheme); its 401 carries WWW-Authenticate', async () => {
    for (const value of [`Bearer ${BEARER_K}`, `bearer ${BEARER_K}`]) {
      assertAccepted(
        await post('/p/bearer', { headers: { ...XML, Authorization: value } }),
        `Authorization: ${value.slice(0, 6)} <key>`,
      );
    }
    for (const msg of await takeExactly(2, 'bearer'))
      assert.equal(headersOf(msg)['x-partner'], 'bearerco');

    const missing = await post('/p/bearer', { headers: XML });
    unauthorized(missing, 'no Authorization');
    assert.equal(header(missing, 'www-authenticate'), REALM);
    for (const [what, value] of [
      ['unknown bearer key', `Bearer ${hex(24)}`],
      ['another scheme', `Basic ${BEARER_K}`],
      ['a good key plus a character', `Bearer ${BEARER_K}0`],
    ] as const) {
      const wrong = await post('/p/bearer', { headers: { ...XML, Authorization: value } });
      unauthorized(wrong, what);
      assert.equal(header(wrong, 'www-authenticate'), REALM, `${what}: WWW-Authenticate`);
    }
    await takeExactly(0, 'refused bearer requests');
  });

  it('apiKey in Authorization: the bare key is accepted too (spec: the header value equals one of the keys; Bearer is allowed, not required)', async () => {
    const reply = await post('/p/bearer', { headers: { ...XML, Authorization: BEARER_K } });
    assertAccepted(reply, 'Authorization: <key>');
    const [msg] = await takeExactly(1, 'bare key');
    assert.equal(msg && headersOf(msg)['x-partner'], 'bearerco');
  });

  it('webhook: signed with either secret is 2xx; message_id and Message-Id are the webhook-id (over Idempotency-Key); x-partner', async () => {
    const body = '<event type="paid"/>';
    const id1 = webhookId();
    const first = await post('/p/hooks', {
      headers: {
        ...webhookHeaders(HOOK_S1, id1, now(), body),
        'Idempotency-Key': 'idem-not-used',
      },
      body,
    });
    assertAccepted(first, 'secret 1');
    assert.equal(header(first, 'message-id'), id1);

    // A list of signatures: one that matches is enough.
    const id2 = webhookId();
    const ts = now();
    const good = signStandardWebhook(HOOK_S2, id2, ts, body);
    const bogus = signStandardWebhook(whsec(), id2, ts, body);
    const second = await post('/p/hooks', {
      headers: webhookHeaders(HOOK_S2, id2, ts, body, `${bogus} v1a,c29tZXRoaW5n ${good}`),
      body,
    });
    assertAccepted(second, 'secret 2 among other signatures');
    assert.equal(header(second, 'message-id'), id2);

    const got = await takeExactly(2, 'two webhooks');
    assert.deepEqual(messageIds(got), [id1, id2]);
    for (const msg of got) {
      assert.equal(headersOf(msg)['x-partner'], 'hooks');
      assert.equal(msg.content.toString('utf8'), body);
    }
  });

  it('webhook: missing, malformed, wrong secret, other body or other id are 401, nothing published', async () => {
    const body = '<event type="paid"/>';
    const ts = now();
    const id = webhookId();
    const signed = webhookHeaders(HOOK_S1, id, ts, body);
    const without = (name: string): Record<string, string> =>
      Object.fromEntries(Object.entries(signed).filter(([k]) => k !== name));
    const cases: Array<[string, Record<string, string>, string]> = [
      ['no webhook headers', { ...XML }, body],
      ['no signature', without('webhook-signature'), body],
      ['no timestamp', without('webhook-timestamp'), body],
      ['no id', without('webhook-id'), body],
      ['timestamp not digits', { ...signed, 'webhook-timestamp': `${ts}.0` }, body],
      ['no v1 entry', { ...signed, 'webhook-signature': 'v2,c2lnbmF0dXJl' }, body],
      ['an unknown secret', webhookHeaders(whsec(), id, ts, body), body],
      ['a signature of another body', signed, '<event type="refund"/>'],
      ['a signature of another id', { ...signed, 'webhook-id': webhookId() }, body],
      [
        'a signature of another timestamp',
        { ...signed, 'webhook-timestamp': String(ts - 1) },
        body,
      ],
    ];
    for (const [what, headers, sent] of cases)
      unauthorized(await post('/p/hooks', { headers, body: sent }), what);
    await takeExactly(0, 'refused webhooks');
  });

  it('webhook: a timestamp outside the tolerance is 401, answered before the body is sent', async () => {
    const body = '<event/>';
    for (const offset of [-(TOLERANCE_SECONDS + 100), TOLERANCE_SECONDS + 100]) {
      const id = webhookId();
      const ts = now() + offset;
      unauthorized(
        await post('/p/hooks', { headers: webhookHeaders(HOOK_S1, id, ts, body), body }),
        `timestamp ${offset} s off`,
      );
    }
    const id = webhookId();
    const ts = now() - (TOLERANCE_SECONDS + 100);
    const held = holdUpload(
      `${bridge.url}/p/hooks`,
      { ...webhookHeaders(HOOK_S1, id, ts, body), 'Content-Length': String(body.length) },
      '',
    );
    let timer: NodeJS.Timeout | undefined;
    try {
      const reply = await Promise.race([
        held.response,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error('no answer to an expired webhook within 5 s of its headers')),
            5000,
          );
        }),
      ]);
      unauthorized(reply, 'expired, body held back');
    } finally {
      clearTimeout(timer);
      held.req.destroy();
    }
    await takeExactly(0, 'expired webhooks');
  });

  it('webhook: a webhook-id accepted once is 401 when replayed to the same worker, and only one message is published', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const body = '<event n="replay"/>';
      const id = webhookId();
      const headers = webhookHeaders(HOOK_S1, id, now(), body);
      const first = await post('/p/hooks', { headers, body, agent });
      assertAccepted(first, 'first delivery');
      const replay = await post('/p/hooks', { headers, body, agent });
      unauthorized(replay, 'the same request again');
      // Freshly signed (new timestamp, other secret): the id still counts.
      const resigned = await post('/p/hooks', {
        headers: webhookHeaders(HOOK_S2, id, now() + 1, body),
        body,
        agent,
      });
      unauthorized(resigned, 'the same id, signed anew');
      const pids = await Promise.all([first, replay, resigned].map(servedBy));
      assert.equal(
        new Set(pids).size,
        1,
        `one keep-alive connection, one worker: ${JSON.stringify(pids)}`,
      );
      const [msg] = await takeExactly(1, 'replayed webhook');
      assert.equal(msg?.properties.messageId, id);
    } finally {
      agent.destroy();
    }
  });

  it('webhook: an id whose request failed is not remembered: bad signatures, then 502s on every worker, then the retry is 2xx', async () => {
    const body = '<event n="retry"/>';
    const id = webhookId();
    await onEveryWorker(
      'bad signature',
      () => post('/p/late', { headers: webhookHeaders(whsec(), id, now(), body), body }),
      (reply, i) => unauthorized(reply, `bad signature #${i}`),
    );
    await onEveryWorker(
      'unroutable',
      () => post('/p/late', { headers: webhookHeaders(HOOK_S1, id, now(), body), body }),
      (reply, i) =>
        assertProblem(reply, 502, `attempt #${i} while the queue is missing (401 = remembered)`),
    );
    await broker.queue(lateQueue);
    const retry = await post('/p/late', {
      headers: webhookHeaders(HOOK_S1, id, now(), body),
      body,
    });
    assertAccepted(retry, 'retry once the queue exists');
    assert.equal(header(retry, 'message-id'), id);
    const [msg] = await takeExactly(1, 'the retried webhook', lateQueue);
    assert.equal(msg?.properties.messageId, id);
    assert.equal(msg && headersOf(msg)['x-partner'], 'hooks');
  });

  it('wechat: a valid signature is 2xx with x-partner; missing, wrong and expired are 401', async () => {
    const body = '<xml><MsgType><![CDATA[text]]></MsgType></xml>';
    const good = await post(`/p/wx?${wechatQuery(WX_TOKEN, now(), { openid: 'o1' })}`, {
      headers: XML,
      body,
    });
    assertAccepted(good, 'wechat');
    const [msg] = await takeExactly(1, 'wechat');
    assert.equal(msg && headersOf(msg)['x-partner'], 'wx');

    const ts = String(now());
    const nonce = hex(6);
    const signature = wechatSignature(WX_TOKEN, ts, nonce);
    const q = (params: Record<string, string>): string => new URLSearchParams(params).toString();
    const cases: Array<[string, string]> = [
      ['no query', ''],
      ['no signature', q({ timestamp: ts, nonce })],
      ['no timestamp', q({ signature, nonce })],
      ['no nonce', q({ signature, timestamp: ts })],
      ['another token', wechatQuery(`wx${hex(8)}`)],
      ['another nonce', q({ signature, timestamp: ts, nonce: hex(6) })],
      ['another timestamp', q({ signature, timestamp: String(Number(ts) - 1), nonce })],
      ['expired', wechatQuery(WX_TOKEN, now() - (TOLERANCE_SECONDS + 100))],
      ['from the future', wechatQuery(WX_TOKEN, now() + TOLERANCE_SECONDS + 100)],
    ];
    for (const [what, query] of cases)
      unauthorized(await post(`/p/wx?${query}`, { headers: XML, body }), what);
    await takeExactly(0, 'refused wechat requests');
  });

  it('wechat: the echostr GET handshake', async () => {
    const echostr = `echo${hex(8)}`;
    const ok = await send(`${bridge.url}/p/wx?${wechatQuery(WX_TOKEN, now(), { echostr })}`, {
      method: 'GET',
    });
    assert.equal(ok.status, 200, ok.body.toString('utf8'));
    assert.match(header(ok, 'content-type') ?? '', /^text\/plain\b/);
    assert.equal(ok.body.toString('utf8'), echostr);

    const bad = await send(`${bridge.url}/p/wx?${wechatQuery(`wx${hex(8)}`, now(), { echostr })}`, {
      method: 'GET',
    });
    unauthorized(bad, 'handshake with a wrong signature');
    assert.ok(!bad.body.toString('utf8').includes(echostr), 'the echostr is not echoed');
    unauthorized(
      await send(
        `${bridge.url}/p/wx?${wechatQuery(WX_TOKEN, now() - (TOLERANCE_SECONDS + 100), { echostr })}`,
        { method: 'GET' },
      ),
      'handshake with an expired timestamp',
    );
    const noEcho = await send(`${bridge.url}/p/wx?${wechatQuery(WX_TOKEN)}`, { method: 'GET' });
    assert.equal(noEcho.status, 405, 'GET without echostr');
    const elsewhere = await send(
      `${bridge.url}/p/acme?${wechatQuery(WX_TOKEN, now(), { echostr })}`,
      { method: 'GET' },
    );
    assert.equal(elsewhere.status, 405, 'GET with echostr on a route without a wechat partner');
    await takeExactly(0, 'handshakes publish nothing');
  });

  it('clientCert through a trusted proxy: listed subjects are 2xx with the proxied address; missing, wrong or unverified are 401; from an untrusted peer the headers count for nothing', async () => {
    for (const subject of [SUBJECT, SUBJECT_2])
      assertAccepted(await post('/p/gw', { headers: certHeaders(subject) }), subject);
    for (const msg of await takeExactly(2, 'client certificates')) {
      assert.equal(headersOf(msg)['x-partner'], 'gw');
      assert.equal(headersOf(msg)['x-remote-addr'], PROXY_CLIENT);
    }

    unauthorized(await post('/p/gw', { headers: XML }), 'no certificate headers');
    unauthorized(
      await post('/p/gw', { headers: { ...XML, 'X-Client-Subject': SUBJECT } }),
      'subject without X-Client-Verify',
    );
    for (const [what, headers] of [
      ['another subject', certHeaders('CN=mallory,O=Acme')],
      ['the subject in lower case', certHeaders(SUBJECT.toLowerCase())],
      ['a subject with more in it', certHeaders(`${SUBJECT},C=CN`)],
      ['verify FAILED', certHeaders(SUBJECT, 'FAILED:certificate has expired')],
      ['verify NONE', certHeaders(SUBJECT, 'NONE')],
    ] as const) {
      unauthorized(await post('/p/gw', { headers }), what);
    }

    // 127.0.0.2 is loopback too, but not in trustedProxies.
    const untrusted = new Agent({ localAddress: '127.0.0.2' });
    try {
      unauthorized(
        await post('/p/gw', { headers: certHeaders(SUBJECT), agent: untrusted }),
        'certificate headers from an untrusted peer',
      );
      assertAccepted(
        await post('/open', { headers: certHeaders(SUBJECT), agent: untrusted }),
        'open route from 127.0.0.2',
      );
    } finally {
      untrusted.destroy();
    }
    const [open] = await takeExactly(1, 'open route from an untrusted peer');
    assert.ok(open);
    assert.equal(headersOf(open)['x-remote-addr'], '127.0.0.2', 'X-Real-IP of an untrusted peer');
    assert.equal(headersOf(open)['x-partner'], undefined);
  });

  it('sources are checked against X-Real-IP, else the last X-Forwarded-For entry, of a trusted peer', async () => {
    const key = { ...XML, 'x-api-key': FENCED_K };
    const inside = await post('/p/gw', { headers: { ...key, 'X-Real-IP': '203.0.113.7' } });
    assertAccepted(inside, 'X-Real-IP inside the sources');
    const lastInside = await post('/p/gw', {
      headers: { ...key, 'X-Forwarded-For': '198.51.100.1, 203.0.113.8' },
    });
    assertAccepted(lastInside, 'last X-Forwarded-For entry inside');
    const got = await takeExactly(2, 'fenced partner inside its sources');
    assert.deepEqual(
      got.map((m) => [headersOf(m)['x-partner'], headersOf(m)['x-remote-addr']]),
      [
        ['fenced', '203.0.113.7'],
        ['fenced', '203.0.113.8'],
      ],
    );

    forbidden(await post('/p/gw', { headers: key }), 'the peer itself (127.0.0.1) is outside');
    forbidden(
      await post('/p/gw', { headers: { ...key, 'X-Forwarded-For': '203.0.113.8, 198.51.100.1' } }),
      'last X-Forwarded-For entry outside',
    );
    forbidden(
      await post('/p/gw', {
        headers: { ...key, 'X-Real-IP': '198.51.100.1', 'X-Forwarded-For': '203.0.113.8' },
      }),
      'X-Real-IP outside wins over X-Forwarded-For',
    );
    await takeExactly(0, 'fenced partner outside its sources');
  });

  it('a verified partner not listed on the route is 403, whatever its verifier (credentials are tried against every partner)', async () => {
    const body = '<event/>';
    const cases: Array<[string, string, Record<string, string>]> = [
      ['apiKey', '/p/hooks', { ...XML, 'x-api-key': ACME_K1 }],
      ['bearer', '/p/acme', { ...XML, Authorization: `Bearer ${BEARER_K}` }],
      ['webhook', '/p/acme', webhookHeaders(HOOK_S1, webhookId(), now(), body)],
      ['wechat', `/p/acme?${wechatQuery(WX_TOKEN)}`, { ...XML }],
      ['clientCert', '/p/acme', certHeaders(SUBJECT)],
    ];
    for (const [what, route, headers] of cases)
      forbidden(await post(route, { headers, body }), `${what} on ${route}`);
    await takeExactly(0, 'partners on routes not theirs');
  });

  it('a route without partners stays open (and was warned about at start)', async () => {
    const reply = await post('/open', { headers: { ...XML, 'X-Partner': 'evil' } });
    assertAccepted(reply, 'open route');
    const [msg] = await takeExactly(1, 'open route');
    assert.ok(msg);
    assert.equal(headersOf(msg)['x-partner'], undefined, 'no partner on an open route');
    assert.ok(
      bridge.logs.some(
        (l) =>
          l.level === 'warn' &&
          l.msg !== 'access' &&
          (JSON.stringify(l).includes('/open') || JSON.stringify(l).includes('open-door')),
      ),
      'a warning at start names the open route',
    );
    assert.ok(
      !bridge.logs.some(
        (l) => l.level === 'warn' && l.msg !== 'access' && JSON.stringify(l).includes('/p/acme'),
      ),
      'routes with partners are not warned about',
    );
  });

  it('metrics: bridge_auth_failures_total{route,reason} and bridge_partner_requests_total{partner,status} count what happened', async () => {
    const reasons = ['missing', 'malformed', 'wrong', 'expired', 'replayed', 'route', 'source'];
    const partnerSeries = [
      { partner: 'acme', status: '202' },
      { partner: 'hooks', status: '202' },
      { partner: 'bearerco', status: '403' },
      { partner: 'fenced', status: '403' },
    ];
    const samples = async (): Promise<Sample[]> => {
      const res = await fetch(`${bridge.adminUrl}/metrics`);
      assert.equal(res.status, 200);
      return parseExposition(await res.text());
    };
    const failuresOnM = (all: readonly Sample[]): number =>
      all
        .filter((s) => s.name === 'bridge_auth_failures_total' && s.labels['route'] === 'm')
        .reduce((n, s) => n + s.value, 0);
    const base = await samples();

    const body = '<event/>';
    const expected: Record<string, number> = {
      missing: 1,
      malformed: 1,
      wrong: 2,
      expired: 1,
      replayed: 1,
      route: 1,
      source: 1,
    };
    unauthorized(await post('/p/m', { headers: XML }), 'missing');
    unauthorized(
      await post('/p/m', {
        headers: { ...webhookHeaders(HOOK_S1, webhookId(), now(), body), 'webhook-timestamp': 'x' },
        body,
      }),
      'malformed',
    );
    unauthorized(await post('/p/m', { headers: { ...XML, 'x-api-key': hex(24) } }), 'wrong key');
    unauthorized(
      await post('/p/m', { headers: webhookHeaders(whsec(), webhookId(), now(), body), body }),
      'wrong signature',
    );
    unauthorized(
      await post('/p/m', {
        headers: webhookHeaders(HOOK_S1, webhookId(), now() - 2 * TOLERANCE_SECONDS, body),
        body,
      }),
      'expired',
    );
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const headers = webhookHeaders(HOOK_S1, webhookId(), now(), body);
      const first = await post('/p/m', { headers, body, agent });
      assertAccepted(first, 'webhook');
      const replay = await post('/p/m', { headers, body, agent });
      unauthorized(replay, 'replayed');
      assert.equal(await servedBy(first), await servedBy(replay), 'replay reached the same worker');
    } finally {
      agent.destroy();
    }
    forbidden(
      await post('/p/m', { headers: { ...XML, Authorization: `Bearer ${BEARER_K}` } }),
      'route',
    );
    forbidden(await post('/p/m', { headers: { ...XML, 'x-api-key': FENCED_K } }), 'source');
    for (const key of [ACME_K1, ACME_K2])
      assertAccepted(await post('/p/m', { headers: { ...XML, 'x-api-key': key } }), 'acme');
    await takeExactly(3, 'metrics route');

    for (const reason of reasons) {
      const labels = { route: 'm', reason };
      const want =
        sampleValue(base, 'bridge_auth_failures_total', labels) + (expected[reason] ?? 0);
      await waitForMetric(
        bridge.adminUrl,
        'bridge_auth_failures_total',
        labels,
        (v) => (v ?? 0) === want,
      );
    }
    const partnerDelta: Record<string, number> = {
      acme: 2,
      hooks: 1,
      bearerco: 1,
      fenced: 1,
    };
    for (const labels of partnerSeries) {
      const want =
        sampleValue(base, 'bridge_partner_requests_total', labels) +
        (partnerDelta[labels.partner] ?? 0);
      await waitForMetric(
        bridge.adminUrl,
        'bridge_partner_requests_total',
        labels,
        (v) => (v ?? 0) === want,
      );
    }
    // Nothing else was counted as a failure on the route.
    assert.equal(failuresOnM(await samples()), failuresOnM(base) + 8);
  });

  it('access lines name the partner when one was identified', async () => {
    const ok = await post('/p/acme', { headers: { ...XML, 'x-api-key': ACME_K1 } });
    assertAccepted(ok, 'acme');
    const refused = await post('/p/acme', {
      headers: { ...XML, Authorization: `Bearer ${BEARER_K}` },
    });
    forbidden(refused, 'bearerco on /p/acme');
    const anonymous = await post('/p/acme', { headers: XML });
    unauthorized(anonymous, 'no key');
    await takeExactly(1, 'access lines');

    const okLine = await accessLineOf(ok);
    assert.equal(okLine['partner'], 'acme', JSON.stringify(okLine));
    assert.equal(okLine['status'], ok.status);
    const refusedLine = await accessLineOf(refused);
    assert.equal(refusedLine['partner'], 'bearerco', JSON.stringify(refusedLine));
    assert.equal(refusedLine['status'], 403);
    const anonymousLine = await accessLineOf(anonymous);
    assert.equal(anonymousLine['status'], 401);
    assert.equal(anonymousLine['partner'], undefined, JSON.stringify(anonymousLine));
    for (const line of [okLine, refusedLine, anonymousLine]) {
      const text = JSON.stringify(line);
      for (const secret of SECRETS) assert.ok(!text.includes(secret), `a secret in ${text}`);
    }
  });

  it("celery: the task's headers dict leaves out what the verifiers read and names the verified partner; the message carries x-partner", async () => {
    const body = '<event/>';
    const hook = webhookHeaders(HOOK_S1, webhookId(), now(), body);
    const cases: Array<[string, Record<string, string>, string[], string[]]> = [
      ['acme', { ...XML, 'x-api-key': ACME_K1 }, ['x-api-key'], [ACME_K1]],
      [
        'hooks',
        hook,
        ['webhook-id', 'webhook-timestamp', 'webhook-signature'],
        [hook['webhook-signature'] ?? ''],
      ],
      ['gw', certHeaders(SUBJECT), ['x-client-subject', 'x-client-verify'], []],
    ];
    for (const [partner, headers, dropped, secretsIn] of cases) {
      const reply = await post('/p/celery', {
        headers: { ...headers, 'X-Trace-Id': `trace-${partner}`, 'X-Partner': 'evil' },
        body,
      });
      assert.equal(reply.status, 202, `${partner}: ${reply.body.toString('utf8')}`);
      const [msg] = await takeExactly(1, `celery task of ${partner}`, celeryQueue);
      assert.ok(msg);
      assert.equal(headersOf(msg)['x-partner'], partner, 'AMQP header x-partner');
      const content = msg.content.toString('utf8');
      const parsed: unknown = JSON.parse(content);
      assert.ok(Array.isArray(parsed), 'body is [args, kwargs, embed]');
      const args: unknown = parsed[0];
      assert.ok(Array.isArray(args), 'args is a list');
      const dict: unknown = args[0];
      assert.ok(typeof dict === 'object' && dict !== null && !Array.isArray(dict), 'a dict');
      const taskHeaders = dict as Record<string, unknown>; // narrowed to an object just above
      assert.equal(taskHeaders['x-trace-id'], `trace-${partner}`, 'the real request headers');
      assert.equal(taskHeaders['x-partner'], partner, "the client's X-Partner is not believed");
      for (const name of dropped)
        assert.equal(taskHeaders[name], undefined, `${partner}: ${name} in the task's headers`);
      for (const secret of secretsIn)
        assert.ok(!content.includes(secret), `${partner}: a credential in the task message`);
      for (const secret of secretsIn)
        assert.ok(
          !String(headersOf(msg)['argsrepr']).includes(secret),
          `${partner}: a credential in argsrepr`,
        );
    }
  });

  it('rotation: after rewriting the secret files and the config, SIGHUP refuses the old credentials and accepts the new ones', async () => {
    writeSecret('acme.k2', ACME_K2_NEW);
    writeSecret('hook.s2', HOOK_S2_NEW);
    writeSecret('wx.token', WX_TOKEN_NEW);
    bridge.rewriteConfig(config(['file:acme.k2'], ['file:hook.s2'], [SUBJECT_NEW]));
    const from = bridge.logs.length;
    process.kill(bridge.pid, 'SIGHUP');
    await logAfter(from, (l) => l.msg === 'reloaded', 30_000);
    await waitUntilReady(bridge);

    const body = '<event/>';
    const hook = (secret: string) => webhookHeaders(secret, webhookId(), now(), body);
    const refused: Array<[string, string, Record<string, string>]> = [
      ['old acme key 1', '/p/acme', { ...XML, 'x-api-key': ACME_K1 }],
      ['old acme key 2', '/p/acme', { ...XML, 'x-api-key': ACME_K2 }],
      ['old webhook secret 1', '/p/hooks', hook(HOOK_S1)],
      ['old webhook secret 2', '/p/hooks', hook(HOOK_S2)],
      ['old wechat token', `/p/wx?${wechatQuery(WX_TOKEN)}`, { ...XML }],
      ['old subject 1', '/p/gw', certHeaders(SUBJECT)],
      ['old subject 2', '/p/gw', certHeaders(SUBJECT_2)],
    ];
    for (const [what, route, headers] of refused)
      unauthorized(await post(route, { headers, body }), what);
    await takeExactly(0, 'old credentials after the rotation');

    const accepted: Array<[string, string, Record<string, string>]> = [
      ['acme', '/p/acme', { ...XML, 'x-api-key': ACME_K2_NEW }],
      ['hooks', '/p/hooks', hook(HOOK_S2_NEW)],
      ['wx', `/p/wx?${wechatQuery(WX_TOKEN_NEW)}`, { ...XML }],
      ['gw', '/p/gw', certHeaders(SUBJECT_NEW)],
    ];
    for (const [partner, route, headers] of accepted)
      assertAccepted(await post(route, { headers, body }), `new credentials of ${partner}`);
    const got = await takeExactly(4, 'new credentials after the rotation');
    assert.deepEqual(
      got.map((m) => headersOf(m)['x-partner']),
      accepted.map(([partner]) => partner),
    );
  });
});

describe('partner config refused at start', { timeout: 60_000 }, () => {
  /** The runner's own BRIDGE_* variables must not change what the bin sees. */
  function cleanEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BRIDGE_')) env[k] = v;
    return env;
  }

  /** Starts the bin with `partnerList` and one route naming `routePartners`; returns its run and its fatal problems. */
  async function startWith(
    routePartners: string[],
    partnerList: unknown[],
  ): Promise<{ run: Run; problems: Array<{ path: string; message: string }> }> {
    const dir = mkdtempSync(path.join(tmpdir(), 'bridge-partners-config-'));
    try {
      writeFileSync(path.join(dir, 'good.k'), `${hex(24)}\n`);
      writeFileSync(path.join(dir, 'good.s'), `${whsec()}\n`);
      const file = path.join(dir, 'config.yaml');
      writeFileSync(
        file,
        JSON.stringify(
          baseConfig([{ path: '/x', mode: 'publish', routingKey: 'x', partners: routePartners }], {
            partners: partnerList,
          }),
        ),
      );
      const run = await runToExit(process.execPath, [MAIN, '--config', file], {
        env: { ...cleanEnv(), CREDENTIALS_DIRECTORY: dir },
        timeoutMs: 20_000,
      });
      const problems = run.stdout
        .split('\n')
        .filter((l) => l !== '')
        .map(parseLogLine)
        .filter((l) => l.level === 'fatal')
        .flatMap((l) => (Array.isArray(l['problems']) ? (l['problems'] as unknown[]) : []))
        .map((p) => {
          const r = (typeof p === 'object' && p !== null ? p : {}) as Record<string, unknown>; // ConfigProblem shape
          return { path: String(r['path']), message: String(r['message']) };
        });
      return { run, problems };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('refuses inline secrets (exit 2), naming each path and quoting none', async () => {
    const inlineKey = hex(24);
    const inlineSecret = whsec();
    const inlineToken = `tok${hex(8)}`;
    const { run, problems } = await startWith(
      ['a', 'b', 'c'],
      [
        { id: 'a', auth: { apiKey: { keys: ['file:good.k', inlineKey] } } },
        { id: 'b', auth: { webhook: { secrets: [inlineSecret] } } },
        { id: 'c', auth: { wechat: { token: inlineToken } } },
      ],
    );
    const output = run.stdout + run.stderr;
    assert.equal(run.code, 2, output);
    const paths = problems.map((p) => p.path);
    for (const at of [
      'partners[0].auth.apiKey.keys[1]',
      'partners[1].auth.webhook.secrets[0]',
      'partners[2].auth.wechat.token',
    ])
      assert.ok(paths.includes(at), `no problem at ${at}: ${JSON.stringify(problems)}`);
    assert.ok(
      !paths.includes('partners[0].auth.apiKey.keys[0]'),
      `the file reference is fine: ${JSON.stringify(problems)}`,
    );
    for (const secret of [inlineKey, inlineSecret, inlineToken])
      assert.ok(!output.includes(secret), 'an inline secret is quoted in the output');
  });

  it('refuses a route naming an unknown partner id (exit 2)', async () => {
    const { run, problems } = await startWith(
      ['acme', 'ghost'],
      [{ id: 'acme', auth: { apiKey: { keys: ['file:good.k'] } } }],
    );
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.ok(
      problems.some(
        (p) =>
          /^routes\[0\]\.partners(\[1\])?$/.test(p.path) &&
          `${p.path} ${p.message}`.includes('ghost'),
      ),
      `no problem at routes[0].partners naming ghost: ${JSON.stringify(problems)}`,
    );
  });

  it('refuses two verifiers in one auth (exit 2)', async () => {
    const { run, problems } = await startWith(
      ['acme'],
      [
        {
          id: 'acme',
          auth: {
            apiKey: { keys: ['file:good.k'] },
            webhook: { secrets: ['file:good.s'] },
          },
        },
      ],
    );
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.ok(
      problems.some((p) => p.path.startsWith('partners[0].auth')),
      `no problem at partners[0].auth: ${JSON.stringify(problems)}`,
    );
  });
});
