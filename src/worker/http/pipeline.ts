/**
 * The request path, top to bottom: read the head (route, method, Content-Type, declared size)
 * and admit the request -- all before a byte of body is read -- then stream the body through the
 * XML check, run the route's mode, answer, and hand the request's one record on once the answer
 * is out and its publish settled. Every failure is a BridgeError rendered by render.ts;
 * anything else is a bug, answered 500 and reported.
 */
import { randomUUID } from 'node:crypto';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Config } from '../../shared/config-schema.js';
import { BridgeError, ClientGoneError, ERRORS } from '../../shared/errors.js';
import { UNMATCHED_ROUTE } from '../../shared/metrics.js';
import type { Admission, AdmittedStage } from '../admission.js';
import { DeadlineQueue } from '../deadline-queue.js';
import { runMode } from '../modes/dispatch.js';
import type { ModeDeps } from '../modes/mode.js';
import {
  RequestRecord,
  type HeaderList,
  type ReceivedBody,
  type RecordObserver,
  type RequestFacts,
} from '../request.js';
import type { CompiledRoute, RouteTable } from '../routes.js';
import { atTurnEnd } from '../turn-end.js';
import { XmlChecker } from '../xml/check.js';
import { HttpExchange, type BodySink } from './exchange.js';
import type { PendingWebhook, RouteAccess } from '../partners/gate.js';
import { readHead, readRemoteAddress, type HandshakeHead, type RefusedHead } from './head.js';
import { renderProblem, renderResult, writeResponse, type Rendered } from './render.js';

export interface PipelineDeps {
  readonly routes: RouteTable;
  readonly limits: Config['limits'];
  readonly admission: Admission;
  readonly modes: ModeDeps;
  readonly isDraining: () => boolean;
  /**
   * The native uWS build is serving. Its JS fallback (Node's http server underneath) has no
   * forEach and no pause(), and queues pipelined requests by itself.
   */
  readonly nativeUws: boolean;
  /** Hears of every request's publish and end (metrics, access log). */
  readonly records: RecordObserver;
  /** A bug surfaced while handling a request (answered 500). */
  readonly onBug: (err: unknown, requestId: string) => void;
  /** Sees each complete body before its mode runs (debug logging), when set. */
  readonly onBody?:
    ((requestId: string, route: string, received: ReceivedBody) => void) | undefined;
}

export class RequestPipeline {
  readonly #deps: PipelineDeps;
  readonly #uploads: DeadlineQueue<HttpExchange>;

  constructor(deps: PipelineDeps) {
    this.#deps = deps;
    const timeoutMs = deps.limits.requestTimeoutMs;
    this.#uploads = new DeadlineQueue((exchange) => exchange.uploadTimedOut(timeoutMs));
  }

