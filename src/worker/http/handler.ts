/**
 * The request pipeline: route → method → draining → Content-Type → declared size → admission
 * (all answered before a byte of body is read), then streamed body + XML check, then the route's
 * mode. Every failure is a BridgeError rendered by respond.ts.
 */
import { randomUUID } from 'node:crypto';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Config } from '../../shared/config-schema.js';
import { BridgeError } from '../../shared/errors.js';
import type { Publisher } from '../amqp/publisher.js';
import type { RequestFacts } from '../amqp/message.js';
import { XmlChecker } from '../xml/check.js';
import { UNMATCHED_ROUTE } from '../../shared/metrics.js';
import { ClientGoneError, receiveBody, type ReceivedBody } from './body.js';
import { parseContentType } from './content-type.js';
import { HttpExchange } from './request.js';
import { problemResponse, type ResponseSpec, writeResponse } from './respond.js';
import { ALLOWED_METHODS, type CompiledRoute, type RouteTable } from './routes.js';

/** Runs one route mode once the body is in; resolves with the success response or throws BridgeError. */
export type ModeRunner = (
  route: CompiledRoute,
  facts: RequestFacts,
  received: ReceivedBody,
  /** Aborted when the client disconnects: stop waiting and free the slot. */
  signal: AbortSignal,
) => Promise<ResponseSpec>;

/** What the pipeline reports per finished request (for metrics and debug logs). */
export interface RequestRecord {
  readonly requestId: string;
  readonly route: string;
  readonly status: number;
  readonly bodyBytes: number;
  readonly durationMs: number;
  readonly error: BridgeError | undefined;
  /** Refused at admission (broker away or maxInFlight): counted as a publish outcome too. */
  readonly admissionRefused?: boolean;
}

