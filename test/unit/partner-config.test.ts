/**
 * Partner configuration (src/shared/config-schema.ts, config.ts, primary/partner-warnings.ts)
 * against /work/notes/partners-spec.md: secrets only from files, named by path and file and never
 * echoed; one verifier per partner; ids; routes' partner lists; what clientCert and
 * forwardHeaders need; CIDR checks with parseCidr's words; rateLimit defaults; start warnings.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { partnerWarnings } from '../../src/primary/partner-warnings.js';
import { parseCidr } from '../../src/shared/cidr.js';
import { loadConfig, validateConfig, type Config } from '../../src/shared/config.js';
import { ConfigError, type ConfigProblem } from '../../src/shared/errors.js';
import { problemsOf } from '../helpers/config-problems.js';

const API_KEY = 'k3y-0f-acme-7d1e4b9a2c5f8e3d';
const API_KEY_2 = 'k3y-two-acme-1b2c3d4e5f6a7b8c';
const HOOK_SECRET = `whsec_${Buffer.from('the partner webhook secret 32 by').toString('base64')}`;
const WECHAT_TOKEN = 'wxTok3nAbc123';
const SUBJECT = 'CN=acme-gateway,O=Acme';

const route = (p: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  path: p,
  mode: 'publish',
  routingKey: 'q',
  ...extra,
});

interface Dirs {
  /** Stands for $CREDENTIALS_DIRECTORY. */
  readonly credentials: string;
  /** Writes a secret file (relative: in the credentials dir) and returns its path. */
  secret(name: string, content: string): string;
  /** Writes the config (JSON is YAML) and loads it with CREDENTIALS_DIRECTORY set (or `env`). */
  load(raw: unknown, env?: Record<string, string>): Config;
}

function dirs(t: { after: (fn: () => void) => void }): Dirs {
  const root = mkdtempSync(path.join(tmpdir(), 'partner-config-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const credentials = path.join(root, 'credentials');
  mkdirSync(credentials, { mode: 0o700 });
  return {
    credentials,
    secret(name, content) {
      const file = path.isAbsolute(name) ? name : path.join(credentials, name);
      writeFileSync(file, content, { mode: 0o600 });
      return file;
    },
    load(raw, env = { CREDENTIALS_DIRECTORY: credentials }) {
      const file = path.join(root, 'config.yaml');
      writeFileSync(file, JSON.stringify(raw));
      return loadConfig(file, env);
    },
  };
}

/** The ConfigError's problems; the error's whole text must not contain any of `values`. */
function refusedWithout(values: readonly string[], fn: () => unknown): readonly ConfigProblem[] {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const value of values)
      assert.ok(!err.message.includes(value), `the value leaked into the error: ${err.message}`);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

function problemAt(problems: readonly ConfigProblem[], at: string): ConfigProblem {
  const found = problems.find((p) => p.path === at);
  assert.ok(found, `no problem at ${at}; got ${JSON.stringify(problems)}`);
  return found;
}

/** A valid partner for schema checks (validateConfig sees secrets already read from their files). */
const acme = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'acme',
  auth: { apiKey: { keys: [API_KEY] } },
  ...extra,
});

