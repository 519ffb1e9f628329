/**
 * The one place that turns outcomes into HTTP: a mode's result or a BridgeError becomes a
 * response (problem+json per RFC 9457 for errors, `Retry-After` on 503), and every response is
 * written with `X-Request-Id`, and `Message-Id` once the request has a message.
 */
import { STATUS_CODES } from 'node:http';
import type { HttpResponse } from 'uWebSockets.js';
import type { BridgeError } from '../../shared/errors.js';
import type { HeaderList, ModeResult } from '../request.js';
import type { CompiledRoute } from '../routes.js';

/** A response before the per-request ids are added. */
export interface Rendered {
  readonly status: number;
  readonly headers: HeaderList;
  readonly body: string | Uint8Array;
}

/** Seconds a partner should wait before retrying a 503. */
const RETRY_AFTER_SECONDS = '1';

const statusLines = new Map<number, string>();

/** "202 Accepted": cached, since uWS takes the status line as one string. */
function statusLine(status: number): string {
  let line = statusLines.get(status);
  if (line === undefined) {
    line = `${status} ${STATUS_CODES[status] ?? 'Status'}`;
    statusLines.set(status, line);
  }
  return line;
}

const PROBLEM: HeaderList = [['Content-Type', 'application/problem+json']];
const PROBLEM_RETRY: HeaderList = [...PROBLEM, ['Retry-After', RETRY_AFTER_SECONDS]];
const JSON_TYPE: HeaderList = [['Content-Type', 'application/json']];

export function renderProblem(
  err: BridgeError,
  requestId: string,
  extraHeaders: HeaderList = [],
): Rendered {
  const base = err.status === 503 ? PROBLEM_RETRY : PROBLEM;
  return {
    status: err.status,
    headers: extraHeaders.length === 0 ? base : [...base, ...extraHeaders],
    body: JSON.stringify({
      type: err.type,
      title: err.title,
      status: err.status,
      detail: err.message,
      code: err.code,
      requestId,
    }),
  };
}

export function renderResult(route: CompiledRoute, result: ModeResult): Rendered {
  switch (result.kind) {
    case 'accepted':
      // Only publish routes answer 'accepted'; their success response is compiled with the route.
      return route.mode === 'publish' ? route.success : { status: 202, headers: [], body: '' };
    case 'task-queued':
      return {
        status: 202,
        headers: JSON_TYPE,
        body: `{"task_id":${JSON.stringify(result.taskId)}}`,
      };
    case 'reply':
      return result;
    default: {
      const never: never = result;
      throw new TypeError(`unknown mode result ${String(never)}`);
    }
  }
}

/**
 * Writes a complete response; the caller guarantees `res` is alive and corked. `messageId` is
 * sent as `Message-Id` when given; `close` asks uWS to close the connection after it.
 */
export function writeResponse(
  res: HttpResponse,
  r: Rendered,
  requestId: string,
  messageId: string | undefined,
  close: boolean,
): void {
  res.writeStatus(statusLine(r.status));
  const headers = r.headers;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i] as readonly [string, string]; // i < length
    res.writeHeader(h[0], h[1]);
  }
  res.writeHeader('X-Request-Id', requestId);
  if (messageId !== undefined) res.writeHeader('Message-Id', messageId);
  res.end(r.body, close);
}
