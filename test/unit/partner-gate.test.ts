/**
 * The partner gate (src/worker/partners/gate.ts) against /work/notes/partners-spec.md: every
 * verifier good / missing / wrong / expired / replayed / rotated, the route, sources and rate
 * checks in the spec's order, trusted proxies, and problem details that never carry a secret.
 * The config comes through resolveSecretFiles + validateConfig with the secrets in temp files,
 * as the bridge loads it; time comes from a fake GateClock. No broker, no network.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveSecretFiles, validateConfig, type Config } from '../../src/shared/config.js';
import type { RouteConfig } from '../../src/shared/config-schema.js';
import {
  PartnerGate,
  type GateClock,
  type GatePass,
  type GateRefusal,
  type PendingWebhook,
  type RouteAccess,
  type WebhookPass,
} from '../../src/worker/partners/gate.js';
import { signStandardWebhook } from '../../src/worker/partners/standard-webhooks.js';
import { wechatSignature } from '../../src/worker/partners/wechat-signature.js';

// ---- secrets (written to files; the config only names the files) ----
const ACME_KEY_1 = 'acme-key-one-6f1d2c3b4a5e6f708192';
const ACME_KEY_2 = 'acme-key-two-a9b8c7d6e5f4a3b2c1d0';
const BEARER_KEY = 'bearer-key-0c1d2e3f4a5b6c7d8e9f';
const LIMITED_KEY = 'limited-key-1a2b3c4d5e6f7a8b9c0d';
const HOOK_SECRET_1 = `whsec_${Buffer.from('hooks secret number one, 32 byte').toString('base64')}`;
const HOOK_SECRET_2 = `whsec_${Buffer.from('hooks secret number two, 32 byte').toString('base64')}`;
const OTHER_SECRET = `whsec_${Buffer.from('a secret nobody configured, 32 b').toString('base64')}`;
const WECHAT_TOKEN = 'wxToken7c3f9e1a';
const SUBJECT = 'CN=acme-gateway,O=Acme';

/** Every configured secret, and the key material inside the whsec_ ones. */
const SECRETS = [
  ACME_KEY_1,
  ACME_KEY_2,
  BEARER_KEY,
  LIMITED_KEY,
  HOOK_SECRET_1,
  HOOK_SECRET_1.slice('whsec_'.length),
  HOOK_SECRET_2,
  HOOK_SECRET_2.slice('whsec_'.length),
  WECHAT_TOKEN,
];

const NOW_MS = 1_700_000_000_000;
const NOW_S = NOW_MS / 1000;
const TOLERANCE = 300;

const TRUSTED_V4 = '127.0.0.1';
const TRUSTED_V6 = '::1';
const UNTRUSTED = '198.51.100.9';
const ACME_CLIENT = '203.0.113.5';

const PARTNERS = [
  {
    id: 'acme',
    sources: ['203.0.113.0/24', '2001:db8::/32'],
    auth: { apiKey: { keys: ['file:acme.k1', 'file:acme.k2'] } },
  },
  { id: 'bearer', auth: { apiKey: { header: 'Authorization', keys: ['file:bearer.k'] } } },
  {
    id: 'hooks',
    auth: { webhook: { secrets: ['file:hooks.s1', 'file:hooks.s2'] } },
  },
  { id: 'wx', auth: { wechat: { token: 'file:wx.token' } } },
  { id: 'gw', auth: { clientCert: { subjects: [SUBJECT] } } },
  {
    id: 'limited',
    sources: ['192.0.2.0/24'],
    auth: { apiKey: { header: 'x-limited-key', keys: ['file:limited.k'] } },
    rateLimit: { perSecond: 2 },
  },
];

const route = (p: string, partners?: string[]): Record<string, unknown> => ({
  path: p,
  mode: 'publish',
  routingKey: 'q',
  ...(partners === undefined ? {} : { partners }),
});

const RAW_CONFIG = {
  trustedProxies: ['127.0.0.1/32', '::1/128'],
  partners: PARTNERS,
  routes: [
    route('/acme', ['acme']),
    route('/bearer', ['bearer']),
    route('/hooks', ['hooks']),
    route('/wx', ['wx']),
    route('/gw', ['gw']),
    route('/limited', ['limited']),
    route('/all', ['acme', 'bearer', 'hooks', 'wx', 'gw', 'limited']),
    route('/open'),
  ],
};

let config: Config;
let root: string;