describe('partner secrets come from files only', { timeout: 10_000 }, () => {
  it('refuses an inline API key, naming its path and not its value', (t) => {
    const d = dirs(t);
    const problems = refusedWithout([API_KEY], () =>
      d.load({
        partners: [{ id: 'acme', auth: { apiKey: { keys: [API_KEY] } } }],
        routes: [route('/a', { partners: ['acme'] })],
      }),
    );
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]?.path, 'partners[0].auth.apiKey.keys[0]');
    assert.match(problems[0]?.message ?? '', /file reference \(file:NAME/);
  });

  it('refuses inline webhook secrets and WeChat tokens too, each at its path, even when invalid', (t) => {
    const d = dirs(t);
    const short = 'short';
    const problems = refusedWithout([API_KEY, HOOK_SECRET, WECHAT_TOKEN, short], () =>
      d.load({
        partners: [
          { id: 'a', auth: { apiKey: { keys: ['file:a.k', short] } } },
          { id: 'b', auth: { webhook: { secrets: [HOOK_SECRET] } } },
          { id: 'c', auth: { wechat: { token: WECHAT_TOKEN } } },
        ],
        routes: [route('/a', { partners: ['a', 'b', 'c'] })],
      }),
    );
    assert.deepEqual(
      problems.map((p) => p.path),
      [
        'partners[0].auth.apiKey.keys[0]',
        'partners[0].auth.apiKey.keys[1]',
        'partners[1].auth.webhook.secrets[0]',
        'partners[2].auth.wechat.token',
      ],
    );
    // keys[0] is a missing file; the others are inline.
    assert.match(problemAt(problems, 'partners[0].auth.apiKey.keys[0]').message, /ENOENT/);
    for (const at of [
      'partners[0].auth.apiKey.keys[1]',
      'partners[1].auth.webhook.secrets[0]',
      'partners[2].auth.wechat.token',
    ])
      assert.match(problemAt(problems, at).message, /must be a file reference/);
  });

  it('refuses an inline secret that YAML reads as a number without echoing it', (t) => {
    // An all-digit WeChat token or API key written inline is a YAML number, not a string.
    const d = dirs(t);
    const problems = refusedWithout(['20250101123456', '1234567890123456'], () =>
      d.load({
        partners: [
          { id: 'wx', auth: { wechat: { token: 20250101123456 } } },
          { id: 'num', auth: { apiKey: { keys: [1234567890123456] } } },
        ],
        routes: [route('/a', { partners: ['wx', 'num'] })],
      }),
    );
    assert.deepEqual(
      problems.map((p) => p.path),
      ['partners[0].auth.wechat.token', 'partners[1].auth.apiKey.keys[0]'],
    );
  });

  it('reads file:NAME from $CREDENTIALS_DIRECTORY, without the final newline, for every secret kind', (t) => {
    const d = dirs(t);
    d.secret('acme.k1', `${API_KEY}\n`);
    d.secret('acme.k2', `${API_KEY_2}\r\n`);
    d.secret('hooks.s', `${HOOK_SECRET}\n`);
    d.secret('wx.token', WECHAT_TOKEN);
    const config = d.load({
      partners: [
        { id: 'acme', auth: { apiKey: { keys: ['file:acme.k1', 'file:acme.k2'] } } },
        { id: 'hooks', auth: { webhook: { secrets: ['file:hooks.s'] } } },
        { id: 'wx', auth: { wechat: { token: 'file:wx.token' } } },
      ],
      routes: [route('/a', { partners: ['acme', 'hooks', 'wx'] })],
    });
    assert.deepEqual(config.partners[0]?.auth.apiKey?.keys, [API_KEY, API_KEY_2]);
    assert.deepEqual(config.partners[1]?.auth.webhook?.secrets, [HOOK_SECRET]);
    assert.equal(config.partners[2]?.auth.wechat?.token, WECHAT_TOKEN);
  });

  it('reads file:/absolute/path without $CREDENTIALS_DIRECTORY', (t) => {
    const d = dirs(t);
    const file = d.secret(path.join(d.credentials, 'elsewhere'), `${HOOK_SECRET}\n`);
    const config = d.load(
      {
        partners: [{ id: 'hooks', auth: { webhook: { secrets: [`file:${file}`] } } }],
        routes: [route('/a', { partners: ['hooks'] })],
      },
      {},
    );
    assert.deepEqual(config.partners[0]?.auth.webhook?.secrets, [HOOK_SECRET]);
  });

  it('a relative reference without $CREDENTIALS_DIRECTORY is a problem at its path', (t) => {
    const d = dirs(t);
    d.secret('acme.k1', API_KEY);
    const problems = refusedWithout([API_KEY], () =>
      d.load(
        {
          partners: [{ id: 'acme', auth: { apiKey: { keys: ['file:acme.k1'] } } }],
          routes: [route('/a', { partners: ['acme'] })],
        },
        {},
      ),
    );
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]?.path, 'partners[0].auth.apiKey.keys[0]');
    assert.match(problems[0]?.message ?? '', /CREDENTIALS_DIRECTORY, which is not set/);
  });

  it('an unreadable file is one problem naming the file and its errno', (t) => {
    const d = dirs(t);
    const dir = path.join(d.credentials, 'a-directory');
    mkdirSync(dir);
    const problems = refusedWithout([], () =>
      d.load({
        partners: [
          { id: 'a', auth: { apiKey: { keys: ['file:missing'] } } },
          { id: 'b', auth: { wechat: { token: `file:${dir}` } } },
        ],
        routes: [route('/a', { partners: ['a', 'b'] })],
      }),
    );
    assert.deepEqual(problems, [
      {
        path: 'partners[0].auth.apiKey.keys[0]',
        message: `cannot read secret file ${path.join(d.credentials, 'missing')} (ENOENT)`,
      },
      { path: 'partners[1].auth.wechat.token', message: `cannot read secret file ${dir} (EISDIR)` },
    ]);
  });

  it('an API key that is too short or has a space names the file, never the key', (t) => {
    const d = dirs(t);
    const short = 'tooShort12345';
    const spaced = 'has a space in the middle of it';
    const shortFile = d.secret('short', `${short}\n`);
    const spacedFile = d.secret('spaced', spaced);
    const problems = refusedWithout([short, spaced], () =>
      d.load({
        partners: [{ id: 'acme', auth: { apiKey: { keys: ['file:short', 'file:spaced'] } } }],
        routes: [route('/a', { partners: ['acme'] })],
      }),
    );
    assert.equal(problems.length, 2, JSON.stringify(problems));
    const first = problemAt(problems, 'partners[0].auth.apiKey.keys[0]').message;
    assert.match(first, /16 to 512 printable characters/);
    assert.ok(first.includes(`(value read from ${shortFile})`), first);
    const second = problemAt(problems, 'partners[0].auth.apiKey.keys[1]').message;
    assert.ok(second.includes(`(value read from ${spacedFile})`), second);
  });

  it('a bad whsec_ secret names the file, never the secret', (t) => {
    const d = dirs(t);
    const bad = [
      Buffer.from('no prefix at all, 24 bytes').toString('base64'),
      'whsec_not*base64*at+all',
      'whsec_YWJjZGVmZ2hpams', // unpadded: not canonical base64
      'whsec_',
    ];
    const files = bad.map((value, i) => d.secret(`s${i}`, value));
    const problems = refusedWithout(
      bad.filter((v) => v !== 'whsec_'),
      () =>
        d.load({
          partners: bad.map((_, i) => ({
            id: `p${i}`,
            auth: { webhook: { secrets: [`file:s${i}`] } },
          })),
          routes: [route('/a', { partners: bad.map((_, i) => `p${i}`) })],
        }),
    );
    bad.forEach((_, i) => {
      const problem = problemAt(problems, `partners[${i}].auth.webhook.secrets[0]`);
      assert.match(problem.message, /whsec_|base64/);
      assert.ok(problem.message.includes(`(value read from ${files[i]})`), problem.message);
    });
  });

  it('a WeChat token that is not 3 to 32 letters or digits names the file, never the token', (t) => {
    const d = dirs(t);
    const bad = ['ab', 'has-a-dash', 'x'.repeat(33), 'tok en'];
    const files = bad.map((value, i) => d.secret(`t${i}`, value));
    const problems = refusedWithout(
      bad.filter((v) => v.length > 2),
      () =>
        d.load({
          partners: bad.map((_, i) => ({ id: `w${i}`, auth: { wechat: { token: `file:t${i}` } } })),
          routes: [route('/a', { partners: bad.map((_, i) => `w${i}`) })],
        }),
    );
    assert.equal(problems.length, bad.length, JSON.stringify(problems));
    bad.forEach((_, i) => {
      const problem = problemAt(problems, `partners[${i}].auth.wechat.token`);
      assert.match(problem.message, /3 to 32 letters or digits/);
      assert.ok(problem.message.includes(`(value read from ${files[i]})`), problem.message);
    });
  });

  it('takes one or two keys or secrets, not three', (t) => {
    const d = dirs(t);
    for (const name of ['k1', 'k2', 'k3']) d.secret(name, `${API_KEY}-${name}`);
    const problems = refusedWithout([API_KEY], () =>
      d.load({
        partners: [{ id: 'acme', auth: { apiKey: { keys: ['file:k1', 'file:k2', 'file:k3'] } } }],
        routes: [route('/a', { partners: ['acme'] })],
      }),
    );
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]?.path, 'partners[0].auth.apiKey.keys');
  });
});

