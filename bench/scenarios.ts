/** The scenario × stack matrix of `npm run bench`, in its quick and full sizes. */
import {
  startBridgeStack,
  startFastify,
  startPython,
  startUwsHello,
  type HttpStack,
  type Mode,
  type PythonServer,
  type StartContext,
} from './stacks.js';

export type StackRole = 'bridge' | 'peer' | 'limit';

/** How a stack's numbers are compared in the targets. */
export type StackFamily =
  | 'bridge'
  | 'node'
  | 'python-confirms'
  | 'python-no-confirms'
  | 'python-blocking'
  | 'http-limit'
  | 'amqp-limit';

interface StackBase {
  readonly id: string;
  readonly label: string;
  readonly role: StackRole;
  readonly family: StackFamily;
  /** Connection counts this stack runs at, when not all of the scenario's. */
  readonly conns?: readonly number[];
}

export interface HttpStackSpec extends StackBase {
  readonly kind: 'http';
  start(ctx: StartContext): Promise<HttpStack>;
}

export interface RawPublisherSpec extends StackBase {
  readonly kind: 'raw-publisher';
  readonly format: 'bare' | 'bridge';
}

export interface RawRpcSpec extends StackBase {
  readonly kind: 'raw-rpc';
}

export type StackSpec = HttpStackSpec | RawPublisherSpec | RawRpcSpec;

export interface Scenario {
  readonly id: string;
  readonly title: string;
  /** Under the chart's bar groups. */
  readonly short: string;
  readonly mode: Mode;
  readonly queueType: 'classic' | 'quorum';
  readonly conns: readonly number[];
  /** rpc and blocking celery: one request queue served by one backend; otherwise a queue per stack. */
  readonly backend: 'none' | 'responder' | 'celery';
  readonly stacks: readonly StackSpec[];
}

/** The raw publisher's window at `conns` connections: 256 as the issue asks, but never more than the clients. */
export const rawWindow = (conns: number): number => Math.min(conns, 256);

const bridge: HttpStackSpec = {
  id: 'bridge',
  label: 'bridge',
  role: 'bridge',
  family: 'bridge',
  kind: 'http',
  start: startBridgeStack,
};
const fastify: HttpStackSpec = {
  id: 'fastify',
  label: 'Fastify + amqplib (cluster)',
  role: 'peer',
  family: 'node',
  kind: 'http',
  start: startFastify,
};
const hello: HttpStackSpec = {
  id: 'uws-hello',
  label: 'uWS hello world',
  role: 'limit',
  family: 'http-limit',
  kind: 'http',
  start: startUwsHello,
};

function python(
  server: PythonServer,
  confirms: boolean,
  blocking: boolean,
  conns?: readonly number[],
): HttpStackSpec {
  const name =
    server === 'tornado'
      ? 'Tornado'
      : server === 'gevent-flask'
        ? 'gevent + Flask'
        : 'gunicorn + Flask';
  const family: StackFamily = blocking
    ? 'python-blocking'
    : confirms
      ? 'python-confirms'
      : 'python-no-confirms';
  return {
    id: `${server}${blocking ? '+get' : confirms ? '+confirms' : ''}`,
    label: `${name}${blocking ? ' (.get)' : confirms ? ' (confirms)' : ' (no confirms)'}`,
    role: 'peer',
    family,
    kind: 'http',
    ...(conns === undefined ? {} : { conns }),
    start: (ctx) => startPython(server, confirms, ctx),
  };
}

const SERVERS: readonly PythonServer[] = ['tornado', 'gevent-flask', 'gunicorn-flask'];

export function buildScenarios(size: 'quick' | 'full'): Scenario[] {
  const full = size === 'full';
  // Quick mode keeps the peers without confirms, and blocking gevent (the slowest, about 20 s a
  // run at 1,000 connections), at 100 connections only; the raw publisher's window-256 run is
  // shared by 1,000 and 10,000 connections in both sizes.
  const noConfirmConns = full ? undefined : [100];
  const slowConns = full ? undefined : [100];
  const rawPublisher = (format: 'bare' | 'bridge'): RawPublisherSpec => ({
    id: format === 'bridge' ? 'raw-publisher' : 'raw-publisher-bare',
    label:
      format === 'bridge'
        ? "raw amqplib publisher (bridge's headers)"
        : 'raw amqplib publisher (bare 1 KiB)',
    role: 'limit',
    family: 'amqp-limit',
    kind: 'raw-publisher',
    format,
    conns: [100, 1000],
  });
  const rawRpc: RawRpcSpec = {
    id: 'raw-rpc',
    label: 'raw amqplib RPC client',
    role: 'limit',
    family: 'amqp-limit',
    kind: 'raw-rpc',
  };
  return [
    {
      id: 'publish-durable',
      short: 'publish',
      title: 'publish, durable classic queue',
      mode: 'publish',
      queueType: 'classic',
      conns: [100, 1000, 10_000],
      backend: 'none',
      stacks: [
        bridge,
        fastify,
        hello,
        rawPublisher('bridge'),
        ...(full ? [rawPublisher('bare')] : []),
      ],
    },
    {
      id: 'publish-quorum',
      short: 'quorum',
      title: 'publish, quorum queue',
      mode: 'publish',
      queueType: 'quorum',
      conns: [100, 1000],
      backend: 'none',
      stacks: [bridge, fastify, rawPublisher('bridge')],
    },
    {
      id: 'rpc',
      short: 'rpc',
      title: 'rpc, reference responder',
      mode: 'rpc',
      queueType: 'classic',
      conns: [100, 1000],
      backend: 'responder',
      stacks: [bridge, fastify, rawRpc],
    },
    {
      id: 'celery-ff',
      short: 'celery ff',
      title: 'celery, fire and forget (wait: false)',
      mode: 'celery-ff',
      queueType: 'classic',
      conns: [100, 1000],
      backend: 'none',
      stacks: [
        bridge,
        ...SERVERS.flatMap((s) => [
          python(s, false, false, noConfirmConns),
          python(s, true, false),
        ]),
      ],
    },
    {
      id: 'celery-wait',
      short: 'celery wait',
      title: 'celery, blocking (wait: true), real Celery worker',
      mode: 'celery-wait',
      queueType: 'classic',
      conns: [100, 1000],
      backend: 'celery',
      stacks: [
        bridge,
        ...SERVERS.map((s) => python(s, false, true, s === 'gevent-flask' ? slowConns : undefined)),
      ],
    },
  ];
}