before(() => {
  root = mkdtempSync(path.join(tmpdir(), 'partner-gate-'));
  const files: Record<string, string> = {
    'acme.k1': ACME_KEY_1,
    'acme.k2': ACME_KEY_2,
    'bearer.k': BEARER_KEY,
    'limited.k': LIMITED_KEY,
    'hooks.s1': HOOK_SECRET_1,
    'hooks.s2': HOOK_SECRET_2,
    'wx.token': WECHAT_TOKEN,
  };
  for (const [name, value] of Object.entries(files))
    writeFileSync(path.join(root, name), `${value}\n`, { mode: 0o600 });
  const secrets = resolveSecretFiles(RAW_CONFIG, { CREDENTIALS_DIRECTORY: root });
  config = validateConfig(secrets.raw, secrets.problems, secrets.sources);
});

after(() => rmSync(root, { recursive: true, force: true }));

/** A settable clock: wall time for signed timestamps, monotonic time for the rate limits. */
class FakeClock implements GateClock {
  wall = NOW_MS;
  mono = 5_000;
  readonly wallMs = (): number => this.wall;
  readonly monotonicMs = (): number => this.mono;
}

interface Fixture {
  readonly gate: PartnerGate;
  readonly clock: FakeClock;
  access(path: string): RouteAccess;
  /** The gate's header array (by position in gate.headerNames) from a name → value map. */
  headers(values: Record<string, string>): Array<string | undefined>;
}

function fixture(workers = 1): Fixture {
  const clock = new FakeClock();
  const gate = new PartnerGate(config, workers, clock);
  return {
    gate,
    clock,
    access(p) {
      const r = config.routes.find((x: RouteConfig) => x.path === p);
      assert.ok(r, `no route ${p}`);
      const access = gate.routeAccess(r);
      assert.ok(access, `route ${p} has no partners`);
      return access;
    },
    headers(values) {
      const out = new Array<string | undefined>(gate.headerNames.length).fill(undefined);
      for (const [name, value] of Object.entries(values)) {
        const at = gate.headerNames.indexOf(name);
        assert.ok(at !== -1, `the gate does not read ${name}: ${gate.headerNames.join(', ')}`);
        out[at] = value;
      }
      return out;
    },
  };
}

/** Every detail and header value of a refusal, checked for secrets here and by the leak test. */
const details: string[] = [];

function assertNoSecret(text: string, extra: readonly string[] = []): void {
  for (const secret of [...SECRETS, ...extra])
    assert.ok(!text.includes(secret), `a secret leaked: ${JSON.stringify(text)}`);
}

function isRefusal(verdict: GatePass | GateRefusal | WebhookPass): verdict is GateRefusal {
  return 'error' in verdict;
}

const STATUS_CODE = {
  401: 'BRIDGE_UNAUTHORIZED',
  403: 'BRIDGE_FORBIDDEN',
  429: 'BRIDGE_RATE_LIMITED',
} as const;

/** Asserts a refusal with this status and reason; returns it for further checks. */
function refused(
  verdict: GatePass | GateRefusal | WebhookPass,
  status: 401 | 403 | 429,
  reason: GateRefusal['reason'],
): GateRefusal {
  assert.ok(isRefusal(verdict), `expected a ${status} refusal, got ${JSON.stringify(verdict)}`);
  assert.equal(verdict.error.status, status, verdict.error.message);
  assert.equal(verdict.error.code, STATUS_CODE[status]);
  assert.equal(verdict.reason, reason, verdict.error.message);
  const text = [verdict.error.message, ...verdict.headers.flat()].join('\n');
  details.push(text);
  assertNoSecret(text);
  return verdict;
}

function passed(verdict: GatePass | GateRefusal): GatePass {
  assert.ok(
    !isRefusal(verdict),
    `expected a pass, got ${isRefusal(verdict) ? `${verdict.error.status} ${verdict.reason ?? ''}: ${verdict.error.message}` : ''}`,
  );
  return verdict;
}

function webhookPassed(verdict: WebhookPass | GateRefusal): WebhookPass {
  assert.ok(
    !isRefusal(verdict),
    `expected the webhook to pass, got ${isRefusal(verdict) ? `${verdict.error.status} ${verdict.reason ?? ''}: ${verdict.error.message}` : ''}`,
  );
  return verdict;
}

const CHALLENGE: ReadonlyArray<readonly [string, string]> = [
  ['WWW-Authenticate', 'Bearer realm="xml-amqp-bridge"'],
];

