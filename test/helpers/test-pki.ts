/**
 * A throwaway PKI for TLS tests, made with the openssl command line (the tool an operator would
 * use): a test CA, a server certificate for 127.0.0.1/localhost signed by it, a client
 * certificate it signed, and a client certificate from a CA nobody trusts. EC P-256 keys: fast
 * to make, and what current partners present.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runToExit } from './child.js';

export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** Signed by the test CA, subject CN=acme-gateway. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** Self-signed (CN=intruder): chains to nothing the bridge trusts. */
  readonly strangerCert: string;
  readonly strangerKey: string;
  /** A second server certificate from the same CA, with a different serial (a "renewal"). */
  renewServer(): Promise<{ cert: string; key: string }>;
  /** Another client certificate signed by the test CA, e.g. subject `/O=Acme/CN=acme-gateway`. */
  issueClient(subject: string): Promise<{ cert: string; key: string }>;
  remove(): void;
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  const run = await runToExit('openssl', args, { cwd, timeoutMs: 30_000 });
  if (run.code !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${run.stderr.trim()}`);
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

async function signed(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
): Promise<{ cert: string; key: string }> {
  const key = `${name}.key`;
  const csr = `${name}.csr`;
  const ext = `${name}.ext`;
  const cert = `${name}.crt`;
  writeFileSync(path.join(dir, ext), extensions);
  await openssl(['req', ...EC_KEY, '-keyout', key, '-out', csr, '-subj', subject], dir);
  await openssl(
    ['x509', '-req', '-in', csr, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'].concat([
      '-out',
      cert,
      '-days',
      '2',
      '-extfile',
      ext,
    ]),
    dir,
  );
  return { cert: path.join(dir, cert), key: path.join(dir, key) };
}

const SERVER_EXT =
  'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n';
const CLIENT_EXT = 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n';

/** Makes the PKI in a fresh folder under `parent` (default the system temp folder). */
export async function makeTestPki(parent: string = tmpdir()): Promise<TestPki> {
  const dir = mkdtempSync(path.join(parent, 'bridge-pki-'));
  try {
    await openssl(
      ['req', '-x509', ...EC_KEY, '-keyout', 'ca.key', '-out', 'ca.crt'].concat([
        '-subj',
        '/CN=xml-amqp-bridge test CA',
        '-days',
        '2',
      ]),
      dir,
    );
    const server = await signed(dir, 'server', '/CN=localhost', SERVER_EXT);
    const client = await signed(dir, 'client', '/CN=acme-gateway', CLIENT_EXT);
    await openssl(
      ['req', '-x509', ...EC_KEY, '-keyout', 'stranger.key', '-out', 'stranger.crt'].concat([
        '-subj',
        '/CN=intruder',
        '-days',
        '2',
        '-addext',
        CLIENT_EXT.split('\n')[0]!,
      ]),
      dir,
    );
    let renewals = 0;
    let issued = 0;
    return {
      dir,
      caCert: path.join(dir, 'ca.crt'),
      serverCert: server.cert,
      serverKey: server.key,
      clientCert: client.cert,
      clientKey: client.key,
      strangerCert: path.join(dir, 'stranger.crt'),
      strangerKey: path.join(dir, 'stranger.key'),
      renewServer: () => signed(dir, `server-renewed-${++renewals}`, '/CN=localhost', SERVER_EXT),
      issueClient: (subject) => signed(dir, `client-issued-${++issued}`, subject, CLIENT_EXT),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
