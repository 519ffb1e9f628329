/**
 * Reads a request's head synchronously, as uWS requires (HttpRequest is only valid inside the
 * handler): route, method, Content-Type, declared length and forwarded headers. Everything that
 * can be refused before a byte of body is read is refused here.
 */
import { randomUUID } from 'node:crypto';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Config } from '../../shared/config-schema.js';
import { canonicalAddress } from '../../shared/cidr.js';
import { BridgeError } from '../../shared/errors.js';
import { CREDENTIAL_HEADERS } from '../../shared/redact.js';
import type { AuthFailureReason } from '../../shared/types.js';
import type { HeaderList, RequestFacts } from '../request.js';
import type { CompiledRoute, RouteTable } from '../routes.js';
import { parseContentType } from './content-type.js';

const ALLOWED_METHODS = 'POST';

export interface AcceptedHead {
  readonly route: CompiledRoute;
  readonly facts: RequestFacts;
  /** The Content-Type charset, a hint for the body's encoding. */
  readonly charset: string | undefined;
  /** Values of the partner gate's headers by position (empty when the gate reads none). */
  readonly gateHeaders: ReadonlyArray<string | undefined>;
  /** The body is chunked: its length is unknown until it ends. */
  readonly chunked: boolean;
}

/** A WeChat echostr GET: the callback URL check, answered without a body. */
export interface HandshakeHead {
  readonly route: CompiledRoute;
  readonly handshake: URLSearchParams;
  readonly requestId: string;
}

export interface RefusedHead {
  /** Undefined: no route serves the path. */
  readonly route: CompiledRoute | undefined;
  readonly error: BridgeError;
  readonly headers: HeaderList;
  /** Close after the answer: a body may follow that nobody reads. */
  readonly close: boolean;
  /** The partner whose credentials verified, when access was refused after that. */
  readonly partner?: string | undefined;
  readonly authFailure?: AuthFailureReason | undefined;
  /** The client's address when a trusted proxy named it (else the peer's is logged). */
  readonly client?: string | undefined;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const CONTROL_CHARS = /[\x00-\x1f\x7f]/;
const NO_HEADERS: HeaderList = [];
const NO_VALUES: Array<string | undefined> = [];
const ALLOW: HeaderList = [['Allow', ALLOWED_METHODS]];
const decoder = new TextDecoder();

/** The raw query string; uWS's JS fallback throws here for a URL without one (docs/failure-modes.md 1.1). */
function readQuery(req: HttpRequest): string {
  try {
    return req.getQuery() ?? '';
  } catch {
    return '';
  }
}

/** The client's address; uWS's JS fallback does not implement it. */
export function readRemoteAddress(res: HttpResponse): string {
  try {
    return canonicalAddress(decoder.decode(res.getRemoteAddressAsText()));
  } catch {
    return '';
  }
}

/**
 * One pass over a request's headers (uWS's forEach; one instance reused, since forEach runs
 * synchronously): what the bridge reads, each header's first value as getHeader would give it,
 * and what makes the body's framing ambiguous. uWS frames the body by the first Content-Length
 * and takes any Transfer-Encoding for chunked; a proxy in front may have framed it otherwise.
 */
class HeaderScan {
  contentType = '';
  contentEncoding = '';
  contentLength = '';
  transferEncoding = '';
  idempotencyKey = '';
  hosts = 0;
  /** Content-Length headers with different values. */
  lengthsDiffer = false;
  /** First value of each of the route's forwardHeaders, by position. */
  forwarded: Array<string | undefined> = [];
  /** For celery routes: every header but the partner's credentials, repeated ones joined. */
  all: Record<string, string> | undefined;
  /** Values of the partner gate's headers, by position; repeated ones joined. */
  gate: Array<string | undefined> = NO_VALUES;
  #forwardIndex: ReadonlyMap<string, number> | undefined;
  #gateIndex: ReadonlyMap<string, number> | undefined;
  #hidden: ReadonlySet<string> = CREDENTIAL_HEADERS;