describe('partner gate: API keys', { timeout: 10_000 }, () => {
  it('admits either of the two rotated keys, naming the partner and the client', () => {
    const f = fixture();
    for (const key of [ACME_KEY_1, ACME_KEY_2]) {
      const pass = passed(
        f.gate.checkHead(
          f.access('/acme'),
          ACME_CLIENT,
          f.headers({ 'x-api-key': key }),
          undefined,
        ),
      );
      assert.equal(pass.partner, 'acme');
      assert.equal(pass.client, ACME_CLIENT);
      assert.equal(pass.webhook, undefined);
    }
  });

  it('no key at all is 401 missing, without a challenge on a route whose partners use x-api-key', () => {
    const f = fixture();
    const refusal = refused(
      f.gate.checkHead(f.access('/acme'), ACME_CLIENT, f.headers({}), undefined),
      401,
      'missing',
    );
    assert.deepEqual(refusal.headers, []);
    assert.equal(refusal.partner, undefined);
    assert.match(refusal.error.message, /x-api-key/, 'the detail says how to authenticate');
  });

  it('a wrong key, a key of another partner in this header, or a near miss is 401 wrong', () => {
    const f = fixture();
    const nearMisses = [
      'not-a-key-of-anyone-0123456789',
      `${ACME_KEY_1}x`,
      ACME_KEY_1.slice(0, -1),
      `${ACME_KEY_1.slice(0, -1)}0`,
      ACME_KEY_1.toUpperCase(),
      LIMITED_KEY, // right value, wrong header
    ];
    for (const key of nearMisses) {
      const refusal = refused(
        f.gate.checkHead(
          f.access('/acme'),
          ACME_CLIENT,
          f.headers({ 'x-api-key': key }),
          undefined,
        ),
        401,
        'wrong',
      );
      assertNoSecret(refusal.error.message, [key]);
      assert.equal(refusal.partner, undefined);
    }
  });

  it('takes the key from Authorization: Bearer <key> and challenges with WWW-Authenticate', () => {
    const f = fixture();
    const access = f.access('/bearer');
    assert.deepEqual(access.challenge, CHALLENGE);
    for (const value of [`Bearer ${BEARER_KEY}`, `bearer ${BEARER_KEY}`]) {
      const pass = passed(
        f.gate.checkHead(access, UNTRUSTED, f.headers({ authorization: value }), undefined),
      );
      assert.equal(pass.partner, 'bearer');
    }
    const missing = refused(
      f.gate.checkHead(access, UNTRUSTED, f.headers({}), undefined),
      401,
      'missing',
    );
    assert.deepEqual(missing.headers, CHALLENGE);
    const wrong = refused(
      f.gate.checkHead(
        access,
        UNTRUSTED,
        f.headers({ authorization: `Bearer ${BEARER_KEY.slice(0, -1)}Z` }),
        undefined,
      ),
      401,
      'wrong',
    );
    assert.deepEqual(wrong.headers, CHALLENGE);
  });

  it('challenges only on routes where an apiKey partner uses Authorization', () => {
    const f = fixture();
    assert.deepEqual(f.access('/acme').challenge, []);
    assert.deepEqual(f.access('/hooks').challenge, []);
    assert.deepEqual(f.access('/all').challenge, CHALLENGE);
    const refusal = refused(
      f.gate.checkHead(f.access('/all'), ACME_CLIENT, f.headers({}), undefined),
      401,
      'missing',
    );
    assert.deepEqual(refusal.headers, CHALLENGE);
  });

  it('verified credentials of a partner not on the route are 403 route (not 401), naming the partner', () => {
    const f = fixture();
    const refusal = refused(
      f.gate.checkHead(
        f.access('/bearer'),
        ACME_CLIENT,
        f.headers({ 'x-api-key': ACME_KEY_1 }),
        undefined,
      ),
      403,
      'route',
    );
    assert.equal(refusal.partner, 'acme');
    assert.deepEqual(refusal.headers, [], 'a 403 carries no challenge');
    // The same key on a route that lists acme passes: the 403 is about the route.
    passed(
      f.gate.checkHead(
        f.access('/all'),
        ACME_CLIENT,
        f.headers({ 'x-api-key': ACME_KEY_1 }),
        undefined,
      ),
    );
  });

  it('checks the route before the sources: a partner off its route and its sources hears "route"', () => {
    const f = fixture();
    refused(
      f.gate.checkHead(
        f.access('/bearer'),
        UNTRUSTED,
        f.headers({ 'x-api-key': ACME_KEY_2 }),
        undefined,
      ),
      403,
      'route',
    );
  });
});