  /** The uWS handler for every path and method. */
  readonly handle = (res: HttpResponse, req: HttpRequest): void => {
    const deps = this.#deps;
    const startedAt = performance.now();
    const requestId = randomUUID();
    const head = readHead(req, res, deps.routes, deps.limits, requestId, deps.nativeUws);
    if ('error' in head) {
      this.#refuse(res, req, head, startedAt, requestId, false);
      return;
    }
    if ('handshake' in head) {
      this.#handshake(res, head, startedAt);
      return;
    }
    let facts = head.facts;
    let pending: PendingWebhook | undefined;
    const gate = deps.routes.gate;
    if (gate.active) {
      const access = head.route.access;
      if (access === undefined) {
        const client = gate.clientAddress(facts.remoteAddr, head.gateHeaders);
        if (client !== facts.remoteAddr) facts = { ...facts, remoteAddr: client };
      } else {
        const verdict = gate.checkHead(
          access,
          facts.remoteAddr,
          head.gateHeaders,
          gate.readsQuery ? new URLSearchParams(facts.query) : undefined,
        );
        if ('error' in verdict) {
          // The connection stays open for the partner's next request: native uWS's parser skips
          // the unread body by its Content-Length (at most maxBodyBytes, checked above), and a
          // proxy still sending it is not cut off (nginx turns that into a 502 that hides the
          // 401/429). A chunked body could go on forever, and the JS fallback may take its
          // bytes for the next request: those close.
          this.#refuse(
            res,
            req,
            {
              route: head.route,
              error: verdict.error,
              headers: verdict.headers,
              close: head.chunked || !deps.nativeUws,
              partner: verdict.partner,
              authFailure: verdict.reason,
              client: gate.clientAddress(facts.remoteAddr, head.gateHeaders),
            },
            startedAt,
            requestId,
            false,
          );
          return;
        }
        facts = { ...facts, remoteAddr: verdict.client, partner: verdict.partner };
        pending = verdict.webhook;
      }
    }
    const refused = deps.admission.admit();
    if (refused !== undefined) {
      // Nothing of the body is read: close, so its bytes are not taken for the next request.
      this.#refuse(
        res,
        req,
        { route: head.route, error: refused, headers: [], close: true, partner: facts.partner },
        startedAt,
        requestId,
        true,
      );
      return;
    }
    const exchange = new HttpExchange(res, requestId, startedAt);
    const flight = new InFlight(deps, head.route, facts, pending, exchange);
    const { limits } = deps;
    const checker = new XmlChecker({
      maxDepth: limits.maxXmlDepth,
      allowDoctype: limits.allowDoctype,
      paths: head.route.paths,
      contentTypeCharset: head.charset,
    });
    exchange.receive(
      checker,
      limits.maxBodyBytes,
      limits.requestTimeoutMs,
      deps.nativeUws && answersAtConfirm(head.route),
      flight,
    );
    this.#uploads.add(exchange);
  };

  /** Answers inside the uWS handler (corked already) and records the refusal. */
  #refuse(
    res: HttpResponse,
    req: HttpRequest,
    refusal: RefusedHead,
    startedAt: number,
    requestId: string,
    atAdmission: boolean,
  ): void {
    const { route, error, headers, close } = refusal;
    const record = new RequestRecord(
      route?.name ?? UNMATCHED_ROUTE,
      requestId,
      startedAt,
      this.#deps.records,
    );
    // Read before the answer: uWS lets go of the request and the socket's address with it.
    const url = req.getUrl();
    record.method = req.getMethod().toUpperCase();
    record.path = url.includes('?') ? url.slice(0, url.indexOf('?')) : url;
    record.client = refusal.client ?? readRemoteAddress(res);
    record.partner = refusal.partner;
    record.authFailure = refusal.authFailure;
    writeResponse(
      res,
      renderProblem(error, requestId, headers),
      requestId,
      undefined,
      close || this.#deps.isDraining(),
    );
    record.status = error.status;
    record.error = error;
    // Admission refusals count as publish outcomes (overloaded, unavailable); head refusals do not.
    if (atAdmission) record.settlePublish(ERRORS[error.code].publishOutcome, undefined);
    record.end();
  }

  /** WeChat's callback URL check: echo `echostr` when the signature verifies. */
  #handshake(res: HttpResponse, head: HandshakeHead, startedAt: number): void {
    const { route, handshake: query, requestId } = head;
    const access = route.access as RouteAccess; // readHead sends handshakes for WeChat routes only
    const record = new RequestRecord(route.name, requestId, startedAt, this.#deps.records);
    record.method = 'GET';
    record.path = route.path;
    record.client = readRemoteAddress(res);
    const gate = this.#deps.routes.gate;
    let rendered: Rendered;
    if (gate.checkHandshake(access, query)) {
      rendered = { status: 200, headers: HANDSHAKE_HEADERS, body: query.get('echostr') ?? '' };
    } else {
      const error = new BridgeError(
        'BRIDGE_UNAUTHORIZED',
        "the echostr check's signature did not verify: signature must be sha1 of the sorted token, timestamp and nonce, with a current timestamp",
      );
      record.error = error;
      record.authFailure = query.has('signature') ? 'wrong' : 'missing';
      rendered = renderProblem(error, requestId);
    }
    writeResponse(res, rendered, requestId, undefined, this.#deps.isDraining());
    record.status = rendered.status;
    record.seconds = (performance.now() - startedAt) / 1000;
    record.end();
  }

  /** Stops the upload deadline timer (shutdown). */
  close(): void {
    this.#uploads.close();
  }
}

const HANDSHAKE_HEADERS: HeaderList = [
  ['Content-Type', 'text/plain; charset=utf-8'],
  // echostr comes from the query: never let a browser read it as anything but text.
  ['X-Content-Type-Options', 'nosniff'],
];

/** Whether the route's answer is due once the broker confirmed (not when a reply comes). */
function answersAtConfirm(route: CompiledRoute): boolean {
  return route.mode === 'publish' || (route.mode === 'celery' && !route.config.wait);
}

/** One admitted request, from its body to its end. */
class InFlight implements BodySink, RecordObserver {
  readonly #deps: PipelineDeps;
  readonly #route: CompiledRoute;
  #facts: RequestFacts;
  readonly #exchange: HttpExchange;
  readonly #record: RequestRecord;
  #stage: AdmittedStage = 'upload';
  #received: ReceivedBody | undefined;
  /** A Standard Webhooks signature still to verify over the body. */
  readonly #pending: PendingWebhook | undefined;
  /** The verified webhook's id is remembered; undone if the request does not succeed. */
  #forgetReplay: (() => void) | undefined;

