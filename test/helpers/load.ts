/** A small bounded HTTP load generator for loopback e2e tests: XML POSTs with unique Idempotency-Keys. */
import { Agent, request } from 'node:http';

export interface LoadOptions {
  /** Full URL of a route on 127.0.0.1, e.g. `http://127.0.0.1:4000/a`. */
  readonly url: string;
  readonly concurrency: number;
  /** Hard bounds: the load stops by itself at whichever comes first. */
  readonly maxRequests: number;
  readonly maxDurationMs: number;
  /** false: a new TCP connection per request (`Connection: close`). */
  readonly keepAlive: boolean;
  /** Prefix of every Idempotency-Key (then `-<n>`); make it unique per test. */
  readonly idPrefix: string;
  /** A request with no answer after this long is destroyed and counted as ETIMEDOUT. */
  readonly requestTimeoutMs?: number;
}

/** One request: `status` when an HTTP answer came, else `error` (a Node error code). */
export interface Attempt {
  readonly id: string;
  /** performance.now() when the request was issued and when it settled. */
  readonly startedAt: number;
  endedAt: number;
  status: number | undefined;
  error: string | undefined;
  /** The Message-Id response header, if any. */
  messageId: string | undefined;
  /** The body of a non-2xx answer (a problem+json), cut to 300 chars. */
  body: string | undefined;
}

export interface LoadResult {
  readonly attempts: readonly Attempt[];
  /** Count per HTTP status, e.g. { '202': 950, '503': 3 }. */
  readonly statuses: Readonly<Record<string, number>>;
  /** Count per network error code, e.g. { ECONNRESET: 2 }. */
  readonly errors: Readonly<Record<string, number>>;
  /** Message-Id of every 2xx answer. */
  readonly okIds: readonly string[];
  /** Idempotency-Key of every request issued. */
  readonly sentIds: readonly string[];
}

export interface LoadRun {
  /** Issued so far (live). */
  readonly attempts: readonly Attempt[];
  /** Resolves once `n` requests have settled (or the load ended first). */
  whenSettled(n: number): Promise<void>;
  /** Stops issuing new requests; in-flight ones still settle. */
  stop(): void;
  readonly done: Promise<LoadResult>;
}

function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const code: unknown = (err as { code?: unknown }).code; // Node network errors carry a string code
    if (typeof code === 'string') return code;
    if (err instanceof Error) return err.name;
  }
  return 'UNKNOWN';
}

export function xmlBody(n: number | string): string {
  return `<xml><n>${n}</n></xml>`;
}

interface Answer {
  readonly status: number;
  readonly messageId: string | undefined;
  readonly body: string;
}

/** One POST of `body`; resolves with the answer or rejects with the network error. */
export function postXml(
  url: string,
  body: string,
  idempotencyKey: string,
  agent: Agent | false = false,
  timeoutMs = 10_000,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          'Content-Type': 'application/xml',
          'Content-Length': String(Buffer.byteLength(body)),
          'Idempotency-Key': idempotencyKey,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const header = res.headers['message-id'];
          resolve({
            status: res.statusCode ?? 0,
            messageId: typeof header === 'string' ? header : undefined,
            body: Buffer.concat(chunks).toString('utf8'),
          });
        });
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })),
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Starts `concurrency` client loops; see LoadOptions for the bounds. */
export function startLoad(options: LoadOptions): LoadRun {
  const agent = options.keepAlive
    ? new Agent({ keepAlive: true, maxSockets: options.concurrency })
    : false;
  const attempts: Attempt[] = [];
  const deadline = performance.now() + options.maxDurationMs;
  let issued = 0;
  let settled = 0;
  let stopped = false;
  let ended = false;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const notify = (all: boolean): void => {
    for (const w of [...waiters]) {
      if (all || settled >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };

  const loop = async (): Promise<void> => {
    while (!stopped && issued < options.maxRequests && performance.now() < deadline) {
      const n = issued++;
      const attempt: Attempt = {
        id: `${options.idPrefix}-${n}`,
        startedAt: performance.now(),
        endedAt: 0,
        status: undefined,
        error: undefined,
        messageId: undefined,
        body: undefined,
      };
      attempts.push(attempt);
      try {
        const answer = await postXml(
          options.url,
          xmlBody(n),
          attempt.id,
          agent,
          options.requestTimeoutMs,
        );
        attempt.status = answer.status;
        attempt.messageId = answer.messageId;
        if (answer.status < 200 || answer.status >= 300) attempt.body = answer.body.slice(0, 300);
      } catch (err) {
        attempt.error = errorCode(err);
      }
      attempt.endedAt = performance.now();
      settled += 1;
      notify(false);
    }
  };

  const done = Promise.all(Array.from({ length: options.concurrency }, loop)).then(
    (): LoadResult => {
      if (agent) agent.destroy();
      ended = true;
      notify(true);
      const statuses: Record<string, number> = {};
      const errors: Record<string, number> = {};
      const okIds: string[] = [];
      for (const a of attempts) {
        if (a.status !== undefined) {
          statuses[a.status] = (statuses[a.status] ?? 0) + 1;
          if (a.status >= 200 && a.status < 300)
            okIds.push(a.messageId ?? `missing Message-Id for ${a.id}`);
        } else {
          const code = a.error ?? 'UNKNOWN';
          errors[code] = (errors[code] ?? 0) + 1;
        }
      }
      return { attempts, statuses, errors, okIds, sentIds: attempts.map((a) => a.id) };
    },
  );

  return {
    attempts,
    whenSettled: (n) =>
      settled >= n || ended
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            waiters.push({ n, resolve });
          }),
    stop: () => {
      stopped = true;
    },
    done,
  };
}

/** Short text for assertion messages and reports: `202×950 503×3 ECONNRESET×2`. */
export function summarize(result: Pick<LoadResult, 'statuses' | 'errors'>): string {
  const parts = [
    ...Object.entries(result.statuses).map(([s, c]) => `${s}×${c}`),
    ...Object.entries(result.errors).map(([e, c]) => `${e}×${c}`),
  ];
  return parts.length === 0 ? '(nothing)' : parts.join(' ');
}
