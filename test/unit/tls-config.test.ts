/** The `tls` section and `uwsBuild`: schema rules, file checks (tls-files.ts), where relative paths point, and which runtime may serve it (runtime-choice.ts). */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig, uwsBuildFromEnv, validateConfig } from '../../src/shared/config.js';
import { checkTlsFiles, tlsBaseDir } from '../../src/shared/tls-files.js';
import { reloadTlsRefusal, tlsRefusal, type Runtime } from '../../src/primary/runtime-choice.js';
import { runToExit } from '../helpers/child.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';
import { problemsOf } from '../helpers/config-problems.js';

const ROUTES = [{ path: '/a', mode: 'publish', routingKey: 'a' }];

const RUNTIME_2030: Runtime = {
  build: {
    id: '20.30',
    package: '@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0',
    version: '20.30.0-unofficial.0',
    ssl: false,
    native: true,
  },
  refusals: [{ id: '20.57', reason: 'its binary needs glibc 2.38; this host has 2.36' }],
};
const RUNTIME_2057: Runtime = {
  build: {
    id: '20.57',
    package: '@btc-vision/uwebsockets.js@20.57.0',
    version: '20.57.0',
    ssl: true,
    native: true,
  },
  refusals: [],
};

describe('tls: schema rules', () => {
  const tls = (extra: Record<string, unknown>): unknown => ({
    routes: ROUTES,
    tls: { certFile: 'a.crt', keyFile: 'a.key', ...extra },
  });

  it('defaults clientCert to none and uwsBuild to auto', () => {
    const config = validateConfig(tls({}));
    assert.equal(config.tls?.clientCert, 'none');
    assert.equal(config.uwsBuild, 'auto');
  });

  it('refuses clientCert: require, saying why and what to do instead', () => {
    const [problem] = problemsOf(() =>
      validateConfig(tls({ caFile: 'ca.crt', clientCert: 'require' })),
    );
    assert.equal(problem?.path, 'tls.clientCert');
    assert.match(problem?.message ?? '', /cannot refuse a client that presents none/);
    assert.match(problem?.message ?? '', /Use request/);
    assert.match(problem?.message ?? '', /ssl_verify_client on/);
  });

  it('wants caFile with request, and no caFile without client certificates', () => {
    assert.deepEqual(
      problemsOf(() => validateConfig(tls({ clientCert: 'request' }))).map((p) => p.path),
      ['tls.caFile'],
    );
    const stray = problemsOf(() => validateConfig(tls({ caFile: 'ca.crt' })));
    assert.equal(stray[0]?.path, 'tls.caFile');
    assert.match(stray[0]?.message ?? '', /only used to verify client certificates/);
  });

  it('names unknown keys and impossible values', () => {
    const problems = problemsOf(() => validateConfig(tls({ clientcert: 'none', keyFile: '' })));
    assert.deepEqual(problems.map((p) => p.path).sort(), ['tls.clientcert', 'tls.keyFile']);
    const build = problemsOf(() => validateConfig({ routes: ROUTES, uwsBuild: '21.0' }));
    assert.equal(build[0]?.path, 'uwsBuild');
  });

  it('BRIDGE_UWS_BUILD picks a build for the bridge and for --version; other values are not taken', () => {
    assert.equal(uwsBuildFromEnv({ BRIDGE_UWS_BUILD: '20.30' }), '20.30');
    assert.equal(uwsBuildFromEnv({ BRIDGE_UWS_BUILD: '99' }), 'auto');
    assert.equal(uwsBuildFromEnv({}), 'auto');
  });
});

