/** `file:` secrets in the config (src/shared/config.ts): LoadCredential files, every problem with its path, never the secret. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, resolveSecretFiles } from '../../src/shared/config.js';
import { ConfigError, type ConfigProblem } from '../../src/shared/errors.js';

const SECRET = 'S3cr3t-p4ss';
const URL_WITH_SECRET = `amqp://bridge:${SECRET}@127.0.0.1:5672/`;
const PUBLISH = { path: '/a', mode: 'publish', routingKey: 'a' };

interface Dirs {
  /** Stands for $CREDENTIALS_DIRECTORY. */
  readonly credentials: string;
  /** Writes `config` (an object, as JSON, which is YAML) and returns its path. */
  config(config: unknown): string;
  /** Writes a file in the credentials dir (or at an absolute path) and returns its path. */
  secret(name: string, content: string): string;
}

function dirs(t: { after: (fn: () => void) => void }): Dirs {
  const root = mkdtempSync(path.join(tmpdir(), 'config-secrets-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const credentials = path.join(root, 'credentials');
  mkdirSync(credentials, { mode: 0o700 });
  return {
    credentials,
    config(config) {
      const file = path.join(root, 'config.yaml');
      writeFileSync(file, JSON.stringify(config));
      return file;
    },
    secret(name, content) {
      const file = path.isAbsolute(name) ? name : path.join(credentials, name);
      writeFileSync(file, content, { mode: 0o600 });
      return file;
    },
  };
}

/** The problems of the ConfigError `fn` throws; fails when it throws none. */
function problemsOf(fn: () => unknown): readonly ConfigProblem[] {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    assert.ok(!err.message.includes(SECRET), `the secret leaked into the error: ${err.message}`);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('file: secrets', { timeout: 10_000 }, () => {
  it('replaces file:NAME by the content of $CREDENTIALS_DIRECTORY/NAME, without its final newline', (t) => {
    const d = dirs(t);
    d.secret('amqp-url', `${URL_WITH_SECRET}\n`);
    const config = loadConfig(d.config({ amqp: { urls: ['file:amqp-url'] }, routes: [PUBLISH] }), {
      CREDENTIALS_DIRECTORY: d.credentials,
    });
    assert.deepEqual(config.amqp.urls, [URL_WITH_SECRET]);
  });

  it('reads an absolute file: path without $CREDENTIALS_DIRECTORY, beside literal URLs in failover order', (t) => {
    const d = dirs(t);
    const file = d.secret(path.join(d.credentials, 'second'), URL_WITH_SECRET);
    const config = loadConfig(
      d.config({
        amqp: { urls: ['amqp://guest:guest@127.0.0.1:5672/', `file:${file}`] },
        routes: [PUBLISH],
      }),
      {},
    );
    assert.deepEqual(config.amqp.urls, ['amqp://guest:guest@127.0.0.1:5672/', URL_WITH_SECRET]);
  });

  it('resolves file: references given through BRIDGE_AMQP_URLS too', (t) => {
    const d = dirs(t);
    d.secret('a', 'amqp://a:x@10.0.0.1/');
    d.secret('b', 'amqps://b:y@broker.example/vhost');
    const config = loadConfig(d.config({ routes: [PUBLISH] }), {
      CREDENTIALS_DIRECTORY: d.credentials,
      BRIDGE_AMQP_URLS: 'file:a, file:b',
    });
    assert.deepEqual(config.amqp.urls, [
      'amqp://a:x@10.0.0.1/',
      'amqps://b:y@broker.example/vhost',
    ]);
  });

  it('a missing file is a problem at the entry naming the file, with no second complaint about the URL', (t) => {
    const d = dirs(t);
    const problems = problemsOf(() =>
      loadConfig(d.config({ amqp: { urls: ['file:amqp-url'] }, routes: [PUBLISH] }), {
        CREDENTIALS_DIRECTORY: d.credentials,
      }),
    );
    assert.deepEqual(problems, [
      {
        path: 'amqp.urls[0]',
        message: `cannot read secret file ${path.join(d.credentials, 'amqp-url')} (ENOENT)`,
      },
    ]);
  });

  it('an unreadable file is reported with its errno', (t) => {
    const d = dirs(t);
    const dir = path.join(d.credentials, 'a-directory');
    mkdirSync(dir);
    const problems = problemsOf(() =>
      loadConfig(d.config({ amqp: { urls: [`file:${dir}`] }, routes: [PUBLISH] }), {}),
    );
    assert.deepEqual(problems, [
      { path: 'amqp.urls[0]', message: `cannot read secret file ${dir} (EISDIR)` },
    ]);
  });

  it('a relative reference without $CREDENTIALS_DIRECTORY says what to do', (t) => {
    const d = dirs(t);
    d.secret('amqp-url', URL_WITH_SECRET);
    const problems = problemsOf(() =>
      loadConfig(d.config({ amqp: { urls: ['file:amqp-url'] }, routes: [PUBLISH] }), {}),
    );
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.path, 'amqp.urls[0]');
    assert.match(
      problems[0]?.message ?? '',
      /CREDENTIALS_DIRECTORY, which is not set .*LoadCredential=.*absolute path/,
    );
  });

  it('an empty file, a file of several lines and a bare "file:" are problems', (t) => {
    const d = dirs(t);
    d.secret('empty', '\n');
    d.secret('two', `${URL_WITH_SECRET}\n${URL_WITH_SECRET}\n`);
    const problems = problemsOf(() =>
      loadConfig(
        d.config({ amqp: { urls: ['file:empty', 'file:two', 'file:'] }, routes: [PUBLISH] }),
        {
          CREDENTIALS_DIRECTORY: d.credentials,
        },
      ),
    );
    assert.deepEqual(problems, [
      {
        path: 'amqp.urls[0]',
        message: `secret file ${path.join(d.credentials, 'empty')} is empty`,
      },
      {
        path: 'amqp.urls[1]',
        message: `secret file ${path.join(d.credentials, 'two')} must hold one value on a single line`,
      },
      { path: 'amqp.urls[2]', message: '"file:" names no file' },
    ]);
  });

  it('a file that holds no AMQP URL is the schema problem plus the file it came from, never the value', (t) => {
    const d = dirs(t);
    const file = d.secret('amqp-url', `http://bridge:${SECRET}@127.0.0.1/`);
    const problems = problemsOf(() =>
      loadConfig(
        d.config({ amqp: { urls: ['amqp://ok@127.0.0.1/', 'file:amqp-url'] }, routes: [PUBLISH] }),
        {
          CREDENTIALS_DIRECTORY: d.credentials,
        },
      ),
    );
    assert.deepEqual(problems, [
      {
        path: 'amqp.urls[1]',
        message: `must be an amqp:// or amqps:// URL (value read from ${file})`,
      },
    ]);
  });

  it('secret problems are listed with every other problem of the file', (t) => {
    const d = dirs(t);
    const problems = problemsOf(() =>
      loadConfig(d.config({ workers: 0, amqp: { urls: ['file:missing'] }, routes: [] }), {
        CREDENTIALS_DIRECTORY: d.credentials,
      }),
    );
    assert.deepEqual(
      problems.map((p) => p.path).sort(),
      ['amqp.urls[0]', 'routes', 'workers'],
      JSON.stringify(problems),
    );
  });

  it('leaves literal values, other types and configs without amqp.urls alone', () => {
    const raw = { amqp: { urls: ['amqp://a@h/', 42, 'files:x'] }, routes: [] };
    const out = resolveSecretFiles(raw, {});
    assert.deepEqual(out.raw, raw);
    assert.deepEqual(out.problems, []);
    assert.equal(out.sources.size, 0);
    assert.deepEqual(resolveSecretFiles({ routes: [] }, {}).raw, { routes: [] });
    assert.equal(resolveSecretFiles('not an object', {}).raw, 'not an object');
  });

  it('does not modify the raw object it was given', (t) => {
    const d = dirs(t);
    d.secret('amqp-url', URL_WITH_SECRET);
    const raw = { amqp: { urls: ['file:amqp-url'] } };
    const out = resolveSecretFiles(raw, { CREDENTIALS_DIRECTORY: d.credentials });
    assert.deepEqual(raw, { amqp: { urls: ['file:amqp-url'] } });
    assert.deepEqual(out.raw, { amqp: { urls: [URL_WITH_SECRET] } });
    assert.equal(out.sources.get('amqp.urls[0]'), path.join(d.credentials, 'amqp-url'));
  });
});
