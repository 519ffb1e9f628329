/**
 * Pure: Celery task protocol 2 messages as Celery 5's `send_task` builds them
 * (celery/app/amqp.py `as_task_v2`), and the reading of results sent by Celery's `rpc://`
 * backend (a JSON `{task_id, status, result, traceback, children}` to `reply_to`, with
 * `correlation_id` = task id).
 */
import type { ConsumeMessage, Options } from 'amqplib';
import type { Config, RouteConfig } from '../../shared/config-schema.js';
import { BridgeError } from '../../shared/errors.js';

/** Celery's `argsrepr_maxsize`: the repr shown by monitoring tools is cut there. */
const REPR_MAX = 1024;

export interface CeleryTaskInput {
  readonly id: string;
  readonly task: string;
  readonly args: readonly unknown[];
  readonly kwargs: Readonly<Record<string, unknown>>;
  /** Where rpc:// results go; '' when no result is wanted. */
  readonly replyTo: string;
  /** ISO 8601 instant after which workers discard the task, or null. */
  readonly expires: string | null;
  readonly origin: string;
}

function repr(value: unknown): string {
  const text = JSON.stringify(value);
  return text.length > REPR_MAX ? `${text.slice(0, REPR_MAX - 3)}...` : text;
}

/** The body and publish options of one task message. */
export function encodeCeleryTask(input: CeleryTaskInput): { content: Buffer; options: Options.Publish } {
  const body = [input.args, input.kwargs, { callbacks: null, errbacks: null, chain: null, chord: null }];
  return {
    content: Buffer.from(JSON.stringify(body), 'utf8'),
    options: {
      persistent: true,
      mandatory: true,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      correlationId: input.id,
      replyTo: input.replyTo,
      headers: {
        lang: 'py',
        task: input.task,
        id: input.id,
        shadow: null,
        eta: null,
        expires: input.expires,
        group: null,
        group_index: null,
        retries: 0,
        timelimit: [null, null],
        root_id: input.id,
        parent_id: null,
        argsrepr: repr(input.args),
        kwargsrepr: repr(input.kwargs),
        origin: input.origin,
        ignore_result: input.replyTo === '',
      },
    },
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
    throw new BridgeError('BRIDGE_BAD_REPLY', 'the Celery result is not JSON (set result_serializer to json)', { cause: err });
  }
  if (!isRecord(parsed) || typeof parsed['status'] !== 'string') {
    throw new BridgeError('BRIDGE_BAD_REPLY', 'the Celery result has no status');
  }
  switch (parsed['status']) {
    case 'SUCCESS':
      return { result: parsed['result'] };
    case 'FAILURE': {
      const result = parsed['result'];
      const type = isRecord(result) && typeof result['exc_type'] === 'string' ? result['exc_type'] : 'an unknown exception';
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
    const exchange = route.exchange ?? route.queue;
    const routingKey = route.routingKey ?? route.queue;
    if (!queues.some((q) => q.name === route.queue)) {
      queues.push({ name: route.queue, durable: true, autoDelete: false, arguments: {} });
    }
    if (exchange === '') continue;
    if (!exchanges.some((e) => e.name === exchange)) {
      exchanges.push({ name: exchange, type: 'direct', durable: true, autoDelete: false, internal: false, arguments: {} });
    }
    if (!bindings.some((b) => b.queue === route.queue && b.exchange === exchange && b.routingKey === routingKey)) {
      bindings.push({ queue: route.queue, exchange, routingKey, arguments: {} });
    }
  }
  return { exchanges, queues, bindings };
}
