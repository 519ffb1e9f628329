/**
 * All contact with one request's uWS HttpResponse: abort tracking, the streamed body (copied
 * chunk by chunk, fed to the XML check, counted against maxBodyBytes), one answer, corked when
 * written from outside a uWS callback. Where the answer is due at the broker's confirm, the
 * connection stops being read from body-in until the answer is written: uWS closes a connection,
 * unanswered, when the next pipelined request's head is parsed while one is pending; paused, that
 * request waits in the kernel and is read after the answer (docs/failure-modes.md #13). Not for
 * replies (rpc, celery wait): a paused socket does not report its client leaving, and a reply
 * wait may be long, its slot better freed at once. Route code never touches `res` (uWS terminates the
 * process on misuse, and its `any` index signature defeats the type checker; docs/failure-modes.md
 * #7, #8).
 */
import type { HttpResponse } from 'uWebSockets.js';
import { BridgeError, ClientGoneError, XmlError } from '../../shared/errors.js';
import type { ClientLink, ReceivedBody } from '../request.js';
import type { XmlChecker, XmlSummary } from '../xml/check.js';
import { writeResponse, type Rendered } from './render.js';

/** Where a body intake ends: exactly one of these is called, once. */
export interface BodySink {
  body(received: ReceivedBody): void;
  /**
   * 413, 400 (XmlError), 408, 499 (ClientGoneError), or 500 for a `bug` while reading;
   * `uploadComplete` = false when unread body may follow (then the answer closes the connection).
   */
  bodyFailed(err: BridgeError, bug: unknown, uploadComplete: boolean): void;
}

// res.cork() runs its callback synchronously: the arguments travel through these instead of a
// closure per response.
let corkRes: HttpResponse | undefined;
let corkRendered: Rendered | undefined;
let corkRequestId = '';
let corkMessageId: string | undefined;
let corkClose = false;
const writeCorked = (): void =>
  writeResponse(
    corkRes as HttpResponse,
    corkRendered as Rendered,
    corkRequestId,
    corkMessageId,
    corkClose,
  ); // set just before cork

export class HttpExchange implements ClientLink {
  readonly requestId: string;
  /** performance.now() when the request head arrived. */
  readonly startedAt: number;
  /** When the body upload times out (performance.now() scale). */
  deadline = 0;
  #res: HttpResponse;
  #aborted = false;
  #responded = false;
  #paused = false;
  #onGone: (() => void) | undefined;
  // Body intake; dropped as soon as the body is in: uWS keeps the onData handler (and so this
  // object's references) until the response ends, i.e. while we wait for the confirm or reply.
  #checker: XmlChecker | undefined;
  #sink: BodySink | undefined;
  #chunks: Buffer[] | undefined;
  #size = 0;
  #maxBodyBytes = 0;
  #holdReads = false;

  /** Must be called synchronously in the uWS handler: it attaches onAborted at once. */
  constructor(res: HttpResponse, requestId: string, startedAt: number) {
    this.#res = res;
    this.requestId = requestId;
    this.startedAt = startedAt;
    res.onAborted(this.#abort);
  }

  get gone(): boolean {
    return this.#aborted;
  }

  /** False while the body is still streaming in (for the upload deadline sweep). */
  get finished(): boolean {
    return this.#sink === undefined;
  }

  onGone(cb: () => void): void {
    this.#onGone = cb;
  }

  /**
   * Streams the body into `checker`; `sink` learns the outcome. Call synchronously in the uWS
   * handler. The caller calls `uploadTimedOut()` once `deadline` passes (a DeadlineQueue sweep).
   */
  receive(
    checker: XmlChecker,
    maxBodyBytes: number,
    timeoutMs: number,
    holdReads: boolean,
    sink: BodySink,
  ): void {
    this.#holdReads = holdReads;
    this.#checker = checker;
    this.#sink = sink;
    this.#maxBodyBytes = maxBodyBytes;
    this.deadline = this.startedAt + timeoutMs;
    this.#res.onData(this.#data);
  }

  /** The upload deadline passed (called by the sweep; a no-op once the body is in). */
  uploadTimedOut(timeoutMs: number): void {
    this.#bodyFailed(
      new BridgeError('BRIDGE_UPLOAD_TIMEOUT', `the body did not arrive within ${timeoutMs} ms`),
      undefined,
      false,
    );
  }

  /**
   * Writes the answer unless the client is gone or we answered already; returns whether it did.
   * `corked` = false when called from inside a uWS callback, which is corked already.
   */
  respond(r: Rendered, messageId: string | undefined, close: boolean, corked = true): boolean {
    if (this.#aborted || this.#responded) return false;
    this.#responded = true;
    this.#onGone = undefined;
    // Before the write: uWS restores the poll events saved by pause() by the socket's buffered
    // state, which must be the same as when it paused.
    if (this.#paused) this.#res.resume();
    if (!corked) {
      writeResponse(this.#res, r, this.requestId, messageId, close);
      return true;
    }
    corkRes = this.#res;
    corkRendered = r;
    corkRequestId = this.requestId;
    corkMessageId = messageId;
    corkClose = close;
    this.#res.cork(writeCorked);
    corkRes = undefined;
    corkRendered = undefined;
    return true;
  }

  readonly #abort = (): void => {
    this.#aborted = true;
    if (this.#sink !== undefined) this.#bodyFailed(new ClientGoneError(), undefined, false);
    const cb = this.#onGone;
    this.#onGone = undefined;
    cb?.();
  };

  readonly #data = (ab: ArrayBuffer, isLast: boolean): void => {
    const checker = this.#checker;
    if (checker === undefined || this.#aborted) return;
    const size = (this.#size += ab.byteLength);
    if (size > this.#maxBodyBytes) {
      this.#bodyFailed(
        new BridgeError(
          'BRIDGE_BODY_TOO_LARGE',
          `the body exceeds maxBodyBytes (${this.#maxBodyBytes})`,
        ),
        undefined,
        false,
      );
      return;
    }
    let summary: XmlSummary;
    try {
      if (ab.byteLength > 0) {
        // uWS neuters the ArrayBuffer when this callback returns: keep a copy.
        const copy = Buffer.from(new Uint8Array(ab));
        if (isLast && this.#chunks === undefined) {
          checker.feed(copy, true);
          summary = checker.end();
          this.#bodyDone({ body: copy, summary });
          return;
        }
        (this.#chunks ??= []).push(copy);
        checker.feed(copy, isLast);
      } else if (isLast) checker.feed(copy0, true);
      if (!isLast) return;
      summary = checker.end();
    } catch (err) {
      if (err instanceof XmlError) this.#bodyFailed(err, undefined, isLast);
      else
        this.#bodyFailed(
          new BridgeError(
            'BRIDGE_INTERNAL',
            'internal error while reading the body; see the bridge log for this request id',
          ),
          err,
          isLast,
        );
      return;
    }
    const chunks = this.#chunks ?? [];
    this.#bodyDone({
      body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size),
      summary,
    }); // length checked
  };

  #bodyDone(received: ReceivedBody): void {
    const sink = this.#sink;
    this.#release();
    if (this.#holdReads) {
      this.#res.pause();
      this.#paused = true;
    }
    sink?.body(received);
  }

  #bodyFailed(err: BridgeError, bug: unknown, uploadComplete: boolean): void {
    const sink = this.#sink;
    if (sink === undefined) return;
    this.#release();
    sink.bodyFailed(err, bug, uploadComplete);
  }

  #release(): void {
    this.#sink = undefined;
    this.#checker = undefined;
    this.#chunks = undefined;
  }
}

const copy0 = Buffer.alloc(0);