  run(
    req: HttpRequest,
    route: CompiledRoute | undefined,
    native: boolean,
    routes: RouteTable,
  ): void {
    this.contentType = '';
    this.contentEncoding = '';
    this.contentLength = '';
    this.transferEncoding = '';
    this.idempotencyKey = '';
    this.hosts = 0;
    this.lengthsDiffer = false;
    this.#forwardIndex =
      route === undefined || route.forwardHeaders.length === 0
        ? undefined
        : positionsOf(route.forwardHeaders);
    this.forwarded =
      this.#forwardIndex === undefined
        ? []
        : new Array<string | undefined>(this.#forwardIndex.size).fill(undefined);
    this.all = route?.mode === 'celery' ? {} : undefined;
    const gate = routes.gate;
    this.#gateIndex = gate.active ? positionsOf(gate.headerNames) : undefined;
    this.gate = gate.active ? new Array<string | undefined>(gate.headerNames.length) : NO_VALUES;
    this.#hidden = routes.hiddenHeaders;
    if (native) req.forEach(this.#visit);
    else this.#visitByName(req, route, gate.active ? gate.headerNames : []);
  }

  #visitByName(
    req: HttpRequest,
    route: CompiledRoute | undefined,
    gateHeaders: readonly string[],
  ): void {
    const names = [...FALLBACK_HEADERS, ...(route?.forwardHeaders ?? []), ...gateHeaders];
    for (const name of new Set(names)) {
      const value = req.getHeader(name);
      if (value !== '') this.#visit(name, value);
    }
  }

  readonly #visit = (name: string, value: string): void => {
    switch (name) {
      case 'host':
        this.hosts += 1;
        break;
      case 'content-type':
        if (this.contentType === '') this.contentType = value;
        break;
      case 'content-length':
        if (this.contentLength === '') this.contentLength = value;
        else if (value !== this.contentLength) this.lengthsDiffer = true;
        break;
      case 'transfer-encoding':
        this.transferEncoding =
          this.transferEncoding === '' ? value : `${this.transferEncoding}, ${value}`;
        break;
      case 'content-encoding':
        this.contentEncoding =
          this.contentEncoding === '' ? value : `${this.contentEncoding}, ${value}`;
        break;
      case 'idempotency-key':
        if (this.idempotencyKey === '') this.idempotencyKey = value;
        break;
      default:
        break;
    }
    const at = this.#forwardIndex?.get(name);
    if (at !== undefined && value !== '' && this.forwarded[at] === undefined)
      this.forwarded[at] = value;
    const gateAt = this.#gateIndex?.get(name);
    if (gateAt !== undefined) {
      const before = this.gate[gateAt];
      this.gate[gateAt] = before === undefined ? value : `${before}, ${value}`;
    }
    const all = this.all;
    if (all !== undefined && !this.#hidden.has(name))
      all[name] = name in all ? `${all[name]}, ${value}` : value;
  };
}

/** uWS's JS fallback throws on forEach: there these are read by name (celery tasks get only these). */
const FALLBACK_HEADERS = [
  'host',
  'content-type',
  'content-length',
  'transfer-encoding',
  'content-encoding',
  'idempotency-key',
];
/** Header name → position in a list (a route's forwardHeaders, the gate's names), built once per list. */
const positions = new WeakMap<readonly string[], ReadonlyMap<string, number>>();

function positionsOf(names: readonly string[]): ReadonlyMap<string, number> {
  let index = positions.get(names);
  if (index === undefined) {
    index = new Map(names.map((name, i) => [name, i]));
    positions.set(names, index);
  }
  return index;
}

const scan = new HeaderScan();

/** Why the body's framing is ambiguous, if it is; such a request is answered 400 and closed. */
function framingProblem(found: HeaderScan): string | undefined {
  if (found.lengthsDiffer) return 'Content-Length headers with different values';
  if (found.hosts > 1) return 'more than one Host header';
  const te = found.transferEncoding;
  if (te !== '' && te.trim().toLowerCase() !== 'chunked')
    return `Transfer-Encoding "${te.slice(0, 64)}" (only "chunked" alone is accepted)`;
  return undefined;
}

function refuse(
  route: CompiledRoute | undefined,
  error: BridgeError,
  close: boolean,
  headers = NO_HEADERS,
): RefusedHead {
  return { route, error, headers, close };
}

export function readHead(
  req: HttpRequest,
  res: HttpResponse,
  routes: RouteTable,
  limits: Config['limits'],
  requestId: string,
  /** The native uWS build is serving (its JS fallback cannot list headers). */
  native: boolean,
): AcceptedHead | HandshakeHead | RefusedHead {
  const url = req.getUrl();
  // Native uWS hands the path alone; its JS fallback includes the query string.
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const route = routes.match(path);
  scan.run(req, route, native, routes);
  const framing = framingProblem(scan);
  if (framing !== undefined) {
    return refuse(
      route,
      new BridgeError('BRIDGE_BAD_FRAMING', `malformed HTTP framing: ${framing}`),
      true,
    );
  }
  if (route === undefined)
    return refuse(undefined, new BridgeError('BRIDGE_NOT_FOUND', `no route for ${path}`), false);
  // getMethod is lower-case in the native build.
  const method = req.getMethod().toUpperCase();
  if (method === 'GET' && route.access?.wechat === true) {
    const query = new URLSearchParams(queryAt === -1 ? readQuery(req) : url.slice(queryAt + 1));
    if (query.has('echostr')) return { route, handshake: query, requestId };
  }
  if (method !== 'POST') {
    return refuse(
      route,
      new BridgeError('BRIDGE_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`),
      false,
      ALLOW,
    );
  }
  const contentType = scan.contentType;
  const mediaType = parseContentType(contentType);
  if (!mediaType.xml) {
    return refuse(
      route,
      new BridgeError(
        'BRIDGE_UNSUPPORTED_MEDIA_TYPE',
        `Content-Type "${contentType}" is not XML (application/xml, text/xml or application/*+xml)`,
      ),
      true,
    );
  }
  // The bridge checks and forwards the bytes as sent: a compressed body is neither XML it can
  // read nor what consumers expect.
  const encoding = scan.contentEncoding;
  if (encoding !== '' && encoding.trim().toLowerCase() !== 'identity') {
    return refuse(
      route,
      new BridgeError(
        'BRIDGE_UNSUPPORTED_MEDIA_TYPE',
        `Content-Encoding "${encoding}" is not supported: send the body uncompressed (identity)`,
      ),
      true,
    );
  }
  // content_type is an AMQP short string.
  if (contentType.length > 85 && Buffer.byteLength(contentType) > 255) {
    return refuse(
      route,
      new BridgeError('BRIDGE_BAD_REQUEST', 'Content-Type is longer than 255 bytes'),
      true,
    );
  }
  const declaredLength = scan.contentLength;
  if (declaredLength !== '' && Number(declaredLength) > limits.maxBodyBytes) {
    return refuse(
      route,
      new BridgeError(
        'BRIDGE_BODY_TOO_LARGE',
        `Content-Length ${declaredLength} exceeds maxBodyBytes (${limits.maxBodyBytes})`,
      ),
      true,
    );
  }
  const names = route.forwardHeaders;
  const forwarded = scan.forwarded;
  for (let i = 0; i < forwarded.length; i++) {
    const value = forwarded[i];
    if (value === undefined) continue;
    if (Buffer.byteLength(value) > limits.maxHeaderValueBytes || CONTROL_CHARS.test(value)) {
      return refuse(
        route,
        new BridgeError(
          'BRIDGE_BAD_REQUEST',
          `header ${names[i] ?? ''} is longer than ${limits.maxHeaderValueBytes} bytes or has control characters`,
        ),
        true,
      );
    }
  }
  const idempotencyKey = scan.idempotencyKey;
  return {
    route,
    charset: mediaType.charset,
    facts: {
      method,
      path,
      query: queryAt === -1 ? readQuery(req) : url.slice(queryAt + 1),
      remoteAddr: readRemoteAddress(res),
      requestId,
      messageId: IDEMPOTENCY_KEY.test(idempotencyKey) ? idempotencyKey : randomUUID(),
      contentType: contentType === '' ? undefined : contentType,
      forwarded,
      allHeaders: scan.all,
      partner: undefined,
    },
    gateHeaders: scan.gate,
    chunked: scan.transferEncoding !== '',
  };
}
