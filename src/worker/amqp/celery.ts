/**
 * Pure: Celery task protocol 2 messages as Celery 5's `send_task` builds them
 * (celery/app/amqp.py `as_task_v2`), and the reading of results sent by Celery's `rpc://`
 * backend (a JSON `{task_id, status, result, traceback, children}` to `reply_to`, with
 * `correlation_id` = task id).
 */
import type { ConsumeMessage } from 'amqplib';
import type { CeleryRouteConfig, Config, RouteConfig } from '../../shared/config-schema.js';
import { BridgeError } from '../../shared/errors.js';
import { PublishTemplate, type PublishFields } from './frames.js';
import { DIRECT_REPLY_TO } from './replies.js';
import { APP_ID } from './message.js';

/** Celery's `argsrepr_maxsize`: the repr shown by monitoring tools is cut there. */
const REPR_MAX = 1024;

/** Celery's `embed` part of a protocol 2 body: no callbacks, no chain, no chord. */
const EMBED_JSON = '{"callbacks":null,"errbacks":null,"chain":null,"chord":null}';

/** Where the task goes: Celery's defaults (a direct exchange and routing key named like the queue). */
export function celeryDestination(route: CeleryRouteConfig): {
  readonly exchange: string;
  readonly routingKey: string;
} {
  return { exchange: route.exchange ?? route.queue, routingKey: route.routingKey ?? route.queue };
}

/** Task message headers that vary per task, in template order. */
const CELERY_HEADER_NAMES = ['id', 'root_id', 'argsrepr', 'x-request-id'] as const;
/** With `wait`, `expires` varies too (publish time + timeoutMs). */
const CELERY_WAIT_HEADER_NAMES = [...CELERY_HEADER_NAMES, 'expires'] as const;

/**
 * The template of a celery route's task messages, as Celery 5's `send_task` builds them
 * (celery/app/amqp.py `as_task_v2`): JSON, persistent, mandatory; with `wait`, reply_to for the
 * rpc:// result and the timeout as `expiration`, as send_task does with `expires`.
 */
export function celeryTemplate(route: CeleryRouteConfig, origin: string): PublishTemplate {
  return new PublishTemplate({
    exchange: celeryDestination(route).exchange,
    mandatory: true,
    persistent: true,
    appId: APP_ID,
    contentEncoding: 'utf-8',
    correlationId: true,
    replyTo: route.wait ? DIRECT_REPLY_TO : '',
    expiration: route.wait ? String(route.timeoutMs) : undefined,
    constantHeaders: {
      lang: 'py',
      task: route.task,
      shadow: null,
      eta: null,
      ...(route.wait ? {} : { expires: null }),
      group: null,
      group_index: null,
      retries: 0,
      timelimit: [null, null],
      parent_id: null,
      kwargsrepr: '{}',
      origin,
      ignore_result: !route.wait,
    },
    headerNames: [
      ...(route.wait ? CELERY_WAIT_HEADER_NAMES : CELERY_HEADER_NAMES),
      ...(route.partners === undefined ? [] : ['x-partner']),
    ],
  });
}

export interface CeleryTaskInput {
  /** The task id (also correlation_id and root_id). */
  readonly id: string;
  readonly args: readonly unknown[];
  /** x-request-id: identifies a returned message. */
  readonly requestId: string;
  readonly messageId: string;
  readonly routingKey: string;
  /** With `wait`: the ISO instant after which workers discard the task (Python isoformat). */
  readonly expires: string | undefined;
  /** The verified partner, on routes with partners. */
  readonly partner: string | undefined;
}

/**
 * One task message's per-task fields for `celeryTemplate`: the JSON body `[args, kwargs, embed]`
 * and the headers that vary, `args` JSON-encoded once for both the body and argsrepr.
 */
export function celeryTaskFields(input: CeleryTaskInput): PublishFields {
  const argsJson = JSON.stringify(input.args);
  const argsrepr = argsJson.length > REPR_MAX ? `${argsJson.slice(0, REPR_MAX - 3)}...` : argsJson;
  const headerValues = [input.id, input.id, argsrepr, input.requestId];
  if (input.expires !== undefined) headerValues.push(input.expires);
  if (input.partner !== undefined) headerValues.push(input.partner);
  return {
    routingKey: input.routingKey,
    contentType: 'application/json',
    messageId: input.messageId,
    correlationId: input.id,
    timestampSeconds: Math.floor(Date.now() / 1000),
    headerValues,
    body: Buffer.from(`[${argsJson},{},${EMBED_JSON}]`, 'utf8'),
  };
}

/** Query string → `{name: first value}`, like Flask's `request.args.to_dict()`. */
export function queryParams(query: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(query)) if (!(k in out)) out[k] = v;
  return out;
}

export interface CeleryResult {
  readonly result: unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads one rpc:// result message: the final result for SUCCESS, undefined for interim states
 * (PENDING, RECEIVED, STARTED, RETRY); throws BRIDGE_TASK_FAILED for FAILURE and REVOKED,
 * naming the exception type but never the traceback.
 */
export function interpretCeleryResult(message: ConsumeMessage): CeleryResult | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(message.content.toString('utf8'));
  } catch (err) {
    throw new BridgeError(
      'BRIDGE_BAD_REPLY',
      'the Celery result is not JSON (set result_serializer to json)',
      { cause: err },
    );
  }
  if (!isRecord(parsed) || typeof parsed['status'] !== 'string') {
    throw new BridgeError('BRIDGE_BAD_REPLY', 'the Celery result has no status');
  }
  switch (parsed['status']) {
    case 'SUCCESS':
      return { result: parsed['result'] };
    case 'FAILURE': {
      const result = parsed['result'];
      const type =
        isRecord(result) && typeof result['exc_type'] === 'string'
          ? result['exc_type']
          : 'an unknown exception';
      throw new BridgeError('BRIDGE_TASK_FAILED', `the task raised ${type}`);
    }
    case 'REVOKED':
      throw new BridgeError('BRIDGE_TASK_FAILED', 'the task was revoked');
    default:
      return undefined;
  }
}

type Topology = Config['topology'];

/**
 * Adds what Celery's own producer declares for each celery route (kombu's defaults: a durable
 * direct exchange named like the queue, the durable queue, the binding), unless the configured
 * topology already declares it -- declare the queue there when it needs arguments (quorum).
 */
export function withCeleryTopology(topology: Topology, routes: readonly RouteConfig[]): Topology {
  const exchanges = [...topology.exchanges];
  const queues = [...topology.queues];
  const bindings = [...topology.bindings];
  for (const route of routes) {
    if (route.mode !== 'celery') continue;
    const { exchange, routingKey } = celeryDestination(route);
    if (!queues.some((q) => q.name === route.queue)) {
      queues.push({ name: route.queue, durable: true, autoDelete: false, arguments: {} });
    }
    if (exchange === '') continue;
    if (!exchanges.some((e) => e.name === exchange)) {
      exchanges.push({
        name: exchange,
        type: 'direct',
        durable: true,
        autoDelete: false,
        internal: false,
        arguments: {},
      });
    }
    if (
      !bindings.some(
        (b) => b.queue === route.queue && b.exchange === exchange && b.routingKey === routingKey,
      )
    ) {
      bindings.push({ queue: route.queue, exchange, routingKey, arguments: {} });
    }
  }
  return { exchanges, queues, bindings };
}
