/** `celery` mode: a Celery task protocol 2 message; with `wait`, the rpc:// result as the answer. */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { RequestFacts } from '../amqp/message.js';
import { encodeCeleryTask, interpretCeleryResult, queryParams } from '../amqp/celery.js';
import { DIRECT_REPLY_TO } from '../amqp/replies.js';
import type { ReceivedBody } from '../http/body.js';
import type { ResponseSpec } from '../http/respond.js';
import type { CompiledRoute } from '../http/routes.js';
import { requestReply, type ReplyDeps } from './rpc.js';

const ORIGIN = `gen${process.pid}@${hostname()}`;

/**
 * What Python's `datetime.isoformat()` writes: microseconds and an explicit offset. Celery 5.2's
 * parser reads three fraction digits as microseconds (".640" → 640 µs, up to 999 ms early) and
 * Python < 3.11's fromisoformat (Celery 5.3+) rejects a "Z" suffix.
 */
export function pythonIsoformat(date: Date): string {
  return date.toISOString().replace(/Z$/, '000+00:00');
}

/** The body as text in its own encoding (the task gets a str, as the Python stacks passed it). */
export function bodyText(received: ReceivedBody): string {
  return new TextDecoder(received.summary.encoding).decode(received.body);
}

/** A task result as HTTP: a string as is (XML-looking text as application/xml), else JSON. */
export function resultResponse(result: unknown, facts: RequestFacts): ResponseSpec {
  const headers: Array<readonly [string, string]> = [['X-Request-Id', facts.requestId]];
  if (typeof result === 'string') {
    const type = result.trimStart().startsWith('<') ? 'application/xml; charset=utf-8' : 'text/plain; charset=utf-8';
    return { status: 200, headers: [['Content-Type', type], ...headers], body: result };
  }
  return { status: 200, headers: [['Content-Type', 'application/json'], ...headers], body: JSON.stringify(result ?? null) };
}

export async function runCelery(
  deps: ReplyDeps,
  route: CompiledRoute,
  facts: RequestFacts,
  received: ReceivedBody,
  signal: AbortSignal,
): Promise<ResponseSpec> {
  const cfg = route.config;
  if (cfg.mode !== 'celery') throw new TypeError(`runCelery called for a ${cfg.mode} route`);
  const id = randomUUID();
  const { content, options } = encodeCeleryTask({
    id,
    task: cfg.task,
    args: [facts.allHeaders ?? {}, queryParams(facts.query), bodyText(received)],
    kwargs: {},
    replyTo: cfg.wait ? DIRECT_REPLY_TO : '',
    expires: cfg.wait ? pythonIsoformat(new Date(Date.now() + cfg.timeoutMs)) : null,
    origin: ORIGIN,
  });
  // x-request-id tracks basic.return (publisher.ts); message_id lets consumers de-duplicate.
  options.messageId = facts.messageId;
  // As Celery's send_task does with `expires`: the broker drops the task once its caller is gone.
  if (cfg.wait) options.expiration = String(cfg.timeoutMs);
  options.headers = { ...options.headers, 'x-request-id': facts.requestId };
  const exchange = cfg.exchange ?? cfg.queue;
  const routingKey = cfg.routingKey ?? cfg.queue;

  if (!cfg.wait) {
    await deps.publisher.publish(exchange, routingKey, content, options, route.name);
    return {
      status: 202,
      headers: [['Content-Type', 'application/json'], ['X-Request-Id', facts.requestId], ['Message-Id', facts.messageId]],
      body: JSON.stringify({ task_id: id }),
    };
  }
  const { result } = await requestReply(
    deps,
    route,
    { correlationId: id, timeoutMs: cfg.timeoutMs, interpret: interpretCeleryResult, exchange, routingKey, content, options },
    signal,
  );
  return resultResponse(result, facts);
}
