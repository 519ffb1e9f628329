/**
 * Reads a request's head synchronously, as uWS requires (HttpRequest is only valid inside the
 * handler): route, method, Content-Type, declared length and forwarded headers. Everything that
 * can be refused before a byte of body is read is refused here.
 */
import { randomUUID } from 'node:crypto';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Config } from '../../shared/config-schema.js';
import { BridgeError } from '../../shared/errors.js';
import { CREDENTIAL_HEADERS } from '../../shared/redact.js';
import type { HeaderList, RequestFacts } from '../request.js';
import type { CompiledRoute, RouteTable } from '../routes.js';
import { parseContentType } from './content-type.js';

const ALLOWED_METHODS = 'POST';

export interface AcceptedHead {
  readonly route: CompiledRoute;
  readonly facts: RequestFacts;
  /** The Content-Type charset, a hint for the body's encoding. */
  readonly charset: string | undefined;
}

export interface RefusedHead {
  /** Undefined: no route serves the path. */
  readonly route: CompiledRoute | undefined;
  readonly error: BridgeError;
  readonly headers: HeaderList;
  /** Close after the answer: a body may follow that nobody reads. */
  readonly close: boolean;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const CONTROL_CHARS = /[\x00-\x1f\x7f]/;
const NO_HEADERS: HeaderList = [];
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
    return decoder.decode(res.getRemoteAddressAsText());
  } catch {
    return '';
  }
}

/** The request headers a Celery task receives: all of them but the partner's credentials. */
function taskHeaders(req: HttpRequest): Record<string, string> {
  const out: Record<string, string> = {};
  req.forEach((name, value) => {
    if (CREDENTIAL_HEADERS.has(name)) return;
    out[name] = name in out ? `${out[name]}, ${value}` : value;
  });
  return out;
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
): AcceptedHead | RefusedHead {
  const url = req.getUrl();
  // Native uWS hands the path alone; its JS fallback includes the query string.
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const route = routes.match(path);
  if (route === undefined)
    return refuse(undefined, new BridgeError('BRIDGE_NOT_FOUND', `no route for ${path}`), false);
  // getMethod is lower-case in the native build.
  const method = req.getMethod().toUpperCase();
  if (method !== 'POST') {
    return refuse(
      route,
      new BridgeError('BRIDGE_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`),
      false,
      ALLOW,
    );
  }
  const contentType = req.getHeader('content-type');
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
  const encoding = req.getHeader('content-encoding');
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
  const declaredLength = req.getHeader('content-length');
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
  const forwarded: Array<string | undefined> = [];
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string; // i < length
    const value = req.getHeader(name);
    if (value === '') {
      forwarded.push(undefined);
      continue;
    }
    if (Buffer.byteLength(value) > limits.maxHeaderValueBytes || CONTROL_CHARS.test(value)) {
      return refuse(
        route,
        new BridgeError(
          'BRIDGE_BAD_REQUEST',
          `header ${name} is longer than ${limits.maxHeaderValueBytes} bytes or has control characters`,
        ),
        true,
      );
    }
    forwarded.push(value);
  }
  const idempotencyKey = req.getHeader('idempotency-key');
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
      allHeaders: route.mode === 'celery' ? taskHeaders(req) : undefined,
    },
  };
}
