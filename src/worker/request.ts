/**
 * The request contract of the worker, at the lowest floor: what a request is once its head was
 * read (facts) and its body arrived (received body), what a mode returns, and the one record per
 * request that admission and metrics read. The HTTP layer produces and renders these; modes and
 * the AMQP layer only see these types.
 */
import type { BridgeError } from '../shared/errors.js';
import type { PublishOutcome, ReplyOutcome } from '../shared/types.js';
import type { AuthFailureReason } from '../shared/types.js';
import type { XmlSummary } from './xml/check.js';

/** What the HTTP layer read from the request head, before the body. */
export interface RequestFacts {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly remoteAddr: string;
  readonly requestId: string;
  /** The Idempotency-Key when it is a printable token of at most 128 chars, else a fresh UUID. */
  readonly messageId: string;
  readonly contentType: string | undefined;
  /** The request's values of the route's forwardHeaders, by position (undefined: not sent). */
  readonly forwarded: ReadonlyArray<string | undefined>;
  /** Every request header (lower-cased names, credentials left out), for celery routes only. */
  readonly allHeaders: Readonly<Record<string, string>> | undefined;
  /** The verified partner (routes with partners); sent as `x-partner`. */
  readonly partner: string | undefined;
}

export interface ReceivedBody {
  /** The request body, byte for byte. */
  readonly body: Buffer;
  readonly summary: XmlSummary;
}

export type HeaderList = ReadonlyArray<readonly [string, string]>;

/** What a mode answers with; `http/render.ts` turns it into the response. */
export type ModeResult =
  /** publish: the route's configured success response. */
  | { readonly kind: 'accepted' }
  /** celery `wait: false`: 202 with the task id. */
  | { readonly kind: 'task-queued'; readonly taskId: string }
  /** rpc reply or Celery result: the backend's answer as it should be sent. */
  | {
      readonly kind: 'reply';
      readonly status: number;
      readonly headers: HeaderList;
      readonly body: string | Uint8Array;
    };

/** The client's side of a request: modes stop waiting when it goes away. */
export interface ClientLink {
  readonly gone: boolean;
  /** Called once if the client disconnects before the answer (replaces an earlier callback). */
  onGone(cb: () => void): void;
}

/** Learns a request's facts as they become known: its publish settled, the request ended. */
export interface RecordObserver {
  published(record: RequestRecord): void;
  ended(record: RequestRecord): void;
}

/**
 * One per request, from its head to its end: the answer sent and every publish it made settled
 * (an rpc answer can precede its confirm). The pipeline, the publisher and reply waits fill in
 * what they learn; the observer hears of the publish when it settles and of the request once
 * nothing is outstanding any more.
 */
export class RequestRecord {
  /** Metrics label (`unmatched` for paths no route serves). */
  readonly route: string;
  readonly requestId: string;
  readonly startedAt: number;
  /** For the access log: the request line's method and path (no query), and the client address. */
  method = '';
  path = '';
  client = '';
  status = 0;
  /** Seconds from the request head to the answer. */
  seconds = 0;
  bodyBytes = 0;
  error: BridgeError | undefined = undefined;
  /** The partner whose credentials verified, if any (also for its 403 and 429 answers). */
  partner: string | undefined = undefined;
  /** Why access was refused (401/403), for `bridge_auth_failures_total`. */
  authFailure: AuthFailureReason | undefined = undefined;
  /** Set when the request's publish settled, or when it was refused at admission. */
  publish: PublishOutcome | undefined = undefined;
  confirmSeconds: number | undefined = undefined;
  reply: ReplyOutcome | undefined = undefined;
  #outstanding = 1;
  #observer: RecordObserver | undefined;

  constructor(route: string, requestId: string, startedAt: number, observer: RecordObserver) {
    this.route = route;
    this.requestId = requestId;
    this.startedAt = startedAt;
    this.#observer = observer;
  }

  /** Something more must settle before the request is over (a publish awaiting its confirm). */
  hold(): void {
    this.#outstanding += 1;
  }

  /** The request's publish settled (or was refused before it was made). */
  settlePublish(outcome: PublishOutcome | undefined, confirmSeconds: number | undefined): void {
    this.publish = outcome;
    this.confirmSeconds = confirmSeconds;
    if (outcome !== undefined) this.#observer?.published(this);
  }

  /** One outstanding part settled (the answer, or a held publish). */
  end(): void {
    this.#outstanding -= 1;
    if (this.#outstanding !== 0) return;
    const observer = this.#observer;
    this.#observer = undefined;
    observer?.ended(this);
  }
}