export interface PipelineDeps {
  readonly routes: RouteTable;
  readonly limits: Config['limits'];
  readonly publisher: Publisher;
  readonly run: ModeRunner;
  readonly isDraining: () => boolean;
  /** An admitted request started streaming; `onSettled` follows exactly once. */
  readonly onRequestStart: () => void;
  readonly onSettled: () => void;
  readonly onRequestEnd: (record: RequestRecord) => void;
  /** A bug surfaced while handling a request (answered 500). */
  readonly onBug: (err: unknown) => void;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;
const CONTROL_CHARS = /[\x00-\x1f\x7f]/;
const decoder = new TextDecoder();

/** The raw query string; uWS's JS fallback throws here for a URL without one (PITFALLS 1.1). */
function readQuery(req: HttpRequest): string {
  try {
    return req.getQuery() ?? '';
  } catch {
    return '';
  }
}

/** The client's address; uWS's JS fallback does not implement it. */
function readRemoteAddress(res: HttpResponse): string {
  try {
    return decoder.decode(res.getRemoteAddressAsText());
  } catch {
    return '';
  }
}

function allHeadersOf(req: HttpRequest): Record<string, string> {
  const out: Record<string, string> = {};
  req.forEach((name, value) => {
    out[name] = name in out ? `${out[name]}, ${value}` : value;
  });
  return out;
}

function immediate(res: HttpResponse, spec: ResponseSpec): void {
  // Synchronous answers happen inside the handler, where uWS has the socket corked already.
  writeResponse(res, spec);
}

/** Builds the uWS handler for every path and method. */
export function createHandler(deps: PipelineDeps): (res: HttpResponse, req: HttpRequest) => void {
  const { routes, limits, publisher } = deps;

  return (res, req) => {
    const requestId = randomUUID();
    const url = req.getUrl();
    // Native uWS hands the path alone; its JS fallback includes the query string.
    const queryAt = url.indexOf('?');
    const path = queryAt === -1 ? url : url.slice(0, queryAt);
    const route = routes.match(path);
    if (route === undefined) {
      const notFound = new BridgeError('BRIDGE_NOT_FOUND', `no route for ${path}`);
      immediate(res, problemResponse(notFound, requestId));
      deps.onRequestEnd({ requestId, route: UNMATCHED_ROUTE, status: 404, bodyBytes: 0, durationMs: 0, error: notFound });
      return;
    }
    // getMethod is lower-case in the native build; upper-case it for Allow checks and x-http-method.
    const method = req.getMethod().toUpperCase();
    const reject = (err: BridgeError, close: boolean, extra: ReadonlyArray<readonly [string, string]> = []): void => {
      immediate(res, { ...problemResponse(err, requestId, extra), close });
      deps.onRequestEnd({ requestId, route: route.name, status: err.status, bodyBytes: 0, durationMs: 0, error: err });
    };
    if (method !== 'POST') {
      reject(new BridgeError('BRIDGE_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`), false, [
        ['Allow', ALLOWED_METHODS],
      ]);
      return;
    }
    const contentType = req.getHeader('content-type');
    const mediaType = parseContentType(contentType);
    if (!mediaType.xml) {
      reject(
        new BridgeError('BRIDGE_UNSUPPORTED_MEDIA_TYPE', `Content-Type "${contentType}" is not XML (application/xml, text/xml or application/*+xml)`),
        true,
      );
      return;
    }
    const declaredLength = req.getHeader('content-length');
    if (declaredLength !== '' && Number(declaredLength) > limits.maxBodyBytes) {
      reject(new BridgeError('BRIDGE_BODY_TOO_LARGE', `Content-Length ${declaredLength} exceeds maxBodyBytes (${limits.maxBodyBytes})`), true);
      return;
    }
    const forwarded: Array<readonly [string, string]> = [];
    for (const name of route.config.forwardHeaders) {
      const value = req.getHeader(name);
      if (value === '') continue;
      if (Buffer.byteLength(value) > limits.maxHeaderValueBytes || CONTROL_CHARS.test(value)) {
        reject(
          new BridgeError('BRIDGE_BAD_REQUEST', `header ${name} is longer than ${limits.maxHeaderValueBytes} bytes or has control characters`),
          true,
        );
        return;
      }
      forwarded.push([name, value]);
    }
    const refused = publisher.admit();
    if (refused) {
      immediate(res, { ...problemResponse(refused, requestId), close: true });
      deps.onRequestEnd({ requestId, route: route.name, status: refused.status, bodyBytes: 0, durationMs: 0, error: refused, admissionRefused: true });
      return;
    }
    const idempotencyKey = req.getHeader('idempotency-key');
    const facts: RequestFacts = {
      method,
      path,
      query: queryAt === -1 ? readQuery(req) : url.slice(queryAt + 1),
      remoteAddr: readRemoteAddress(res),
      requestId,
      messageId: IDEMPOTENCY_KEY.test(idempotencyKey) ? idempotencyKey : randomUUID(),
      contentType: contentType === '' ? undefined : contentType,
      forwarded,
      allHeaders: route.config.mode === 'celery' ? allHeadersOf(req) : undefined,
    };
    const exchange = new HttpExchange(res, requestId);
    deps.onRequestStart();
    void serve(exchange, route, facts, mediaType.charset, deps).finally(() => {
      publisher.release();
      deps.onSettled();
    });
  };
}

function newChecker(limits: Config['limits'], route: CompiledRoute, charset: string | undefined): XmlChecker {
  return new XmlChecker({
    maxDepth: limits.maxXmlDepth,
    allowDoctype: limits.allowDoctype,
    extract: route.extractPaths,
    contentTypeCharset: charset,
  });
}

async function serve(
  exchange: HttpExchange,
  route: CompiledRoute,
  facts: RequestFacts,
  charset: string | undefined,
  deps: PipelineDeps,
): Promise<void> {
  let bodyBytes = 0;
  let uploadComplete = false;
  let spec: ResponseSpec;
  let error: BridgeError | undefined;
  try {
    // The checker is not a local of this frame: it must not outlive the body (see body.ts).
    const received = await receiveBody(exchange, deps.limits, newChecker(deps.limits, route, charset));
    uploadComplete = true;
    bodyBytes = received.body.byteLength;
    const gone = new AbortController();
    exchange.onAbort(() => gone.abort());
    spec = await deps.run(route, facts, received, gone.signal);
  } catch (err) {
    if (err instanceof ClientGoneError) {
      deps.onRequestEnd({ requestId: exchange.requestId, route: route.name, status: 499, bodyBytes, durationMs: performance.now() - exchange.startedAt, error: undefined });
      return;
    }
    if (err instanceof BridgeError) {
      error = err;
    } else {
      deps.onBug(err);
      error = new BridgeError('BRIDGE_INTERNAL', 'internal error; see the bridge log for this request id', { cause: err });
    }
    const extra: Array<readonly [string, string]> = [];
    if (route.config.mode === 'publish') extra.push(['Message-Id', facts.messageId]);
    spec = { ...problemResponse(error, exchange.requestId, extra), close: !uploadComplete };
  }
  if (deps.isDraining()) spec = { ...spec, close: true };
  const answered = exchange.respond(spec);
  deps.onRequestEnd({
    requestId: exchange.requestId,
    route: route.name,
    status: answered ? spec.status : 499,
    bodyBytes,
    durationMs: performance.now() - exchange.startedAt,
    error,
  });
}
