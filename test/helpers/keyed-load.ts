/**
 * A partner-like load for the fault suite: many keep-alive connections POSTing small XML bodies,
 * each with an Idempotency-Key of its own, every answer (status or network error) kept by key.
 * No retries: a failed request is recorded and the connection's loop pauses briefly before its
 * next request, as a partner backing off would, so a refusing bridge is not hammered.
 */
import { Agent } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { postXml, xmlBody } from './load.js';

export interface KeyedLoadOptions {
  /** A route on 127.0.0.1, e.g. `http://127.0.0.1:4000/faults`. */
  readonly url: string;
  /** Concurrent keep-alive connections, one request at a time on each. */
  readonly connections: number;
  /** Prefix of every Idempotency-Key (then `-<n>`); unique per case. */
  readonly idPrefix: string;
  /** Upper bound on requests issued per second over all connections (default: none). */
  readonly ratePerSecond?: number;
  /** Hard bound: no request is issued after this many (default 1,000,000). */
  readonly maxRequests?: number;
  /** A request with no answer after this long is destroyed and recorded as ETIMEDOUT (default 15 s). */
  readonly requestTimeoutMs?: number;
  /** How long a connection's loop pauses after a non-2xx or an error (default 50 ms). */
  readonly failurePauseMs?: number;
}

/** One request: `status` when an HTTP answer came, else `error` (a Node error code). */
export interface KeyedAnswer {
  readonly key: string;
  /** The load's phase when the request was issued (e.g. `before`, `fault`, `after`). */
  readonly phase: string;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly status: number | undefined;
  readonly error: string | undefined;
  /** The problem's `title` of a non-2xx answer, if it had one. */
  readonly title: string | undefined;
}

export interface KeyedLoad {
  /** Settled requests so far, in the order they settled (live). */
  readonly answers: readonly KeyedAnswer[];
  /** Requests issued and not yet settled. */
  readonly inFlight: () => number;
  /** Tags the requests issued from now on. */
  setPhase(phase: string): void;
  /** Resolves once `n` requests have settled in total (or the load ended first). */
  whenSettled(n: number): Promise<void>;
  /** Resolves once `n` requests issued in `phase` have answered 2xx (or the load ended first). */
  whenOk(phase: string, n: number): Promise<void>;
  /** Stops issuing; resolves with every answer once the in-flight requests have settled. */
  stop(): Promise<readonly KeyedAnswer[]>;
}

export const is2xx = (a: Pick<KeyedAnswer, 'status'>): boolean =>
  a.status !== undefined && a.status >= 200 && a.status < 300;

/** A Node network error's code (`ECONNRESET`…), or the error's name. */
export function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const code: unknown = (err as { code?: unknown }).code; // Node network errors carry a string code
    if (typeof code === 'string') return code;
    if (err instanceof Error) return err.name;
  }
  return 'UNKNOWN';
}

function problemTitle(body: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed === 'object' && parsed !== null && 'title' in parsed)
      return typeof parsed.title === 'string' ? parsed.title : undefined;
  } catch {
    // not a problem+json body
  }
  return undefined;
}

export function startKeyedLoad(options: KeyedLoadOptions): KeyedLoad {
  const agent = new Agent({
    keepAlive: true,
    maxSockets: options.connections,
    // Node's default keeps only 256 idle sockets: more connections would churn instead of staying open.
    maxFreeSockets: options.connections,
    // An idle socket is closed here before uWS's idle timer (8.7–13 s, docs/failure-modes.md 1.5)
    // closes it there: a request sent on a socket the server is closing at that moment fails with
    // ECONNRESET, a failure of the load generator's making (seen once in a cluster run, on sockets
    // left idle while the agent reused the most recent ones).
    timeout: 5000,
  });
  const maxRequests = options.maxRequests ?? 1_000_000;
  const intervalMs = options.ratePerSecond === undefined ? 0 : 1000 / options.ratePerSecond;
  const answers: KeyedAnswer[] = [];
  let phase = 'before';
  let issued = 0;
  let stopped = false;
  let nextSlot = performance.now();
  const okByPhase = new Map<string, number>();
  const waiters = new Set<{ ready: () => boolean; resolve: () => void }>();
  const wake = (all: boolean): void => {
    for (const w of waiters)
      if (all || w.ready()) {
        waiters.delete(w);
        w.resolve();
      }
  };
  const waitFor = (ready: () => boolean): Promise<void> =>
    ready() || stopped
      ? Promise.resolve()
      : new Promise((resolve) => {
          waiters.add({ ready, resolve });
        });

  const loop = async (): Promise<void> => {
    while (!stopped && issued < maxRequests) {
      if (intervalMs > 0) {
        // Pacing, not synchronisation: each request takes the next free slot of the rate.
        const slot = Math.max(nextSlot, performance.now());
        nextSlot = slot + intervalMs;
        const wait = slot - performance.now();
        if (wait > 1) await sleep(wait);
        if (stopped) return;
      }
      const n = issued++;
      const key = `${options.idPrefix}-${n}`;
      const tag = phase;
      const startedAt = performance.now();
      let status: number | undefined;
      let error: string | undefined;
      let title: string | undefined;
      try {
        const answer = await postXml(
          options.url,
          xmlBody(key),
          key,
          agent,
          options.requestTimeoutMs ?? 15_000,
        );
        status = answer.status;
        if (!is2xx(answer)) title = problemTitle(answer.body);
      } catch (err) {
        error = errorCode(err);
      }
      const answer: KeyedAnswer = {
        key,
        phase: tag,
        startedAt,
        endedAt: performance.now(),
        status,
        error,
        title,
      };
      answers.push(answer);
      if (is2xx(answer)) okByPhase.set(tag, (okByPhase.get(tag) ?? 0) + 1);
      wake(false);
      if (!is2xx(answer) && !stopped) await sleep(options.failurePauseMs ?? 50); // a partner's back-off
    }
  };
  const done = Promise.all(Array.from({ length: options.connections }, loop)).then(() => {
    agent.destroy();
    stopped = true;
    wake(true);
    return answers;
  });

  return {
    answers,
    inFlight: () => issued - answers.length,
    setPhase: (p) => {
      phase = p;
    },
    whenSettled: (n) => waitFor(() => answers.length >= n),
    whenOk: (p, n) => waitFor(() => (okByPhase.get(p) ?? 0) >= n),
    stop: () => {
      stopped = true;
      wake(true);
      return done;
    },
  };
}
