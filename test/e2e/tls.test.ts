/**
 * E2E, TLS on the partner port. Native TLS needs the 20.57 uWebSockets.js build, whose binary
 * needs glibc 2.38: those tests run the bridge in the platform tier's Debian 13 root (built once,
 * then cached; test/platforms/debian13-root.sh) with Node.js 24, or with the Node.js that
 * BRIDGE_TEST_RUNTIME names. Real clients only: curl with the test CA, and Node's tls for the
 * certificate a connection is served. The refusals (20.30 build, impossible settings, bad files)
 * run the bridge wherever the suite runs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { once } from 'node:events';
import {
  MAIN,
  baseConfig,
  parseLogLine,
  startBridge,
  type RunningBridge,
} from '../helpers/bridge.js';
import { runToExit, type Run } from '../helpers/child.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';
import { debian13Runtime, runtimeFromEnv, type Runtime } from '../helpers/runtime.js';
import { metricValue } from '../helpers/metrics.js';

const XML = '<?xml version="1.0"?><order id="7"><item>tls</item></order>';

/** The runtime with native TLS: BRIDGE_TEST_RUNTIME's when it is a Debian 13 one, else Node 24 there. */
async function tlsRuntime(): Promise<Runtime> {
  const fromEnv = await runtimeFromEnv();
  return fromEnv.name.startsWith('debian13-') ? fromEnv : debian13Runtime('24');
}

interface CurlResult {
  /** curl's exit code: 0 = an HTTP answer; 35/56 = the TLS handshake failed. */
  readonly exit: number | null;
  readonly status: number;
  readonly stderr: string;
}

async function curlPost(
  url: string,
  pki: TestPki,
  extra: readonly string[] = [],
): Promise<CurlResult> {
  const run = await runToExit(
    'curl',
    ['-sS', '-m', '10', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', pki.caCert].concat([
      '-H',
      'Content-Type: application/xml',
      '--data-binary',
      XML,
      ...extra,
      url,
    ]),
    { timeoutMs: 20_000 },
  );
  return { exit: run.code, status: Number(run.stdout.trim() || '0'), stderr: run.stderr };
}

/** The certificate a fresh TLS connection to the bridge is served. */
async function servedCertificate(port: number, pki: TestPki): Promise<PeerCertificate> {
  const socket = connect({
    host: '127.0.0.1',
    port,
    ca: readFileSync(pki.caCert),
    servername: 'localhost',
  });
  await once(socket, 'secureConnect');
  const cert = socket.getPeerCertificate();
  socket.destroy();
  return cert;
}

function serialOf(certFile: string): Promise<Run> {
  return runToExit('openssl', ['x509', '-noout', '-serial', '-in', certFile]);
}

describe('native TLS on the partner port (20.57 build)', { timeout: 240_000 }, () => {
  let pki: TestPki;
  let broker: TestBroker;
  let runtime: Runtime;
  before(async () => {
    [pki, broker, runtime] = await Promise.all([makeTestPki(), openBroker(), tlsRuntime()]);
  });
  after(async () => {
    await broker.close();
    pki.remove();
  });

  async function tlsBridge(
    queue: string,
    tls: Record<string, unknown>,
    env: Record<string, string> = {},
  ): Promise<RunningBridge> {
    const route = { path: '/orders', mode: 'publish', routingKey: queue };
    return startBridge(baseConfig([route], { workers: 2, tls }), { runtime, env });
  }

  it('serves HTTPS: curl with the test CA gets 202, the message is in the queue byte for byte', async (t) => {
    const queue = await broker.queue(uniqueName('tls'));
    const bridge = await tlsBridge(queue, { certFile: pki.serverCert, keyFile: pki.serverKey });
    t.after(() => bridge.stop());
    const build = bridge.logs.find((l) => l.msg === 'uWebSockets.js build');
    assert.equal(build?.['uws'], '@btc-vision/uwebsockets.js@20.57.0', JSON.stringify(build));
    assert.equal(bridge.logs.find((l) => l.msg === 'ready to serve')?.['scheme'], 'https');

    const answer = await curlPost(`https://localhost:${bridge.port}/orders`, pki, [
      '--resolve',
      `localhost:${bridge.port}:127.0.0.1`,
    ]);
    assert.equal(answer.exit, 0, answer.stderr);
    assert.equal(answer.status, 202);
    const messages = await broker.drain(queue);
    assert.equal(messages.length, 1);
    assert.equal(messages[0]!.content.toString('utf8'), XML);

    // Plain HTTP on the TLS port gets no HTTP answer and publishes nothing.
    const plain = await runToExit('curl', [
      '-sS',
      '-m',
      '5',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--data-binary',
      XML,
      `http://127.0.0.1:${bridge.port}/orders`,
    ]);
    assert.notEqual(plain.code, 0, 'plain HTTP must not be served on the TLS port');
    assert.equal(await broker.count(queue), 0);

    const expiry = await metricValue(
      bridge.adminUrl,
      'bridge_tls_certificate_expiry_timestamp_seconds',
      { subject: 'CN=localhost' },
    );
    assert.ok(expiry !== undefined && expiry > Date.now() / 1000, `expiry exported: ${expiry}`);
  });

  it('clientCert: request refuses a certificate that does not chain to caFile and serves the others', async (t) => {
    const queue = await broker.queue(uniqueName('tls-client'));
    const bridge = await tlsBridge(queue, {
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      caFile: pki.caCert,
      clientCert: 'request',
    });
    t.after(() => bridge.stop());
    const url = `https://127.0.0.1:${bridge.port}/orders`;

    const stranger = await curlPost(url, pki, [
      '--cert',
      pki.strangerCert,
      '--key',
      pki.strangerKey,
    ]);
    assert.notEqual(stranger.exit, 0, 'the handshake must fail');
    assert.match(stranger.stderr, /alert|handshake|SSL/i);
    assert.equal(await broker.count(queue), 0, 'a refused client published nothing');

    const partner = await curlPost(url, pki, ['--cert', pki.clientCert, '--key', pki.clientKey]);
    assert.equal(partner.exit, 0, partner.stderr);
    assert.equal(partner.status, 202);

    // `request`, not `require`: uWS cannot refuse a client that presents no certificate.
    const anonymous = await curlPost(url, pki);
    assert.equal(anonymous.status, 202, anonymous.stderr);
    assert.equal((await broker.drain(queue)).length, 2);
  });

  it('reads relative paths from $CREDENTIALS_DIRECTORY, and a SIGHUP reload serves the renewed certificate', async (t) => {
    const queue = await broker.queue(uniqueName('tls-renew'));
    const credentials = mkdtempSync(path.join(tmpdir(), 'bridge-credentials-'));
    t.after(() => rmSync(credentials, { recursive: true, force: true }));
    copyFileSync(pki.serverCert, path.join(credentials, 'tls.crt'));
    copyFileSync(pki.serverKey, path.join(credentials, 'tls.key'));
    const bridge = await tlsBridge(
      queue,
      { certFile: 'tls.crt', keyFile: 'tls.key' },
      { CREDENTIALS_DIRECTORY: credentials },
    );
    t.after(() => bridge.stop());

    const before = await servedCertificate(bridge.port, pki);
    const original = (await serialOf(pki.serverCert)).stdout;
    assert.equal(`serial=${before.serialNumber}`, original.trim());

    const renewed = await pki.renewServer();
    copyFileSync(renewed.cert, path.join(credentials, 'tls.crt'));
    copyFileSync(renewed.key, path.join(credentials, 'tls.key'));
    process.kill(bridge.pid, 'SIGHUP');
    await bridge.waitForLog((l) => l.msg === 'reloaded', 30_000);

    const after = await servedCertificate(bridge.port, pki);
    assert.equal(`serial=${after.serialNumber}`, (await serialOf(renewed.cert)).stdout.trim());
    assert.notEqual(after.serialNumber, before.serialNumber);
    const answer = await curlPost(`https://127.0.0.1:${bridge.port}/orders`, pki);
    assert.equal(answer.status, 202, answer.stderr);
  });
});