describe('partner verifiers and ids', { timeout: 10_000 }, () => {
  it('fills in the defaults: x-api-key, tolerance 300 s, no partners, no trusted proxies', () => {
    const none = validateConfig({ routes: [route('/a')] });
    assert.deepEqual(none.partners, []);
    assert.deepEqual(none.trustedProxies, []);
    assert.equal(none.routes[0]?.partners, undefined);
    const config = validateConfig({
      partners: [
        { id: 'a', auth: { apiKey: { keys: [API_KEY] } } },
        { id: 'b', auth: { webhook: { secrets: [HOOK_SECRET] } } },
        { id: 'c', auth: { wechat: { token: WECHAT_TOKEN } } },
        { id: 'd', auth: { apiKey: { header: 'X-Acme-Key', keys: [API_KEY] } } },
      ],
      routes: [route('/a', { partners: ['a', 'b', 'c', 'd'] })],
    });
    assert.equal(config.partners[0]?.auth.apiKey?.header, 'x-api-key');
    assert.equal(config.partners[1]?.auth.webhook?.toleranceSeconds, 300);
    assert.equal(config.partners[2]?.auth.wechat?.toleranceSeconds, 300);
    assert.equal(config.partners[3]?.auth.apiKey?.header, 'x-acme-key');
    assert.equal(config.partners[0]?.sources, undefined);
    assert.equal(config.partners[0]?.rateLimit, undefined);
  });

  it('refuses two verifiers in one partner, naming both', () => {
    const [problem, ...rest] = problemsOf(() =>
      validateConfig({
        partners: [
          {
            id: 'acme',
            auth: { apiKey: { keys: [API_KEY] }, webhook: { secrets: [HOOK_SECRET] } },
          },
        ],
        routes: [route('/a', { partners: ['acme'] })],
      }),
    );
    assert.deepEqual(rest, []);
    assert.equal(problem?.path, 'partners[0].auth');
    assert.match(problem?.message ?? '', /apiKey and webhook/);
    assert.match(problem?.message ?? '', /exactly one verifier/);
  });

  it('refuses a partner without a verifier, listing the four', () => {
    const [problem, ...rest] = problemsOf(() =>
      validateConfig({
        partners: [{ id: 'acme', auth: {} }],
        routes: [route('/a', { partners: ['acme'] })],
      }),
    );
    assert.deepEqual(rest, []);
    assert.equal(problem?.path, 'partners[0].auth');
    assert.match(problem?.message ?? '', /apiKey, webhook, wechat or clientCert/);
  });

  it('refuses a duplicate partner id, naming the first', () => {
    const problems = problemsOf(() =>
      validateConfig({
        partners: [acme(), { id: 'b', auth: { apiKey: { keys: [API_KEY_2] } } }, acme()],
        routes: [route('/a', { partners: ['acme'] })],
      }),
    );
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]?.path, 'partners[2].id');
    assert.match(problems[0]?.message ?? '', /"acme" is also the id of partners\[0\]/);
  });

  it('refuses ids outside [a-z0-9_-]{1,32}', () => {
    for (const id of ['Acme', '', 'a'.repeat(33), 'acme.corp', 'acme corp', 'äcme']) {
      const problems = problemsOf(() =>
        validateConfig({
          partners: [acme({ id })],
          routes: [route('/a')],
        }),
      );
      const problem = problemAt(problems, 'partners[0].id');
      assert.match(problem.message, /1 to 32 of a-z, 0-9, _ and -/, id);
    }
    for (const id of ['a', 'a'.repeat(32), 'acme_corp-2'])
      validateConfig({ partners: [acme({ id })], routes: [route('/a', { partners: [id] })] });
  });

  it('refuses an unknown partner id on a route, listing the partners', () => {
    const problems = problemsOf(() =>
      validateConfig({
        partners: [acme(), { id: 'beta', auth: { apiKey: { keys: [API_KEY_2] } } }],
        routes: [route('/a', { partners: ['acme'] }), route('/b', { partners: ['beta', 'acme2'] })],
      }),
    );
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]?.path, 'routes[1].partners[1]');
    assert.match(problems[0]?.message ?? '', /"acme2" is not a partner; partners are: acme, beta/);
    const [none] = problemsOf(() =>
      validateConfig({ routes: [route('/a', { partners: ['acme'] })] }),
    );
    assert.equal(none?.path, 'routes[0].partners[0]');
    assert.match(none?.message ?? '', /no partners are configured/);
  });

  it('refuses a partner listed twice on a route, and an empty list', () => {
    const problems = problemsOf(() =>
      validateConfig({
        partners: [acme()],
        routes: [route('/a', { partners: ['acme', 'acme'] })],
      }),
    );
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]?.path, 'routes[0].partners[1]');
    assert.match(problems[0]?.message ?? '', /"acme" is listed twice/);
    const [empty] = problemsOf(() =>
      validateConfig({ partners: [acme()], routes: [route('/a', { partners: [] })] }),
    );
    assert.equal(empty?.path, 'routes[0].partners');
  });

  it('refuses clientCert without trustedProxies, and takes it with them', () => {
    const raw = {
      partners: [{ id: 'gw', auth: { clientCert: { subjects: [SUBJECT] } } }],
      routes: [route('/a', { partners: ['gw'] })],
    };
    const problems = problemsOf(() => validateConfig(raw));
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]?.path, 'partners[0].auth.clientCert');
    assert.match(problems[0]?.message ?? '', /needs trustedProxies/);
    const config = validateConfig({ ...raw, trustedProxies: ['127.0.0.1/32'] });
    assert.deepEqual(config.partners[0]?.auth.clientCert?.subjects, [SUBJECT]);
  });
});

