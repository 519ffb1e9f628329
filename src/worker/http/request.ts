/**
 * Per-request state and all contact with uWS's HttpResponse: abort tracking, one settled flag,
 * corked late writes. Route code never touches `res` (uWS terminates the process on misuse and
 * its `any` index signature defeats the type checker; PITFALLS #7, #8).
 */
import type { HttpResponse } from 'uWebSockets.js';
import { type ResponseSpec, writeResponse } from './respond.js';

export class HttpExchange {
  #aborted = false;
  #responded = false;
  #onAbort: (() => void) | undefined;
  readonly #res: HttpResponse;
  readonly requestId: string;
  readonly startedAt: number;

  /** Must be called synchronously in the route handler: it attaches onAborted at once. */
  constructor(res: HttpResponse, requestId: string) {
    this.#res = res;
    this.requestId = requestId;
    this.startedAt = performance.now();
    res.onAborted(() => {
      this.#aborted = true;
      const cb = this.#onAbort;
      this.#onAbort = undefined;
      cb?.();
    });
  }

  /** True until the client went away or a response was written. */
  get open(): boolean {
    return !this.#aborted && !this.#responded;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  /** Called once if the client disconnects before we answered. */
  onAbort(cb: () => void): void {
    this.#onAbort = cb;
  }

  /**
   * Streams the body to `onChunk`. uWS neuters each ArrayBuffer when the callback returns, so
   * the callee must consume or copy it synchronously.
   */
  onData(onChunk: (chunk: Uint8Array, isLast: boolean) => void): void {
    this.#res.onData((ab, isLast) => {
      if (this.open) onChunk(new Uint8Array(ab), isLast);
    });
  }

  /** Writes the response unless the client is gone or we already answered; returns whether it did. */
  respond(spec: ResponseSpec): boolean {
    if (!this.open) return false;
    this.#responded = true;
    this.#onAbort = undefined;
    this.#res.cork(() => writeResponse(this.#res, spec));
    return true;
  }
}
