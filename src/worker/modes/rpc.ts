/** `rpc` mode: publish with direct reply-to and answer with the backend's reply. */
import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { BridgeError } from '../../shared/errors.js';
import { buildPublishOptions, type RequestFacts } from '../amqp/message.js';
import type { Publisher } from '../amqp/publisher.js';
import { DIRECT_REPLY_TO, type PendingReply, type ReplyRouter } from '../amqp/replies.js';
import type { ReplyOutcome } from '../../shared/types.js';
import { ClientGoneError, type ReceivedBody } from '../http/body.js';
import type { ResponseSpec } from '../http/respond.js';
import type { CompiledRoute } from '../http/routes.js';
import { routingKeyFor } from './publish.js';

export interface ReplyDeps {
  readonly publisher: Publisher;
  readonly replies: ReplyRouter;
  /** Counts replies that came (ok) or did not come in time (timeout), per route. */
  readonly observeReply: (route: string, outcome: ReplyOutcome) => void;
}

/** Waits for the reply of a published request and records ok/timeout. */
export async function awaitReply<T>(deps: ReplyDeps, route: CompiledRoute, pending: PendingReply<T>): Promise<T> {
  try {
    const value = await pending.promise;
    deps.observeReply(route.name, 'ok');
    return value;
  } catch (err) {
    if (err instanceof BridgeError && err.code === 'BRIDGE_REPLY_TIMEOUT') deps.observeReply(route.name, 'timeout');
    throw err;
  }
}

const CONTROL_CHARS = /[\x00-\x1f\x7f]/;

/** The HTTP status a reply asks for: its `http-status` header, 200 when absent. */
export function replyStatus(message: ConsumeMessage): number {
  const raw: unknown = message.properties.headers?.['http-status'];
  if (raw === undefined || raw === null) return 200;
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d{3}$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < 200 || n > 599) {
    throw new BridgeError('BRIDGE_BAD_REPLY', `the reply's http-status header (${String(raw)}) is not an HTTP status 200-599`);
  }
  return n;
}

/** Turns a backend reply into the HTTP response: body as is, its content type, listed headers. */
export function replyResponse(route: CompiledRoute, message: ConsumeMessage, facts: RequestFacts): ResponseSpec {
  const status = replyStatus(message);
  const headers: Array<readonly [string, string]> = [];
  const contentType = message.properties.contentType;
  if (typeof contentType === 'string' && contentType !== '') headers.push(['Content-Type', contentType]);
  headers.push(['X-Request-Id', facts.requestId], ['Message-Id', facts.messageId]);
  if (route.config.mode === 'rpc') {
    const replyHeaders = message.properties.headers ?? {};
    for (const name of route.config.replyHeaders) {
      const value: unknown = replyHeaders[name];
      if (typeof value !== 'string' && typeof value !== 'number') continue;
      const text = String(value);
      if (!CONTROL_CHARS.test(text)) headers.push([name, text]);
    }
  }
  return { status, headers, body: message.content };
}

/** Rejects the pending reply with ClientGoneError when the client disconnects. */
export function cancelOnAbort(signal: AbortSignal, cancel: (reason: Error) => void): void {
  if (signal.aborted) cancel(new ClientGoneError());
  else signal.addEventListener('abort', () => cancel(new ClientGoneError()), { once: true });
}

export async function runRpc(
  deps: ReplyDeps,
  route: CompiledRoute,
  facts: RequestFacts,
  received: ReceivedBody,
  signal: AbortSignal,
): Promise<ResponseSpec> {
  if (route.config.mode !== 'rpc') throw new TypeError(`runRpc called for a ${route.config.mode} route`);
  const routingKey = routingKeyFor(route, received);
  const correlationId = randomUUID();
  const timeoutMs = route.config.timeoutMs;
  // Wait first: a fast backend can answer before our confirm arrives.
  const pending = deps.replies.wait(correlationId, timeoutMs, (message) => message, route.name);
  cancelOnAbort(signal, pending.cancel);
  const options = {
    ...buildPublishOptions(facts, received.summary.root),
    correlationId,
    replyTo: DIRECT_REPLY_TO,
    // The broker drops the request once its caller has given up (RabbitMQ per-message TTL).
    expiration: String(timeoutMs),
  };
  try {
    await deps.publisher.publish(route.config.exchange, routingKey, received.body, options, route.name);
  } catch (err) {
    pending.cancel(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
  const reply = await awaitReply(deps, route, pending);
  return replyResponse(route, reply, facts);
}
