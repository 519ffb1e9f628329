/**
 * The bridge's error model: one class per failure, each with a stable code, the HTTP status it
 * maps to and whether the partner may retry. Classified once at the boundary (xml/, amqp/, http/);
 * nothing downstream inspects messages.
 */

export const ERROR_CODES = {
  BRIDGE_NOT_FOUND: 404,
  BRIDGE_METHOD_NOT_ALLOWED: 405,
  BRIDGE_UPLOAD_TIMEOUT: 408,
  BRIDGE_BODY_TOO_LARGE: 413,
  BRIDGE_UNSUPPORTED_MEDIA_TYPE: 415,
  BRIDGE_XML_INVALID: 400,
  BRIDGE_BAD_REQUEST: 400,
  BRIDGE_PUBLISH_NACKED: 502,
  BRIDGE_UNROUTABLE: 502,
  BRIDGE_BAD_REPLY: 502,
  BRIDGE_TASK_FAILED: 502,
  BRIDGE_BROKER_UNAVAILABLE: 503,
  BRIDGE_OVERLOADED: 503,
  BRIDGE_CONFIRM_TIMEOUT: 504,
  BRIDGE_REPLY_TIMEOUT: 504,
  BRIDGE_INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;
export type HttpErrorStatus = (typeof ERROR_CODES)[ErrorCode];

const TITLES: Record<ErrorCode, string> = {
  BRIDGE_NOT_FOUND: 'Not Found',
  BRIDGE_METHOD_NOT_ALLOWED: 'Method Not Allowed',
  BRIDGE_UPLOAD_TIMEOUT: 'Request Timeout',
  BRIDGE_BODY_TOO_LARGE: 'Content Too Large',
  BRIDGE_UNSUPPORTED_MEDIA_TYPE: 'Unsupported Media Type',
  BRIDGE_XML_INVALID: 'Invalid XML',
  BRIDGE_BAD_REQUEST: 'Bad Request',
  BRIDGE_PUBLISH_NACKED: 'Broker Refused Message',
  BRIDGE_UNROUTABLE: 'Message Unroutable',
  BRIDGE_BAD_REPLY: 'Bad Reply From Backend',
  BRIDGE_TASK_FAILED: 'Task Failed',
  BRIDGE_BROKER_UNAVAILABLE: 'Broker Unavailable',
  BRIDGE_OVERLOADED: 'Overloaded',
  BRIDGE_CONFIRM_TIMEOUT: 'Broker Confirm Timeout',
  BRIDGE_REPLY_TIMEOUT: 'Backend Reply Timeout',
  BRIDGE_INTERNAL: 'Internal Server Error',
};

/** Base of every operational failure; `status` is what the partner sees. */
export class BridgeError extends Error {
  readonly code: ErrorCode;
  readonly status: HttpErrorStatus;
  /** True when the partner can safely retry (with the same Idempotency-Key). */
  readonly retryable: boolean;

  constructor(code: ErrorCode, detail: string, options?: ErrorOptions) {
    super(detail, options);
    this.name = 'BridgeError';
    this.code = code;
    this.status = ERROR_CODES[code];
    this.retryable = this.status >= 500 || this.status === 408;
  }

  get title(): string {
    return TITLES[this.code];
  }

  /** RFC 9457 `type`: a stable URN per code, so clients can switch on it. */
  get type(): string {
    return `urn:xml-amqp-bridge:problem:${this.code.slice('BRIDGE_'.length).toLowerCase().replaceAll('_', '-')}`;
  }
}

/** Why the XML layer refused a body; also the `reason` label of `bridge_xml_rejected_total`. */
export type XmlRejectReason =
  | 'malformed'
  | 'too-deep'
  | 'doctype'
  | 'encoding'
  | 'routing-key'
  | 'empty';

export class XmlError extends BridgeError {
  readonly reason: XmlRejectReason;
  constructor(reason: XmlRejectReason, detail: string, options?: ErrorOptions) {
    super('BRIDGE_XML_INVALID', detail, options);
    this.name = 'XmlError';
    this.reason = reason;
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
