/**
 * The partner port's certificate files: where relative names point, and whether the files are
 * what they claim to be. uWebSockets.js only says "App construction failed" (or serves a broken
 * handshake) when a file is wrong; the bridge reads them first with Node's crypto and names the
 * problem, at start, in `check-config`, and before a SIGHUP reload lets new workers use them.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { errorReason, type ConfigProblem } from './errors.js';

/** The `tls` section as the schema leaves it. */
export interface TlsSection {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile?: string | undefined;
  readonly clientCert: 'none' | 'request' | 'require';
}

/** What the partner port presents, for the start log and the expiry metric. */
export interface ServedCertificate {
  readonly subject: string;
  readonly issuer: string;
  /** Unix seconds. */
  readonly notAfter: number;
  readonly fingerprint256: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/** `$CREDENTIALS_DIRECTORY` (systemd LoadCredential=) if set, else the config file's folder. */
export function tlsBaseDir(configFile: string, env: Env): string {
  const credentials = env['CREDENTIALS_DIRECTORY'];
  return credentials !== undefined && credentials !== ''
    ? credentials
    : dirname(resolvePath(configFile));
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Resolves the section's paths against `baseDir` and checks the files: the certificate chain
 * parses and its first certificate is current, the key parses and belongs to it, the CA file
 * holds at least one certificate. Problems name the file and what is wrong, never key material.
 */
export function checkTlsFiles(
  tls: TlsSection,
  baseDir: string,
  now: Date = new Date(),
): { tls: TlsSection; served: ServedCertificate | undefined; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const at = (p: string): string => (isAbsolute(p) ? p : resolvePath(baseDir, p));
  const resolved: TlsSection = {
    ...tls,
    certFile: at(tls.certFile),
    keyFile: at(tls.keyFile),
    caFile: tls.caFile === undefined ? undefined : at(tls.caFile),
  };
  const read = (key: string, file: string): string | undefined => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      problems.push({ path: `tls.${key}`, message: `cannot read ${file} (${errorReason(err)})` });
      return undefined;
    }
  };

  let served: ServedCertificate | undefined;
  let leaf: X509Certificate | undefined;
  const certText = read('certFile', resolved.certFile);
  if (certText !== undefined) {
    const first = certText.match(PEM_CERTIFICATE)?.[0];
    try {
      if (first === undefined) throw new Error('no PEM certificate in it');
      leaf = new X509Certificate(first);
      const notAfter = Math.floor(new Date(leaf.validTo).getTime() / 1000);
      served = {
        subject: leaf.subject.replace(/\n/g, ', '),
        issuer: leaf.issuer.replace(/\n/g, ', '),
        notAfter,
        fingerprint256: leaf.fingerprint256,
      };
      if (notAfter * 1000 <= now.getTime())
        problems.push({
          path: 'tls.certFile',
          message: `${resolved.certFile} expired on ${leaf.validTo}`,
        });
    } catch (err) {
      problems.push({
        path: 'tls.certFile',
        message: `${resolved.certFile} is not a usable certificate (${errorReason(err)})`,
      });
    }
  }

  const keyText = read('keyFile', resolved.keyFile);
  let key: KeyObject | undefined;
  if (keyText !== undefined) {
    try {
      key = createPrivateKey(keyText);
    } catch (err) {
      const encrypted = /ENCRYPTED/.test(keyText);
      problems.push({
        path: 'tls.keyFile',
        message: encrypted
          ? `${resolved.keyFile} is encrypted; give the bridge an unencrypted key readable only by its user (systemd LoadCredential= keeps it private)`
          : `${resolved.keyFile} is not a PEM private key (${errorReason(err)})`,
      });
    }
  }
  if (leaf !== undefined && key !== undefined && !leaf.checkPrivateKey(key))
    problems.push({
      path: 'tls.keyFile',
      message: `${resolved.keyFile} is not the private key of the certificate in ${resolved.certFile}`,
    });

  if (resolved.caFile !== undefined) {
    const caText = read('caFile', resolved.caFile);
    if (caText !== undefined) {
      const certs = caText.match(PEM_CERTIFICATE) ?? [];
      try {
        if (certs.length === 0) throw new Error('no PEM certificate in it');
        for (const pem of certs) new X509Certificate(pem);
      } catch (err) {
        problems.push({
          path: 'tls.caFile',
          message: `${resolved.caFile} is not a usable CA bundle (${errorReason(err)})`,
        });
      }
    }
  }
  return { tls: resolved, served, problems };
}