describe('partner gate: sources', { timeout: 10_000 }, () => {
  const check = (f: Fixture, peer: string): GatePass | GateRefusal =>
    f.gate.checkHead(f.access('/acme'), peer, f.headers({ 'x-api-key': ACME_KEY_1 }), undefined);

  it('admits IPv4, IPv6 and IPv4-mapped IPv6 clients inside the sources', () => {
    const f = fixture();
    for (const peer of [
      '203.0.113.5',
      '203.0.113.255',
      '2001:db8::1',
      '2001:db8:ffff::7',
      '::ffff:203.0.113.5',
    ]) {
      assert.equal(passed(check(f, peer)).client, peer);
    }
  });

  it('refuses clients outside the sources with 403 source, naming the partner', () => {
    const f = fixture();
    for (const peer of [
      '198.51.100.5',
      '203.0.114.5',
      '2001:db9::1',
      '::ffff:198.51.100.5',
      '::1',
      '::ffff:203.0.114.5',
    ]) {
      const refusal = refused(check(f, peer), 403, 'source');
      assert.equal(refusal.partner, 'acme');
      assert.deepEqual(refusal.headers, []);
    }
  });

  it('a partner without sources may call from anywhere', () => {
    const f = fixture();
    for (const peer of ['198.51.100.5', '2001:db9::1', '::ffff:10.1.2.3'])
      passed(
        f.gate.checkHead(
          f.access('/bearer'),
          peer,
          f.headers({ authorization: `Bearer ${BEARER_KEY}` }),
          undefined,
        ),
      );
  });
});

describe('partner gate: trusted proxies', { timeout: 10_000 }, () => {
  it('from a trusted peer the client is X-Real-IP, preferred to X-Forwarded-For', () => {
    const f = fixture();
    const h = f.headers({
      'x-real-ip': '203.0.113.5',
      'x-forwarded-for': '198.51.100.1, 198.51.100.2',
    });
    assert.equal(f.gate.clientAddress(TRUSTED_V4, h), '203.0.113.5');
    assert.equal(f.gate.clientAddress(TRUSTED_V6, h), '203.0.113.5');
  });

  it('without X-Real-IP the client is the last X-Forwarded-For entry', () => {
    const f = fixture();
    const cases: Array<[string, string]> = [
      ['198.51.100.1, 203.0.113.7', '203.0.113.7'],
      ['198.51.100.1,203.0.113.7', '203.0.113.7'],
      ['10.0.0.1, 198.51.100.1,  2001:db8::5 ', '2001:db8::5'],
      ['203.0.113.8', '203.0.113.8'],
    ];
    for (const [forwarded, client] of cases)
      assert.equal(
        f.gate.clientAddress(TRUSTED_V4, f.headers({ 'x-forwarded-for': forwarded })),
        client,
        forwarded,
      );
  });

  it('a trusted peer without either header is the client itself', () => {
    const f = fixture();
    assert.equal(f.gate.clientAddress(TRUSTED_V4, f.headers({})), TRUSTED_V4);
  });

  it('ignores X-Real-IP and X-Forwarded-For from an untrusted peer', () => {
    const f = fixture();
    const h = f.headers({ 'x-real-ip': '203.0.113.5', 'x-forwarded-for': '203.0.113.6' });
    assert.equal(f.gate.clientAddress(UNTRUSTED, h), UNTRUSTED);
    assert.equal(f.gate.clientAddress('127.0.0.2', h), '127.0.0.2', '127.0.0.1/32 only');
  });

  it('checks sources against the forwarded address, and a spoofed header from outside is refused', () => {
    const f = fixture();
    const access = f.access('/acme');
    const pass = passed(
      f.gate.checkHead(
        access,
        TRUSTED_V4,
        f.headers({ 'x-api-key': ACME_KEY_1, 'x-real-ip': ACME_CLIENT }),
        undefined,
      ),
    );
    assert.equal(pass.client, ACME_CLIENT);
    const viaForwarded = passed(
      f.gate.checkHead(
        access,
        TRUSTED_V6,
        f.headers({ 'x-api-key': ACME_KEY_1, 'x-forwarded-for': `10.9.9.9, ${ACME_CLIENT}` }),
        undefined,
      ),
    );
    assert.equal(viaForwarded.client, ACME_CLIENT);
    // The first X-Forwarded-For entry is the client's own claim: it does not count.
    refused(
      f.gate.checkHead(
        access,
        TRUSTED_V4,
        f.headers({ 'x-api-key': ACME_KEY_1, 'x-forwarded-for': `${ACME_CLIENT}, 10.9.9.9` }),
        undefined,
      ),
      403,
      'source',
    );
    refused(
      f.gate.checkHead(
        access,
        UNTRUSTED,
        f.headers({ 'x-api-key': ACME_KEY_1, 'x-real-ip': ACME_CLIENT }),
        undefined,
      ),
      403,
      'source',
    );
    refused(
      f.gate.checkHead(access, TRUSTED_V4, f.headers({ 'x-api-key': ACME_KEY_1 }), undefined),
      403,
      'source',
    );
  });

  it('without trustedProxies every peer is the client', () => {
    const gate = new PartnerGate({ ...config, trustedProxies: [] }, 1, new FakeClock());
    const h = new Array<string | undefined>(gate.headerNames.length).fill(undefined);
    h[gate.headerNames.indexOf('x-real-ip')] = '203.0.113.5';
    h[gate.headerNames.indexOf('x-forwarded-for')] = '203.0.113.6';
    assert.equal(gate.clientAddress(TRUSTED_V4, h), TRUSTED_V4);
  });
});

