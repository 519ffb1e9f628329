/** Scrubs secrets before they reach a log line or an error message: AMQP URL passwords, credential and signature headers. */

/** What a redacted value reads as. */
export const REDACTED = '[redacted]';

/** `amqp://user:secret@host/` → `amqp://user:***@host/`; text without a URL is returned as is. */
export function redactUrl(url: string): string {
  return url.replace(/(amqps?:\/\/[^:/@\s]*):[^@\s]*@/g, '$1:***@');
}

/**
 * Request headers that carry the partner's credentials for this hop: never passed on to a
 * backend (Celery tasks' args and argsrepr, which Flower and every Celery log show).
 */
export const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
]);

/**
 * Header or field names whose values are credentials: Authorization and its kin, cookies, API
 * keys and tokens, passwords, and any partner signature header (`x-partner-signature`,
 * `x-hub-signature-256`, `wechatpay-signature`…), which lets whoever reads it replay the request.
 */
const SENSITIVE_KEY =
  /^(authorization|proxy-authorization|cookie|set-cookie|password|passwd|secret)$|signature|api[-_]?key|token/i;

export function isSensitiveKey(key: string): boolean {
  return SENSITIVE_KEY.test(key);
}
