/**
 * The one place that writes HTTP responses: corked writes, problem+json (RFC 9457) for every
 * BridgeError, `X-Request-Id` on everything and `Retry-After` on 503.
 */
import { STATUS_CODES } from 'node:http';
import type { HttpResponse } from 'uWebSockets.js';
import type { BridgeError } from '../../shared/errors.js';


const statusLines = new Map<number, string>();

/** "202 Accepted": cached, since uWS takes the status line as one string. */
export function statusLine(status: number): string {
  let line = statusLines.get(status);
  if (line === undefined) {
    line = `${status} ${STATUS_CODES[status] ?? 'Status'}`;
    statusLines.set(status, line);
  }
  return line;
}

/** Seconds a partner should wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = '1';

export type HeaderList = ReadonlyArray<readonly [string, string]>;

export interface ResponseSpec {
  readonly status: number;
  readonly headers: HeaderList;
  readonly body: string | Uint8Array;
  /** Ask uWS to close the connection after this response (unread body, draining). */
  readonly close?: boolean;
}

export function problemResponse(err: BridgeError, requestId: string, extraHeaders: HeaderList = []): ResponseSpec {
  const headers: Array<readonly [string, string]> = [
    ['Content-Type', 'application/problem+json'],
    ['X-Request-Id', requestId],
    ...extraHeaders,
  ];
  if (err.status === 503) headers.push(['Retry-After', RETRY_AFTER_SECONDS]);
  const body = JSON.stringify({
    type: err.type,
    title: err.title,
    status: err.status,
    detail: err.message,
    code: err.code,
    requestId,
  });
  return { status: err.status, headers, body };
}

/** Writes a complete response; the caller guarantees `res` is still alive. */
export function writeResponse(res: HttpResponse, spec: ResponseSpec): void {
  res.writeStatus(statusLine(spec.status));
  for (const [name, value] of spec.headers) res.writeHeader(name, value);
  res.end(spec.body, spec.close === true);
}