describe('forwardHeaders and partner credentials', { timeout: 10_000 }, () => {
  it('refuses forwarding a verifier header, whatever its case', () => {
    for (const header of ['x-api-key', 'X-Api-Key']) {
      const problems = problemsOf(() =>
        validateConfig({
          partners: [acme()],
          routes: [route('/a', { partners: ['acme'], forwardHeaders: ['x-order-id', header] })],
        }),
      );
      assert.equal(problems.length, 1, JSON.stringify(problems));
      assert.equal(problems[0]?.path, 'routes[0].forwardHeaders[1]');
      assert.match(problems[0]?.message ?? '', /x-api-key carries partner acme's credentials/);
    }
  });

  it('refuses forwarding the headers of every kind of verifier, on any route', () => {
    const problems = problemsOf(() =>
      validateConfig({
        trustedProxies: ['127.0.0.1/32'],
        partners: [
          { id: 'k', auth: { apiKey: { header: 'x-acme-key', keys: [API_KEY] } } },
          { id: 'h', auth: { webhook: { secrets: [HOOK_SECRET] } } },
          { id: 'c', auth: { clientCert: { subjects: [SUBJECT] } } },
        ],
        routes: [
          route('/open', {
            forwardHeaders: [
              'x-acme-key',
              'webhook-id',
              'webhook-timestamp',
              'webhook-signature',
              'x-client-verify',
              'x-client-subject',
            ],
          }),
        ],
      }),
    );
    assert.deepEqual(
      problems.map((p) => p.path),
      [0, 1, 2, 3, 4, 5].map((i) => `routes[0].forwardHeaders[${i}]`),
    );
  });

  it('refuses x-partner in forwardHeaders: the bridge sets it', () => {
    const [problem, ...rest] = problemsOf(() =>
      validateConfig({ routes: [route('/a', { forwardHeaders: ['X-Partner'] })] }),
    );
    assert.deepEqual(rest, []);
    assert.equal(problem?.path, 'routes[0].forwardHeaders[0]');
    assert.match(problem?.message ?? '', /is reserved/);
  });
});

describe('sources and trustedProxies', { timeout: 10_000 }, () => {
  const cidrMessage = (text: string): string => {
    try {
      parseCidr(text);
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail(`${text} parsed`);
  };

  it("refuses a bad network in sources with parseCidr's message", () => {
    const bad = [
      '203.0.113.1/24',
      '203.0.113/24',
      '10.0.0.0/33',
      '2001:db8::/129x',
      '::ffff:10.0.0.0/104',
    ];
    const problems = problemsOf(() =>
      validateConfig({
        partners: [acme({ sources: ['198.51.100.0/24', ...bad] })],
        routes: [route('/a', { partners: ['acme'] })],
      }),
    );
    assert.deepEqual(
      problems,
      bad.map((text, i) => ({ path: `partners[0].sources[${i + 1}]`, message: cidrMessage(text) })),
    );
    assert.match(cidrMessage('203.0.113.1/24'), /did you mean 203\.0\.113\.0\/24/);
  });

  it("refuses a bad network in trustedProxies with parseCidr's message", () => {
    const problems = problemsOf(() =>
      validateConfig({
        trustedProxies: ['127.0.0.1/32', '::1/127', 'localhost'],
        routes: [route('/a')],
      }),
    );
    assert.deepEqual(problems, [
      { path: 'trustedProxies[1]', message: cidrMessage('::1/127') },
      { path: 'trustedProxies[2]', message: cidrMessage('localhost') },
    ]);
  });

  it('takes good networks of both families and bare addresses', () => {
    const config = validateConfig({
      trustedProxies: ['127.0.0.1', '::1/128', '10.0.0.0/8'],
      partners: [acme({ sources: ['203.0.113.0/24', '2001:db8::/32', '198.51.100.7'] })],
      routes: [route('/a', { partners: ['acme'] })],
    });
    assert.deepEqual(config.trustedProxies, ['127.0.0.1', '::1/128', '10.0.0.0/8']);
    assert.deepEqual(config.partners[0]?.sources, [
      '203.0.113.0/24',
      '2001:db8::/32',
      '198.51.100.7',
    ]);
  });
});

describe('rateLimit', { timeout: 10_000 }, () => {
  const limited = (rateLimit: unknown): Config =>
    validateConfig({
      partners: [acme({ rateLimit })],
      routes: [route('/a', { partners: ['acme'] })],
    });

  it('defaults burst to perSecond and keeps an explicit burst', () => {
    assert.deepEqual(limited({ perSecond: 200 }).partners[0]?.rateLimit, {
      perSecond: 200,
      burst: 200,
    });
    assert.deepEqual(limited({ perSecond: 200, burst: 400 }).partners[0]?.rateLimit, {
      perSecond: 200,
      burst: 400,
    });
    assert.deepEqual(limited({ perSecond: 5, burst: 1 }).partners[0]?.rateLimit, {
      perSecond: 5,
      burst: 1,
    });
  });

  it('refuses a rate or burst below 1, fractions and unknown keys', () => {
    for (const [rateLimit, at] of [
      [{ perSecond: 0 }, 'partners[0].rateLimit.perSecond'],
      [{ perSecond: 1.5 }, 'partners[0].rateLimit.perSecond'],
      [{ perSecond: 10, burst: 0 }, 'partners[0].rateLimit.burst'],
      [{}, 'partners[0].rateLimit.perSecond'],
      [{ perSecond: 10, brust: 20 }, 'partners[0].rateLimit.brust'],
    ] as const)
      problemAt(
        problemsOf(() => limited(rateLimit)),
        at,
      );
  });
});

describe('partnerWarnings', { timeout: 10_000 }, () => {
  it('lists the open routes when partners exist', () => {
    const config = validateConfig({
      partners: [acme()],
      routes: [route('/a', { partners: ['acme'] }), route('/open1'), route('/open2')],
    });
    assert.deepEqual(partnerWarnings(config, 1), [
      {
        msg: 'routes without partners are open to anyone who reaches the port',
        fields: { routes: ['/open1', '/open2'] },
      },
    ]);
  });

  it('says nothing without partners, or when every route has partners', () => {
    assert.deepEqual(partnerWarnings(validateConfig({ routes: [route('/open')] }), 4), []);
    const closed = validateConfig({
      partners: [acme({ rateLimit: { perSecond: 10 } })],
      routes: [route('/a', { partners: ['acme'] })],
    });
    assert.deepEqual(partnerWarnings(closed, 4), []);
    assert.deepEqual(partnerWarnings(closed, 10), []);
  });

  it('warns when a burst is below the worker count, naming partner, burst and workers', () => {
    const config = validateConfig({
      partners: [
        acme({ rateLimit: { perSecond: 100, burst: 3 } }),
        { id: 'b', auth: { apiKey: { keys: [API_KEY_2] } }, rateLimit: { perSecond: 2 } },
        { id: 'c', auth: { apiKey: { header: 'x-c', keys: [API_KEY_2] } } },
      ],
      routes: [route('/a', { partners: ['acme', 'b', 'c'] })],
    });
    assert.deepEqual(partnerWarnings(config, 4), [
      {
        msg: 'rate limit burst is below the worker count: each worker allows 1, so the total burst is the worker count',
        fields: { partner: 'acme', burst: 3, workers: 4 },
      },
      {
        msg: 'rate limit burst is below the worker count: each worker allows 1, so the total burst is the worker count',
        fields: { partner: 'b', burst: 2, workers: 4 },
      },
    ]);
    assert.deepEqual(
      partnerWarnings(config, 3).map((w) => w.fields['partner']),
      ['b'],
    );
    assert.deepEqual(partnerWarnings(config, 2), []);
  });
});