  constructor(
    deps: PipelineDeps,
    route: CompiledRoute,
    facts: RequestFacts,
    pending: PendingWebhook | undefined,
    exchange: HttpExchange,
  ) {
    this.#deps = deps;
    this.#route = route;
    this.#facts = facts;
    this.#pending = pending;
    this.#exchange = exchange;
    this.#record = new RequestRecord(route.name, facts.requestId, exchange.startedAt, this);
    this.#record.method = facts.method;
    this.#record.path = facts.path;
    this.#record.client = facts.remoteAddr;
    this.#record.partner = facts.partner;
  }

  published(record: RequestRecord): void {
    this.#deps.records.published(record);
  }

  ended(record: RequestRecord): void {
    if (this.#forgetReplay !== undefined && (record.status < 200 || record.status >= 300))
      this.#forgetReplay();
    this.#deps.admission.release(this.#stage);
    this.#deps.records.ended(record);
  }

  body(received: ReceivedBody): void {
    this.#record.bodyBytes = received.body.byteLength;
    if (this.#pending !== undefined && !this.#verifyWebhook(this.#pending, received.body)) return;
    const refused = this.#deps.admission.bodyIn();
    if (refused !== undefined) {
      this.#record.settlePublish(ERRORS[refused.code].publishOutcome, undefined);
      this.#answerError(refused, false);
      return;
    }
    this.#stage = 'flight';
    this.#deps.onBody?.(this.#facts.requestId, this.#route.name, received);
    // Not before uWS has parsed all that arrived with the body: it may close this connection
    // for a pipelined request that follows, and then this one must not be published.
    this.#received = received;
    atTurnEnd(this.#dispatch);
  }

  /** The webhook signature over the body as received; false when the request was answered. */
  #verifyWebhook(pending: PendingWebhook, body: Buffer): boolean {
    const access = this.#route.access as RouteAccess; // pending only on routes with partners
    const verdict = this.#deps.routes.gate.checkWebhook(
      access,
      this.#facts.remoteAddr,
      pending,
      body,
    );
    if ('error' in verdict) {
      this.#record.partner = verdict.partner;
      this.#record.authFailure = verdict.reason;
      this.#answerError(verdict.error, false, verdict.headers);
      return false;
    }
    this.#forgetReplay = verdict.forget;
    this.#record.partner = verdict.partner;
    this.#facts = { ...this.#facts, partner: verdict.partner, messageId: verdict.id };
    return true;
  }

  readonly #dispatch = (): void => {
    const received = this.#received as ReceivedBody; // set just before queueing
    this.#received = undefined;
    if (this.#exchange.gone) {
      this.#answerError(new ClientGoneError(), false);
      return;
    }
    void this.#serve(received);
  };

  bodyFailed(err: BridgeError, bug: unknown, uploadComplete: boolean): void {
    if (bug !== undefined) this.#deps.onBug(bug, this.#facts.requestId);
    this.#answerError(err, !uploadComplete);
  }

  async #serve(received: ReceivedBody): Promise<void> {
    let rendered: Rendered;
    try {
      const result = await runMode(
        {
          route: this.#route,
          facts: this.#facts,
          body: received,
          client: this.#exchange,
          record: this.#record,
        },
        this.#deps.modes,
      );
      rendered = renderResult(this.#route, result);
    } catch (err) {
      if (err instanceof BridgeError) this.#answerError(err, false);
      else {
        this.#deps.onBug(err, this.#facts.requestId);
        this.#answerError(
          new BridgeError(
            'BRIDGE_INTERNAL',
            'internal error; see the bridge log for this request id',
            { cause: err },
          ),
          false,
        );
      }
      return;
    }
    this.#answer(rendered, false);
  }

  #answerError(err: BridgeError, close: boolean, headers: HeaderList = []): void {
    this.#record.error = err;
    if (err instanceof ClientGoneError) {
      this.#answer(undefined, false);
      return;
    }
    this.#answer(renderProblem(err, this.#facts.requestId, headers), close);
  }

  #answer(rendered: Rendered | undefined, close: boolean): void {
    const record = this.#record;
    const sent =
      rendered !== undefined &&
      this.#exchange.respond(rendered, this.#facts.messageId, close || this.#deps.isDraining());
    record.status = sent ? rendered.status : ERRORS.BRIDGE_CLIENT_GONE.status;
    record.seconds = (performance.now() - record.startedAt) / 1000;
    record.end();
  }
}
