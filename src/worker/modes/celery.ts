/** `celery` mode: a Celery task protocol 2 message; with `wait`, the rpc:// result as the answer. */
import { randomUUID } from 'node:crypto';
import { TextDecoder } from 'node:util';
import { celeryTaskFields, interpretCeleryResult, queryParams } from '../amqp/celery.js';
import type { ModeResult, ReceivedBody, RequestFacts } from '../request.js';
import type { CompiledCeleryRoute } from '../routes.js';
import type { ModeDeps, ModeRequest } from './mode.js';
import { requestReply } from './request-reply.js';

/**
 * What Python's `datetime.isoformat()` writes: microseconds and an explicit offset. Celery 5.2's
 * parser reads three fraction digits as microseconds (".640" → 640 µs, up to 999 ms early) and
 * Python < 3.11's fromisoformat (Celery 5.3+) rejects a "Z" suffix.
 */
function pythonIsoformat(date: Date): string {
  return date.toISOString().replace(/Z$/, '000+00:00');
}

/** Whole-body decoders by encoding label: each use decodes and flushes, so no state carries over. */
const decoders = new Map<string, TextDecoder>();
const STREAM = { stream: true } as const;

/**
 * The body as text in its own encoding (the task gets a str, as the Python stacks passed it).
 * The XML check decoded it strictly already, so this cannot fail. Streaming call and flush:
 * Node 20's one-shot windows-1252 decode takes a Latin-1 shortcut (0x80 → U+0080, not €).
 */
function bodyText(received: ReceivedBody): string {
  const label = received.summary.encoding;
  let decoder = decoders.get(label);
  if (decoder === undefined) {
    decoder = new TextDecoder(label);
    // Bounded by the WHATWG encodings the XML check accepts.
    decoders.set(label, decoder);
  }
  return decoder.decode(received.body, STREAM) + decoder.decode();
}

/** A task result as HTTP: a string as is (XML-looking text as application/xml), else JSON. */
function resultResult(result: unknown): ModeResult {
  if (typeof result === 'string') {
    const type = result.trimStart().startsWith('<')
      ? 'application/xml; charset=utf-8'
      : 'text/plain; charset=utf-8';
    return { kind: 'reply', status: 200, headers: [['Content-Type', type]], body: result };
  }
  return {
    kind: 'reply',
    status: 200,
    headers: [['Content-Type', 'application/json']],
    body: JSON.stringify(result ?? null),
  };
}

/**
 * The task's headers argument: the request's, with the verified partner as `x-partner` (the
 * bridge's word, replacing any the client sent), so a task written for the web stack sees it.
 */
function taskHeaders(facts: RequestFacts): Readonly<Record<string, string>> {
  const headers = facts.allHeaders ?? {};
  return facts.partner === undefined ? headers : { ...headers, 'x-partner': facts.partner };
}

export async function runCelery(
  req: ModeRequest<CompiledCeleryRoute>,
  deps: ModeDeps,
): Promise<ModeResult> {
  const { route, facts, body } = req;
  const cfg = route.config;
  const id = randomUUID();
  const fields = celeryTaskFields({
    id,
    args: [taskHeaders(facts), queryParams(facts.query), bodyText(body)],
    requestId: facts.requestId,
    messageId: facts.messageId,
    routingKey: route.routingKey,
    expires: cfg.wait ? pythonIsoformat(new Date(Date.now() + cfg.timeoutMs)) : undefined,
    partner: facts.partner,
  });
  if (!cfg.wait) {
    await deps.publisher.publish(route.template, fields, facts.requestId, req.record);
    return { kind: 'task-queued', taskId: id };
  }
  const { result } = await requestReply(req, deps, {
    correlationId: id,
    timeoutMs: cfg.timeoutMs,
    interpret: interpretCeleryResult,
    template: route.template,
    fields,
  });
  return resultResult(result);
}