describe('partner gate: client certificates', { timeout: 10_000 }, () => {
  const cert = (verify: string, subject: string): Record<string, string> => ({
    'x-client-verify': verify,
    'x-client-subject': subject,
  });

  it('admits X-Client-Verify: SUCCESS with a listed subject from a trusted peer', () => {
    const f = fixture();
    for (const peer of [TRUSTED_V4, TRUSTED_V6]) {
      const pass = passed(
        f.gate.checkHead(f.access('/gw'), peer, f.headers(cert('SUCCESS', SUBJECT)), undefined),
      );
      assert.equal(pass.partner, 'gw');
    }
  });

  it('ignores the certificate headers from an untrusted peer: 401', () => {
    const f = fixture();
    refused(
      f.gate.checkHead(f.access('/gw'), UNTRUSTED, f.headers(cert('SUCCESS', SUBJECT)), undefined),
      401,
      'missing',
    );
    // Nor does a forged X-Real-IP make the peer a proxy.
    refused(
      f.gate.checkHead(
        f.access('/gw'),
        UNTRUSTED,
        f.headers({ ...cert('SUCCESS', SUBJECT), 'x-real-ip': TRUSTED_V4 }),
        undefined,
      ),
      401,
      'missing',
    );
  });

  it('refuses a certificate the proxy did not verify: 401', () => {
    const f = fixture();
    for (const verify of ['FAILED:certificate has expired', 'NONE', 'success', ''])
      refused(
        f.gate.checkHead(f.access('/gw'), TRUSTED_V4, f.headers(cert(verify, SUBJECT)), undefined),
        401,
        'wrong',
      );
    refused(
      f.gate.checkHead(
        f.access('/gw'),
        TRUSTED_V4,
        f.headers({ 'x-client-subject': SUBJECT }),
        undefined,
      ),
      401,
      'wrong',
    );
  });

  it('a subject not listed exactly is 401 wrong', () => {
    const f = fixture();
    for (const subject of [
      'CN=other,O=Acme',
      'CN=acme-gateway, O=Acme',
      'cn=acme-gateway,o=acme',
      `${SUBJECT},OU=x`,
    ])
      refused(
        f.gate.checkHead(
          f.access('/gw'),
          TRUSTED_V4,
          f.headers(cert('SUCCESS', subject)),
          undefined,
        ),
        401,
        'wrong',
      );
  });

  it('a verified certificate of a partner not on the route is 403 route', () => {
    const f = fixture();
    const refusal = refused(
      f.gate.checkHead(
        f.access('/acme'),
        TRUSTED_V4,
        f.headers(cert('SUCCESS', SUBJECT)),
        undefined,
      ),
      403,
      'route',
    );
    assert.equal(refusal.partner, 'gw');
  });
});

