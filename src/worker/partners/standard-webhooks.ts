/**
 * Standard Webhooks verification (https://www.standardwebhooks.com/): an HMAC-SHA256 over
 * `${webhook-id}.${webhook-timestamp}.${body}` with a `whsec_<base64>` secret, sent as one or
 * more space-separated `v1,<base64>` entries in `webhook-signature`.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const SECRET_PREFIX = 'whsec_';
const CANONICAL_BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
// Digits only: `Number()` alone would take ' 12', '1e3', '0x10' and '12.0' for a timestamp.
const TIMESTAMP = /^[0-9]{1,15}$/;

export interface StandardWebhookHeaders {
  readonly id: string | undefined;
  readonly timestamp: string | undefined;
  readonly signature: string | undefined;
}

export type StandardWebhookResult =
  | { readonly ok: true; readonly id: string }
  | { readonly ok: false; readonly reason: 'missing' | 'malformed' | 'expired' | 'mismatch' };

function decodeSecret(secret: string, position: number): Buffer {
  // The position, never the value, goes into the message: errors end up in logs.
  if (!secret.startsWith(SECRET_PREFIX)) {
    throw new Error(`webhook secret #${position} does not start with "${SECRET_PREFIX}"`);
  }
  const encoded = secret.slice(SECRET_PREFIX.length);
  const key = Buffer.from(encoded, 'base64');
  // Buffer.from silently skips characters outside the alphabet, so a pasted secret with a
  // stray character would yield a different key; only a lossless round trip is accepted.
  if (!CANONICAL_BASE64.test(encoded) || key.toString('base64') !== encoded) {
    throw new Error(`webhook secret #${position} is not valid base64 after "${SECRET_PREFIX}"`);
  }
  return key;
}

function sign(key: Buffer, id: string, timestamp: string, body: Buffer | string): string {
  // The body goes in as the bytes received: decoding it as text first would change what is
  // signed whenever it is not valid UTF-8.
  return createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest('base64');
}

/** The `v1,<base64>` header entry a sender would produce; for tests and the README's curl recipe. */
export function signStandardWebhook(
  secret: string,
  id: string,
  timestamp: number,
  body: Buffer | string,
): string {
  return `v1,${sign(decodeSecret(secret, 1), id, String(timestamp), body)}`;
}

export class StandardWebhookVerifier {
  readonly #keys: readonly Buffer[];
  readonly #toleranceSeconds: number;

  /** `secrets`: one, or two while a rotation is under way; any of them may have signed. */
  constructor(secrets: readonly string[], toleranceSeconds: number) {
    if (secrets.length === 0) throw new Error('at least one webhook secret is required');
    if (!Number.isFinite(toleranceSeconds) || toleranceSeconds < 0) {
      throw new Error(`webhook toleranceSeconds must be a non-negative number`);
    }
    this.#keys = secrets.map((secret, index) => decodeSecret(secret, index + 1));
    this.#toleranceSeconds = toleranceSeconds;
  }

  verify(headers: StandardWebhookHeaders, body: Buffer, nowSeconds: number): StandardWebhookResult {
    const { id, timestamp, signature } = headers;
    if (!id || !timestamp || !signature) return { ok: false, reason: 'missing' };
    if (!TIMESTAMP.test(timestamp)) return { ok: false, reason: 'malformed' };

    const offered: Buffer[] = [];
    for (const entry of signature.split(' ')) {
      const comma = entry.indexOf(',');
      // Other versions (v1a: asymmetric signatures) may sit next to v1; they are not ours to check.
      if (comma !== -1 && entry.slice(0, comma) === 'v1') {
        offered.push(Buffer.from(entry.slice(comma + 1), 'utf8'));
      }
    }
    if (offered.length === 0) return { ok: false, reason: 'malformed' };

    // Checked before any HMAC is computed: a stale request costs no hashing.
    if (Math.abs(nowSeconds - Number(timestamp)) > this.#toleranceSeconds) {
      return { ok: false, reason: 'expired' };
    }

    // The base64 texts are compared, not decoded bytes: Buffer.from would accept lenient
    // spellings (missing padding, stray characters) of the same digest.
    for (const key of this.#keys) {
      const expected = Buffer.from(sign(key, id, timestamp, body), 'latin1');
      for (const candidate of offered) {
        // A length mismatch is simply not a match; timingSafeEqual would throw on it.
        if (candidate.length === expected.length && timingSafeEqual(candidate, expected)) {
          return { ok: true, id };
        }
      }
    }
    return { ok: false, reason: 'mismatch' };
  }
}
