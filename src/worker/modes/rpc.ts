/** `rpc` mode: publish with direct reply-to and answer with the backend's reply. */
import { randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import type { ConsumeMessage } from 'amqplib';
import { BridgeError } from '../../shared/errors.js';
import { checkRoutingKey, messageFields } from '../amqp/message.js';
import type { ModeResult } from '../request.js';
import type { CompiledRpcRoute } from '../routes.js';
import type { ModeDeps, ModeRequest } from './mode.js';
import { requestReply } from './request-reply.js';

// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const CONTROL_CHARS = /[\x00-\x1f\x7f]/;
const keepMessage = (message: ConsumeMessage): ConsumeMessage => message;

/** The HTTP status a reply asks for: its `http-status` header, 200 when absent. */
function replyStatus(message: ConsumeMessage): number {
  const raw: unknown = message.properties.headers?.['http-status'];
  if (raw === undefined || raw === null) return 200;
  const n =
    typeof raw === 'number'
      ? raw
      : typeof raw === 'string' && /^\d{3}$/.test(raw.trim())
        ? Number(raw)
        : NaN;
  if (!Number.isInteger(n) || n < 200 || n > 599) {
    throw new BridgeError(
      'BRIDGE_BAD_REPLY',
      `the reply's http-status header (${inspect(raw)}) is not an HTTP status 200-599`,
    );
  }
  return n;
}

/** A backend reply as the answer: its body as is, its content type, the route's listed headers. */
function replyResult(route: CompiledRpcRoute, message: ConsumeMessage): ModeResult {
  const status = replyStatus(message);
  const headers: Array<readonly [string, string]> = [];
  const contentType: unknown = message.properties.contentType;
  if (typeof contentType === 'string' && contentType !== '')
    headers.push(['Content-Type', contentType]);
  const replyHeaders = message.properties.headers ?? {};
  for (const name of route.config.replyHeaders) {
    const value: unknown = replyHeaders[name];
    if (typeof value !== 'string' && typeof value !== 'number') continue;
    const text = String(value);
    if (!CONTROL_CHARS.test(text)) headers.push([name, text]);
  }
  return { kind: 'reply', status, headers, body: message.content };
}

export async function runRpc(
  req: ModeRequest<CompiledRpcRoute>,
  deps: ModeDeps,
): Promise<ModeResult> {
  const { route, facts, body } = req;
  const routingKey = checkRoutingKey(route.routingKey.render(body.summary.values));
  const correlationId = randomUUID();
  const reply = await requestReply(req, deps, {
    correlationId,
    timeoutMs: route.config.timeoutMs,
    interpret: keepMessage,
    template: route.template,
    fields: messageFields(facts, body, routingKey, correlationId),
  });
  return replyResult(route, reply);
}