describe('partner gate: Standard Webhooks', { timeout: 10_000 }, () => {
  const BODY = Buffer.from('<order id="1"/>');

  function signed(
    secret: string,
    id = 'msg_1',
    timestamp = NOW_S,
    body: Buffer = BODY,
  ): Record<string, string> {
    return {
      'webhook-id': id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signStandardWebhook(secret, id, timestamp, body),
    };
  }

  /** The head check, which must pass and leave the verdict to the body. */
  function head(f: Fixture, p: string, h: Record<string, string>, peer = UNTRUSTED): GatePass {
    const pass = passed(f.gate.checkHead(f.access(p), peer, f.headers(h), undefined));
    assert.equal(pass.partner, undefined, 'the partner is known only once the body is signed');
    assert.ok(pass.webhook, 'the signature is left to the body');
    return pass;
  }

  function full(
    f: Fixture,
    p: string,
    h: Record<string, string>,
    body: Buffer = BODY,
  ): WebhookPass | GateRefusal {
    const pass = head(f, p, h);
    return f.gate.checkWebhook(f.access(p), pass.client, pass.webhook as PendingWebhook, body);
  }

  it('admits a body signed with either of the two rotated secrets', () => {
    const f = fixture();
    for (const [secret, id] of [
      [HOOK_SECRET_1, 'msg_a'],
      [HOOK_SECRET_2, 'msg_b'],
    ] as const) {
      const h = signed(secret, id);
      const pass = head(f, '/hooks', h);
      assert.deepEqual(pass.webhook, {
        id,
        timestamp: String(NOW_S),
        signature: h['webhook-signature'],
      });
      const verdict = webhookPassed(
        f.gate.checkWebhook(f.access('/hooks'), pass.client, pass.webhook, BODY),
      );
      assert.equal(verdict.partner, 'hooks');
      assert.equal(verdict.id, id);
    }
  });

  it('no webhook headers at all is 401 missing', () => {
    const f = fixture();
    refused(
      f.gate.checkHead(f.access('/hooks'), UNTRUSTED, f.headers({}), undefined),
      401,
      'missing',
    );
  });

  it('a bad webhook-timestamp is 401 malformed at the head', () => {
    const f = fixture();
    for (const timestamp of ['abc', '1.7e9', ` ${NOW_S}`, `${NOW_S}.5`, '0x6553f100', '-1']) {
      const h = { ...signed(HOOK_SECRET_1), 'webhook-timestamp': timestamp };
      refused(
        f.gate.checkHead(f.access('/hooks'), UNTRUSTED, f.headers(h), undefined),
        401,
        'malformed',
      );
    }
  });

  it('incomplete webhook headers are 401 malformed, not missing', () => {
    const f = fixture();
    const h = signed(HOOK_SECRET_1);
    for (const only of [
      { 'webhook-id': 'msg_1' },
      { 'webhook-id': 'msg_1', 'webhook-timestamp': String(NOW_S) },
      { 'webhook-signature': h['webhook-signature'] as string },
    ])
      refused(
        f.gate.checkHead(f.access('/hooks'), UNTRUSTED, f.headers(only), undefined),
        401,
        'malformed',
      );
  });

  it('all three webhook headers when no partner uses webhooks are 401 wrong', () => {
    const clock = new FakeClock();
    const gate = new PartnerGate(
      { ...config, partners: config.partners.filter((p) => p.auth.webhook === undefined) },
      1,
      clock,
    );
    const r = config.routes.find((x) => x.path === '/acme');
    const access = r === undefined ? undefined : gate.routeAccess(r);
    assert.ok(access);
    const h = new Array<string | undefined>(gate.headerNames.length).fill(undefined);
    for (const [name, value] of Object.entries(signed(HOOK_SECRET_1)))
      h[gate.headerNames.indexOf(name)] = value;
    refused(gate.checkHead(access, ACME_CLIENT, h, undefined), 401, 'wrong');
  });

  it('a signature list without a v1 entry is 401 malformed once the body is in', () => {
    const f = fixture();
    const h = signed(HOOK_SECRET_1);
    const v1 = h['webhook-signature'] as string;
    for (const signature of [`v2,${v1.slice(3)}`, v1.slice(3), 'v1a,abc'])
      refused(full(f, '/hooks', { ...h, 'webhook-signature': signature }), 401, 'malformed');
  });

  it('a wrong signature is 401 wrong: unknown secret, other body, other id, other timestamp', () => {
    const f = fixture();
    refused(full(f, '/hooks', signed(OTHER_SECRET)), 401, 'wrong');
    refused(full(f, '/hooks', signed(HOOK_SECRET_1), Buffer.from('<order id="2"/>')), 401, 'wrong');
    refused(
      full(f, '/hooks', { ...signed(HOOK_SECRET_1, 'msg_x'), 'webhook-id': 'msg_y' }),
      401,
      'wrong',
    );
    refused(
      full(f, '/hooks', { ...signed(HOOK_SECRET_1), 'webhook-timestamp': String(NOW_S - 1) }),
      401,
      'wrong',
    );
  });

  it('a timestamp outside the tolerance is 401 expired at the head; the edge is accepted', () => {
    const f = fixture();
    for (const timestamp of [NOW_S - TOLERANCE - 1, NOW_S + TOLERANCE + 1, 1_000_000_000])
      refused(
        f.gate.checkHead(
          f.access('/hooks'),
          UNTRUSTED,
          f.headers(signed(HOOK_SECRET_1, 'msg_old', timestamp)),
          undefined,
        ),
        401,
        'expired',
      );
    for (const timestamp of [NOW_S - TOLERANCE, NOW_S + TOLERANCE])
      webhookPassed(full(f, '/hooks', signed(HOOK_SECRET_1, `msg_${timestamp}`, timestamp)));
  });

  it('a body that arrives after the tolerance ran out is 401 expired', () => {
    const f = fixture();
    const pass = head(f, '/hooks', signed(HOOK_SECRET_1, 'msg_slow'));
    f.clock.wall += (TOLERANCE + 1) * 1000;
    refused(
      f.gate.checkWebhook(f.access('/hooks'), pass.client, pass.webhook as PendingWebhook, BODY),
      401,
      'expired',
    );
  });

  it('a webhook-id accepted before is 401 replayed; after forget() it is accepted again', () => {
    const f = fixture();
    const h = signed(HOOK_SECRET_1, 'msg_replay');
    const first = webhookPassed(full(f, '/hooks', h));
    const replay = refused(full(f, '/hooks', h), 401, 'replayed');
    assert.equal(replay.partner, 'hooks');
    // Another secret, same id: still the same message.
    refused(full(f, '/hooks', signed(HOOK_SECRET_2, 'msg_replay')), 401, 'replayed');
    // Another id passes meanwhile.
    webhookPassed(full(f, '/hooks', signed(HOOK_SECRET_1, 'msg_other')));
    first.forget();
    const again = webhookPassed(full(f, '/hooks', h));
    assert.equal(again.id, 'msg_replay');
    refused(full(f, '/hooks', h), 401, 'replayed');
  });

  it('remembers an id for 2 x tolerance: a re-signed resend is replayed until then', () => {
    const f = fixture();
    webhookPassed(full(f, '/hooks', signed(HOOK_SECRET_1, 'msg_window')));
    f.clock.wall += 2 * TOLERANCE * 1000;
    refused(
      full(f, '/hooks', signed(HOOK_SECRET_1, 'msg_window', f.clock.wall / 1000)),
      401,
      'replayed',
    );
    f.clock.wall += 2000;
    webhookPassed(full(f, '/hooks', signed(HOOK_SECRET_1, 'msg_window', f.clock.wall / 1000)));
  });

  it('a valid signature of a partner not on the route is 403 route, and its id is not used up', () => {
    const f = fixture();
    const h = signed(HOOK_SECRET_1, 'msg_route');
    const refusal = refused(full(f, '/acme', h), 403, 'route');
    assert.equal(refusal.partner, 'hooks');
    webhookPassed(full(f, '/hooks', h));
  });
});

