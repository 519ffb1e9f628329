/**
 * WeChat server signature: the query carries `signature`, the hex SHA-1 of the token, timestamp
 * and nonce, sorted and concatenated. WeChat's scheme has no freshness window of its own.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export interface WechatSignatureParams {
  readonly signature: string | undefined;
  readonly timestamp: string | undefined;
  readonly nonce: string | undefined;
}

export type WechatSignatureResult =
  { readonly ok: true } | { readonly ok: false; readonly reason: 'missing' | 'mismatch' };

/** The expected `signature`; also what the echostr handshake checks. */
export function wechatSignature(token: string, timestamp: string, nonce: string): string {
  // Default sort compares UTF-16 code units: byte order for the ASCII values WeChat sends.
  return createHash('sha1').update([token, timestamp, nonce].sort().join('')).digest('hex');
}

export function verifyWechatSignature(
  token: string,
  params: WechatSignatureParams,
): WechatSignatureResult {
  const { signature, timestamp, nonce } = params;
  if (!signature || timestamp === undefined || nonce === undefined) {
    return { ok: false, reason: 'missing' };
  }
  const expected = Buffer.from(wechatSignature(token, timestamp, nonce), 'latin1');
  const received = Buffer.from(signature.toLowerCase(), 'utf8');
  // A length mismatch is simply not a match; timingSafeEqual would throw on it.
  if (received.length === expected.length && timingSafeEqual(received, expected)) {
    return { ok: true };
  }
  return { ok: false, reason: 'mismatch' };
}
