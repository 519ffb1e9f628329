/**
 * The bridge's error model: one table that gives every error code its HTTP status, its title,
 * the `bridge_amqp_publishes_total` outcome it stands for when a publish failed with it, and
 * whether the partner may retry. Errors are classified once at the boundary (xml/, amqp/,
 * http/); nothing downstream inspects messages. test/unit/errors.test.ts holds this table
 * against the README's status table.
 */
import type { PublishOutcome } from './types.js';

/**
 * What a partner may do after the error:
 * - `safe`: nothing reached a queue; retrying cannot duplicate anything;
 * - `with-key`: the message may have been delivered (or processed); retry with the same
 *   `Idempotency-Key`, which becomes `message_id`, so consumers can de-duplicate;
 * - `no`: the same request fails the same way until the partner or the config changes.
 */
export type RetryAdvice = 'safe' | 'with-key' | 'no';

export interface ErrorSpec {
  readonly status: number;
  readonly title: string;
  /** The publish outcome counted when a publish fails with this code; undefined: not a publish failure. */
  readonly publishOutcome: PublishOutcome | undefined;
  readonly retry: RetryAdvice;
}

const spec = (
  status: number,
  title: string,
  publishOutcome: PublishOutcome | undefined,
  retry: RetryAdvice,
): ErrorSpec => ({
  status,
  title,
  publishOutcome,
  retry,
});

export const ERRORS = {
  BRIDGE_BAD_REQUEST: spec(400, 'Bad Request', undefined, 'no'),
  /** The message's length is ambiguous (request smuggling's raw material): answered, then closed. */
  BRIDGE_BAD_FRAMING: spec(400, 'Malformed HTTP Framing', undefined, 'no'),
  BRIDGE_XML_INVALID: spec(400, 'Invalid XML', undefined, 'no'),
  BRIDGE_NOT_FOUND: spec(404, 'Not Found', undefined, 'no'),
  BRIDGE_METHOD_NOT_ALLOWED: spec(405, 'Method Not Allowed', undefined, 'no'),
  BRIDGE_UPLOAD_TIMEOUT: spec(408, 'Request Timeout', undefined, 'safe'),
  /** No partner credentials, or ones that did not verify (also: a replayed webhook-id). */
  BRIDGE_UNAUTHORIZED: spec(401, 'Unauthorized', undefined, 'no'),
  /** A verified partner not allowed on the route, or calling from outside its sources. */
  BRIDGE_FORBIDDEN: spec(403, 'Forbidden', undefined, 'no'),
  BRIDGE_BODY_TOO_LARGE: spec(413, 'Content Too Large', undefined, 'no'),
  BRIDGE_UNSUPPORTED_MEDIA_TYPE: spec(415, 'Unsupported Media Type', undefined, 'no'),
  /** Nothing was read past the head and nothing published: retry after Retry-After. */
  BRIDGE_RATE_LIMITED: spec(429, 'Too Many Requests', undefined, 'safe'),
  /** Not sent (the client is gone): the status of `bridge_http_requests_total` for such requests. */
  BRIDGE_CLIENT_GONE: spec(499, 'Client Closed Request', undefined, 'with-key'),
  BRIDGE_INTERNAL: spec(500, 'Internal Server Error', undefined, 'with-key'),
  BRIDGE_PUBLISH_NACKED: spec(502, 'Broker Refused Message', 'nacked', 'with-key'),
  BRIDGE_UNROUTABLE: spec(502, 'Message Unroutable', 'returned', 'safe'),
  BRIDGE_BAD_REPLY: spec(502, 'Bad Reply From Backend', undefined, 'with-key'),
  BRIDGE_TASK_FAILED: spec(502, 'Task Failed', undefined, 'with-key'),
  BRIDGE_BROKER_UNAVAILABLE: spec(503, 'Broker Unavailable', 'unavailable', 'safe'),
  BRIDGE_OVERLOADED: spec(503, 'Overloaded', 'overloaded', 'safe'),
  BRIDGE_CONNECTION_LOST: spec(503, 'Broker Connection Lost', 'unavailable', 'with-key'),
  BRIDGE_CONFIRM_TIMEOUT: spec(504, 'Broker Confirm Timeout', 'timeout', 'with-key'),
  BRIDGE_REPLY_TIMEOUT: spec(504, 'Backend Reply Timeout', undefined, 'with-key'),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** Base of every operational failure; `status` is what the partner sees. */
export class BridgeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, detail: string, options?: ErrorOptions) {
    super(detail, options);
    this.name = 'BridgeError';
    this.code = code;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }

  get title(): string {
    return ERRORS[this.code].title;
  }

  /** True when the partner may retry (see RetryAdvice for how). */
  get retryable(): boolean {
    return ERRORS[this.code].retry !== 'no';
  }

  /** RFC 9457 `type`: a stable URN per code, so clients can switch on it. */
  get type(): string {
    return problemType(this.code);
  }
}

function problemType(code: ErrorCode): string {
  return `urn:xml-amqp-bridge:problem:${code.slice('BRIDGE_'.length).toLowerCase().replaceAll('_', '-')}`;
}

/** Why the XML layer refused a body; also the `reason` label of `bridge_xml_rejected_total`. */
export type XmlRejectReason =
  'malformed' | 'too-deep' | 'doctype' | 'encoding' | 'routing-key' | 'empty';

export class XmlError extends BridgeError {
  readonly reason: XmlRejectReason;
  constructor(reason: XmlRejectReason, detail: string, options?: ErrorOptions) {
    super('BRIDGE_XML_INVALID', detail, options);
    this.name = 'XmlError';
    this.reason = reason;
  }
}

/** The client disconnected before the answer: nothing is written, the request counts as 499. */
export class ClientGoneError extends BridgeError {
  constructor() {
    super('BRIDGE_CLIENT_GONE', 'the client disconnected before the answer');
    this.name = 'ClientGoneError';
  }
}

/** A problem with the configuration, with its path in the file (or the env var's name). */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super(problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** For a problem message: a Node fs error's code (`ENOENT`), else the error's own message. */
export function errorReason(err: unknown): string {
  const code: unknown =
    typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined; // Node fs errors carry a string code
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}