describe('partner gate: WeChat', { timeout: 10_000 }, () => {
  function query(
    timestamp = String(NOW_S),
    nonce = '1234567',
    token = WECHAT_TOKEN,
    extra: Record<string, string> = {},
  ): URLSearchParams {
    return new URLSearchParams({
      signature: wechatSignature(token, timestamp, nonce),
      timestamp,
      nonce,
      ...extra,
    });
  }

  it('admits a message with a valid query signature', () => {
    const f = fixture();
    assert.equal(f.gate.readsQuery, true);
    const pass = passed(f.gate.checkHead(f.access('/wx'), UNTRUSTED, f.headers({}), query()));
    assert.equal(pass.partner, 'wx');
  });

  it('no signature is 401 missing; a wrong one 401 wrong', () => {
    const f = fixture();
    refused(
      f.gate.checkHead(f.access('/wx'), UNTRUSTED, f.headers({}), new URLSearchParams()),
      401,
      'missing',
    );
    refused(
      f.gate.checkHead(
        f.access('/wx'),
        UNTRUSTED,
        f.headers({}),
        query(undefined, undefined, 'wrongToken1'),
      ),
      401,
      'wrong',
    );
    const tampered = query();
    tampered.set('nonce', '7654321');
    refused(f.gate.checkHead(f.access('/wx'), UNTRUSTED, f.headers({}), tampered), 401, 'wrong');
  });

  it('a signed timestamp outside the tolerance is 401 expired', () => {
    const f = fixture();
    for (const timestamp of [NOW_S - TOLERANCE - 1, NOW_S + TOLERANCE + 1])
      refused(
        f.gate.checkHead(f.access('/wx'), UNTRUSTED, f.headers({}), query(String(timestamp))),
        401,
        'expired',
      );
    passed(
      f.gate.checkHead(f.access('/wx'), UNTRUSTED, f.headers({}), query(String(NOW_S - TOLERANCE))),
    );
  });

  it('a valid WeChat signature on a route without the WeChat partner is 403 route', () => {
    const f = fixture();
    const refusal = refused(
      f.gate.checkHead(f.access('/acme'), UNTRUSTED, f.headers({}), query()),
      403,
      'route',
    );
    assert.equal(refusal.partner, 'wx');
  });

  it('the echostr handshake verifies the signature and the timestamp', () => {
    const f = fixture();
    const access = f.access('/wx');
    assert.equal(access.wechat, true);
    assert.equal(f.access('/acme').wechat, false);
    const echo = { echostr: 'hello-4711' };
    assert.equal(f.gate.checkHandshake(access, query(undefined, undefined, undefined, echo)), true);
    assert.equal(
      f.gate.checkHandshake(access, query(undefined, undefined, 'wrongToken1', echo)),
      false,
    );
    assert.equal(
      f.gate.checkHandshake(
        access,
        query(String(NOW_S - TOLERANCE - 1), undefined, undefined, echo),
      ),
      false,
    );
    assert.equal(f.gate.checkHandshake(access, new URLSearchParams(echo)), false);
    // A valid signature counts only on a route of the WeChat partner.
    assert.equal(
      f.gate.checkHandshake(f.access('/acme'), query(undefined, undefined, undefined, echo)),
      false,
    );
    // The clock moves on: the same query expires.
    const q = query(undefined, undefined, undefined, echo);
    f.clock.wall += (TOLERANCE + 1) * 1000;
    assert.equal(f.gate.checkHandshake(access, q), false);
  });
});

