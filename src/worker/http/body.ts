/**
 * Streaming body intake: counts bytes (413 the moment maxBodyBytes is passed), feeds each chunk
 * to the XML checker as it arrives (400 before the upload ends), enforces requestTimeoutMs over
 * the upload (408), and concatenates the copied chunks once at the end.
 */
import { BridgeError, XmlError } from '../../shared/errors.js';
import type { XmlChecker, XmlSummary } from '../xml/check.js';
import type { HttpExchange } from './request.js';

export interface BodyLimits {
  readonly maxBodyBytes: number;
  readonly requestTimeoutMs: number;
}

export interface ReceivedBody {
  /** The request body, byte for byte. */
  readonly body: Buffer;
  readonly summary: XmlSummary;
}

/** Thrown into the pipeline when the client went away; never answered. */
export class ClientGoneError extends Error {
  constructor() {
    super('client disconnected');
    this.name = 'ClientGoneError';
  }
}

/**
 * Resolves with the whole body once the last chunk arrived and the XML is well-formed.
 * Rejects with BridgeError (413, 408, 400) or ClientGoneError; `onError.complete` tells whether
 * the client finished uploading (if not, the connection must be closed after the answer).
 */
export function receiveBody(
  exchange: HttpExchange,
  limits: BodyLimits,
  checker: XmlChecker,
): Promise<ReceivedBody> {
  return new Promise<ReceivedBody>((resolve, reject) => {
    let chunks: Buffer[] = [];
    let size = 0;
    let finished = false;
    // uWS keeps the onData handler (and so this closure) until the response ends, i.e. while
    // we wait for the confirm or reply: drop the parser and chunks as soon as they are done
    // with, or 10,000 waiting requests keep 10,000 saxes parsers alive.
    let xml: XmlChecker | undefined = checker;
    const finish = (err: Error | undefined, result?: ReceivedBody): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      chunks = [];
      xml = undefined;
      if (err) reject(err);
      else if (result) resolve(result);
    };
    const timer = setTimeout(
      () => finish(new BridgeError('BRIDGE_UPLOAD_TIMEOUT', `the body did not arrive within ${limits.requestTimeoutMs} ms`)),
      limits.requestTimeoutMs,
    );
    exchange.onAbort(() => finish(new ClientGoneError()));
    exchange.onData((view, isLast) => {
      if (finished || xml === undefined) return;
      try {
        size += view.byteLength;
        if (size > limits.maxBodyBytes) {
          throw new BridgeError('BRIDGE_BODY_TOO_LARGE', `the body exceeds maxBodyBytes (${limits.maxBodyBytes})`);
        }
        if (view.byteLength > 0) {
          // uWS neuters the ArrayBuffer when this callback returns: keep a copy.
          const copy = Buffer.from(view);
          chunks.push(copy);
          xml.feed(copy);
        }
        if (isLast) {
          const summary = xml.end();
          // One chunk (most bodies) is used as is; the length check makes the cast safe.
          finish(undefined, { body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size), summary });
        }
      } catch (err) {
        finish(err instanceof BridgeError ? err : new XmlError('malformed', String(err), { cause: err }));
      }
    });
  });
}
