/** `rpc` mode: publish with direct reply-to and answer with the backend's reply. */
import { randomUUID } from 'node:crypto';
import type { ConsumeMessage, Options } from 'amqplib';
import { BridgeError } from '../../shared/errors.js';
import { buildPublishOptions, type RequestFacts } from '../amqp/message.js';
import type { Publisher } from '../amqp/publisher.js';
import { DIRECT_REPLY_TO, type ReplyInterpreter, type ReplyRouter } from '../amqp/replies.js';
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

/** What to publish for one request whose reply we wait for. */
export interface ReplyRequest<T> {
  readonly correlationId: string;
  readonly timeoutMs: number;
  readonly interpret: ReplyInterpreter<T>;
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  readonly options: Options.Publish;
}

/**
 * Publishes a request and resolves with its interpreted reply. The wait starts before the
 * publish (a fast backend can answer before our confirm arrives), ends early when the client
 * disconnects, and the reply counts as ok or timeout for the route.
 */
export async function requestReply<T>(deps: ReplyDeps, route: CompiledRoute, req: ReplyRequest<T>, signal: AbortSignal): Promise<T> {
  const pending = deps.replies.wait(req.correlationId, req.timeoutMs, req.interpret, route.name);
  if (signal.aborted) pending.cancel(new ClientGoneError());
  else signal.addEventListener('abort', () => pending.cancel(new ClientGoneError()), { once: true });
  try {
    await deps.publisher.publish(req.exchange, req.routingKey, req.content, req.options, route.name);
  } catch (err) {
    pending.cancel(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
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
  const reply = await requestReply(
    deps,
    route,
    {
      correlationId,
      timeoutMs,
      interpret: (message) => message,
      exchange: route.config.exchange,
      routingKey,
      content: received.body,
      options: {
        ...buildPublishOptions(facts, received.summary.root),
        correlationId,
        replyTo: DIRECT_REPLY_TO,
        // The broker drops the request once its caller has given up (RabbitMQ per-message TTL).
        expiration: String(timeoutMs),
      },
    },
    signal,
  );
  return replyResponse(route, reply, facts);
}