describe('partner gate: rate limits', { timeout: 10_000 }, () => {
  const CLIENT = '192.0.2.10';
  const call = (f: Fixture, peer = CLIENT): GatePass | GateRefusal =>
    f.gate.checkHead(
      f.access('/limited'),
      peer,
      f.headers({ 'x-limited-key': LIMITED_KEY }),
      undefined,
    );

  it('burst defaults to perSecond; over it is 429 with Retry-After and no auth-failure reason', () => {
    const f = fixture();
    passed(call(f));
    passed(call(f));
    const refusal = refused(call(f), 429, undefined);
    assert.equal(refusal.partner, 'limited');
    assert.deepEqual(refusal.headers, [['Retry-After', '1']]);
  });

  it('refills with the monotonic clock, not the wall clock', () => {
    const f = fixture();
    passed(call(f));
    passed(call(f));
    refused(call(f), 429, undefined);
    f.clock.wall += 60_000; // the wall clock does not refill
    refused(call(f), 429, undefined);
    f.clock.mono += 499;
    refused(call(f), 429, undefined);
    f.clock.mono += 1; // 2/s: one token every 500 ms
    passed(call(f));
    refused(call(f), 429, undefined);
    f.clock.mono += 10_000; // a long pause refills to the burst, not beyond
    passed(call(f));
    passed(call(f));
    refused(call(f), 429, undefined);
  });

  it("each worker enforces its share, and Retry-After is whole seconds >= 1 of that share's rate", () => {
    const f = fixture(4); // 2/s over 4 workers: 0.5/s and a burst of 1 here
    passed(call(f));
    const refusal = refused(call(f), 429, undefined);
    assert.deepEqual(refusal.headers, [['Retry-After', '2']]);
    f.clock.mono += 2000;
    passed(call(f));
  });

  it('refusals before the rate limit (401, 403 source) take no token', () => {
    const f = fixture();
    for (let i = 0; i < 5; i++) {
      refused(call(f, '198.51.100.5'), 403, 'source');
      refused(
        f.gate.checkHead(
          f.access('/limited'),
          CLIENT,
          f.headers({ 'x-limited-key': 'nope-nope-nope-nope' }),
          undefined,
        ),
        401,
        'wrong',
      );
    }
    passed(call(f));
    passed(call(f));
    refused(call(f), 429, undefined);
  });

  it('partners without a rateLimit are not limited', () => {
    const f = fixture();
    for (let i = 0; i < 1000; i++)
      passed(
        f.gate.checkHead(
          f.access('/acme'),
          ACME_CLIENT,
          f.headers({ 'x-api-key': ACME_KEY_1 }),
          undefined,
        ),
      );
  });
});

describe('partner gate: problem details', { timeout: 10_000 }, () => {
  it('never contain a secret, in any refusal above or in these near misses', () => {
    const f = fixture();
    const near = [
      `${ACME_KEY_1.slice(0, 10)}`,
      ACME_KEY_2.slice(0, -1),
      `Bearer ${BEARER_KEY.slice(0, -2)}`,
    ];
    for (const value of near) {
      const refusal = refused(
        f.gate.checkHead(
          f.access('/all'),
          ACME_CLIENT,
          f.headers(
            value.startsWith('Bearer ') ? { authorization: value } : { 'x-api-key': value },
          ),
          undefined,
        ),
        401,
        'wrong',
      );
      assertNoSecret(refusal.error.message, [value, value.replace(/^Bearer /, '')]);
    }
    refused(
      f.gate.checkHead(
        f.access('/wx'),
        UNTRUSTED,
        f.headers({}),
        new URLSearchParams({
          signature: wechatSignature(WECHAT_TOKEN, '1', 'n'),
          timestamp: '1',
          nonce: 'n',
        }),
      ),
      401,
      'expired',
    );
    // Every refusal of this file went through refused(), which checked it; make sure there were many.
    assert.ok(details.length > 40, `only ${details.length} refusals were checked`);
    for (const text of details) assertNoSecret(text);
  });
});