describe('tls: the files', { timeout: 60_000 }, () => {
  let pki: TestPki;
  let dir: string;
  before(async () => {
    pki = await makeTestPki();
    dir = mkdtempSync(path.join(tmpdir(), 'tls-config-'));
  });
  after(() => {
    pki.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it('accepts a matching pair and describes the served certificate', () => {
    const { problems, served } = checkTlsFiles(
      { certFile: pki.serverCert, keyFile: pki.serverKey, clientCert: 'none' },
      '/',
    );
    assert.deepEqual(problems, []);
    assert.equal(served?.subject, 'CN=localhost');
    assert.match(served?.issuer ?? '', /test CA/);
    assert.ok((served?.notAfter ?? 0) > Date.now() / 1000);
  });

  it('names an expired certificate, a foreign key, an encrypted key and a CA file without certificates', async () => {
    const future = new Date(Date.now() + 10 * 86_400_000);
    const expired = checkTlsFiles(
      { certFile: pki.serverCert, keyFile: pki.serverKey, clientCert: 'none' },
      '/',
      future,
    );
    assert.match(expired.problems[0]?.message ?? '', /expired on/);

    const foreign = checkTlsFiles(
      { certFile: pki.serverCert, keyFile: pki.clientKey, clientCert: 'none' },
      '/',
    );
    assert.deepEqual(
      foreign.problems.map((p) => p.path),
      ['tls.keyFile'],
    );
    assert.match(foreign.problems[0]?.message ?? '', /is not the private key of the certificate/);

    const encrypted = path.join(dir, 'encrypted.key');
    const run = await runToExit('openssl', [
      'pkey',
      '-in',
      pki.serverKey,
      '-aes256',
      '-passout',
      'pass:secret',
      '-out',
      encrypted,
    ]);
    assert.equal(run.code, 0, run.stderr);
    const locked = checkTlsFiles(
      { certFile: pki.serverCert, keyFile: encrypted, clientCert: 'none' },
      '/',
    );
    assert.match(
      locked.problems[0]?.message ?? '',
      /is encrypted; give the bridge an unencrypted key/,
    );

    const notCa = path.join(dir, 'not-a-ca.pem');
    writeFileSync(notCa, readFileSync(pki.serverKey));
    const ca = checkTlsFiles(
      { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: notCa, clientCert: 'request' },
      '/',
    );
    assert.deepEqual(
      ca.problems.map((p) => p.path),
      ['tls.caFile'],
    );
    for (const p of [...foreign.problems, ...locked.problems, ...ca.problems])
      assert.doesNotMatch(p.message, /BEGIN|PRIVATE KEY-----/, 'no key material in a problem');
  });

  it('resolves relative paths in $CREDENTIALS_DIRECTORY, else beside the config file', (t) => {
    const configDir = mkdtempSync(path.join(tmpdir(), 'tls-config-file-'));
    t.after(() => rmSync(configDir, { recursive: true, force: true }));
    const file = path.join(configDir, 'config.json');
    writeFileSync(
      file,
      JSON.stringify({ routes: ROUTES, tls: { certFile: 'tls.crt', keyFile: 'tls.key' } }),
    );

    assert.equal(tlsBaseDir(file, {}), configDir);
    assert.equal(
      tlsBaseDir(file, { CREDENTIALS_DIRECTORY: '/run/credentials/x' }),
      '/run/credentials/x',
    );

    const missing = problemsOf(() => loadConfig(file, {}));
    assert.match(
      missing[0]?.message ?? '',
      new RegExp(`cannot read ${configDir}/tls\\.crt \\(ENOENT\\)`),
    );

    copyFileSync(pki.serverCert, path.join(dir, 'tls.crt'));
    copyFileSync(pki.serverKey, path.join(dir, 'tls.key'));
    const config = loadConfig(file, { CREDENTIALS_DIRECTORY: dir });
    assert.equal(
      config.tls?.certFile,
      path.join(dir, 'tls.crt'),
      'resolved to an absolute path for the workers',
    );
  });
});

describe('tls: which runtime may serve it', () => {
  const withTls = validateConfig({
    routes: ROUTES,
    tls: { certFile: '/a.crt', keyFile: '/a.key' },
  });
  const plain = validateConfig({ routes: ROUTES });

  it('the 20.30 build refuses it, with the reason the newer build did not load and where to go', () => {
    const why = tlsRefusal(withTls, RUNTIME_2030) ?? '';
    assert.match(
      why,
      /has no TLS \(the 20\.57 build, which has TLS, does not load: its binary needs glibc 2\.38/,
    );
    assert.match(why, /TLS through a reverse proxy/);
    assert.equal(tlsRefusal(withTls, RUNTIME_2057), undefined);
    assert.equal(tlsRefusal(plain, RUNTIME_2030), undefined);
  });

  it('a reload may not turn TLS on or off on the same port', () => {
    assert.match(reloadTlsRefusal(plain, withTls) ?? '', /turning TLS on/);
    assert.match(reloadTlsRefusal(withTls, plain) ?? '', /turning TLS off/);
    assert.equal(reloadTlsRefusal(withTls, withTls), undefined);
    assert.equal(reloadTlsRefusal(plain, { ...withTls, listen: '0.0.0.0:8443' }), undefined);
  });
});