describe('tls refused at start, with the reason', { timeout: 120_000 }, () => {
  let pki: TestPki;
  let dir: string;
  before(async () => {
    pki = await makeTestPki();
    dir = mkdtempSync(path.join(tmpdir(), 'bridge-tls-config-'));
  });
  after(() => {
    pki.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts the bridge with `tls` on this host's Node.js and returns how it ended. */
  async function startWith(
    tls: Record<string, unknown>,
    env: Record<string, string> = {},
  ): Promise<Run> {
    const file = path.join(dir, `${uniqueName('config')}.json`);
    writeFileSync(
      file,
      JSON.stringify(baseConfig([{ path: '/x', mode: 'publish', routingKey: 'x' }], { tls })),
    );
    return runToExit(process.execPath, [MAIN, '--config', file], {
      env: { ...process.env, ...env },
      timeoutMs: 30_000,
    });
  }

  function fatalLine(run: Run): string {
    const lines = run.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map(parseLogLine);
    return JSON.stringify(lines.filter((l) => l.level === 'fatal'));
  }

  it('by the 20.30 build, which has no TLS, pointing to the reverse-proxy section', async () => {
    const run = await startWith(
      { certFile: pki.serverCert, keyFile: pki.serverKey },
      { BRIDGE_UWS_BUILD: '20.30' },
    );
    assert.equal(run.code, 2, run.stdout + run.stderr);
    const fatal = fatalLine(run);
    assert.match(fatal, /@trufflesuite\/uws-js-unofficial@20\.30\.0-unofficial\.0\) has no TLS/);
    assert.match(fatal, /TLS through a reverse proxy/);
    assert.match(fatal, /deploy\/nginx/);
  });

  it('clientCert: require, which uWebSockets.js cannot enforce', async () => {
    const run = await startWith({
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      caFile: pki.caCert,
      clientCert: 'require',
    });
    assert.equal(run.code, 2);
    assert.match(
      run.stdout + run.stderr,
      /tls\.clientCert.*cannot refuse a client that presents none/s,
    );
  });

  it('a key that is not the certificate’s, a missing file, caFile without clientCert', async () => {
    const wrongKey = await startWith({ certFile: pki.serverCert, keyFile: pki.clientKey });
    assert.equal(wrongKey.code, 2);
    assert.match(wrongKey.stdout, /tls\.keyFile.*is not the private key of the certificate/);
    assert.doesNotMatch(wrongKey.stdout, /BEGIN|PRIVATE KEY-----/, 'no key material in the log');

    const missing = await startWith({
      certFile: path.join(dir, 'nope.crt'),
      keyFile: pki.serverKey,
    });
    assert.equal(missing.code, 2);
    assert.match(missing.stdout, /tls\.certFile.*cannot read .*nope\.crt \(ENOENT\)/);

    const strayCa = await startWith({
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      caFile: pki.caCert,
    });
    assert.equal(strayCa.code, 2);
    assert.match(strayCa.stdout, /tls\.caFile.*only used to verify client certificates/);
  });
});
