/** node:http client helpers for the publish-mode e2e tests: full control over headers, uploads held open, chunked bodies, problem+json checks. */
import assert from 'node:assert/strict';
import {
  request,
  type Agent,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from 'node:http';

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface SendOptions {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
  /** Default false: a fresh connection per request. */
  readonly agent?: Agent | false;
}

function collect(res: IncomingMessage): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('error', reject);
    res.on('end', () =>
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
    );
  });
}

/** One request with exactly the given headers (plus Host and Content-Length/Connection from node:http). */
export function send(url: string, options: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : Buffer.from(options.body);
    const headers: Record<string, string> = { ...options.headers };
    if (
      body !== undefined &&
      !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')
    ) {
      headers['Content-Length'] = String(body.byteLength);
    }
    const req = request(
      url,
      { method: options.method ?? 'POST', agent: options.agent ?? false, headers },
      (res) => {
        collect(res).then(resolve, reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export interface HeldUpload {
  readonly req: ClientRequest;
  /** The server's answer, whenever it comes (before or after the upload ends). */
  readonly response: Promise<Reply>;
  /** Resolves once the headers and `first` have been handed to the kernel. */
  readonly sent: Promise<void>;
}

/**
 * Starts a POST, sends the headers and `first` and then stops writing (the rest is up to the
 * caller: `req.end(rest)`, more `req.write`s, or `req.destroy()`).
 */
export function holdUpload(
  url: string,
  headers: Readonly<Record<string, string>>,
  first: string | Buffer,
): HeldUpload {
  let onResponse: (r: Reply) => void = () => undefined;
  let onError: (err: unknown) => void = () => undefined;
  const response = new Promise<Reply>((resolve, reject) => {
    onResponse = resolve;
    onError = reject;
  });
  const req = request(url, { method: 'POST', agent: false, headers: { ...headers } }, (res) => {
    collect(res).then(onResponse, onError);
  });
  req.on('error', onError);
  const sent = new Promise<void>((resolve, reject) => {
    if (first.length === 0) {
      // Headers only (a client waiting before it sends the body).
      req.flushHeaders();
      req.once('socket', (socket) => socket.once('connect', () => resolve()));
      return;
    }
    req.write(first, (err) => (err ? reject(err) : resolve()));
  });
  // Callers that never await `sent` must not see an unhandled rejection (the response reports the error).
  sent.catch(() => undefined);
  response.catch(() => undefined);
  return { req, response, sent };
}

export function header(reply: Reply, name: string): string | undefined {
  const value = reply.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : value;
}

export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
}

/** Asserts an RFC 9457 answer with `status` and an X-Request-Id; returns the parsed problem. */
export function assertProblem(reply: Reply, status: number, what = ''): Problem {
  const text = reply.body.toString('utf8');
  assert.equal(reply.status, status, `${what}: expected ${status}, got ${reply.status}: ${text}`);
  assert.equal(header(reply, 'content-type'), 'application/problem+json', `${what}: Content-Type`);
  assertRequestId(reply, what);
  const parsed: unknown = JSON.parse(text);
  assert.ok(typeof parsed === 'object' && parsed !== null, `${what}: problem body is an object`);
  const p = parsed as Record<string, unknown>; // narrowed to an object just above
  assert.equal(typeof p['type'], 'string', `${what}: type`);
  assert.ok(String(p['type']).length > 0, `${what}: type is not empty`);
  assert.equal(typeof p['title'], 'string', `${what}: title`);
  assert.ok(String(p['title']).length > 0, `${what}: title is not empty`);
  assert.equal(p['status'], status, `${what}: status in the body equals the HTTP status`);
  assert.equal(typeof p['detail'], 'string', `${what}: detail`);
  return {
    type: String(p['type']),
    title: String(p['title']),
    status,
    detail: String(p['detail']),
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string | undefined): boolean {
  return s !== undefined && UUID.test(s);
}

/** Every response carries a non-empty X-Request-Id; returns it. */
export function assertRequestId(reply: Reply, what = ''): string {
  const id = header(reply, 'x-request-id');
  assert.ok(id !== undefined && id.length > 0, `${what}: X-Request-Id missing`);
  return id;
}

/** Retry-After on a 503: a non-negative number of seconds. */
export function assertRetryAfter(reply: Reply, what = ''): void {
  const value = header(reply, 'retry-after');
  assert.ok(
    value !== undefined && /^\d+$/.test(value),
    `${what}: Retry-After must be delta-seconds, got ${String(value)}`,
  );
}
