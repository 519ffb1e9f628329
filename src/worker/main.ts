/**
 * Worker entry (forked by the primary): waits for the validated config over IPC, connects to the
 * broker, listens with uWS on the shared port, reports its state, drains on request.
 */
import { once } from 'node:events';
import process from 'node:process';
import { splitHostPort } from '../shared/host-port.js';
import type { Config } from '../shared/config-schema.js';
import { isPrimaryToWorker, WORKER_HEARTBEAT_MS, type WorkerStatus, type WorkerToPrimary } from '../shared/ipc.js';
import { createLogger } from '../shared/log.js';
import { BrokerLink } from './amqp/connection.js';
import { Publisher } from './amqp/publisher.js';
import { createHandler, type ModeRunner } from './http/handler.js';
import { HttpServer } from './http/server.js';
import { loadUws } from '../shared/uws.js';
import { RouteTable } from './http/routes.js';
import { runPublish } from './modes/publish.js';
import { runRpc } from './modes/rpc.js';
import { runCelery } from './modes/celery.js';
import { ReplyRouter } from './amqp/replies.js';
import { withCeleryTopology } from './amqp/celery.js';
import { WorkerMetrics } from './metrics.js';
import { FINAL_SNAPSHOT_ID, UNMATCHED_ROUTE } from '../shared/metrics.js';
import { XmlError } from '../shared/errors.js';
import type { ReplyOutcome } from '../shared/types.js';
import { drain } from './shutdown.js';
import { ActiveRequests } from './active-requests.js';

let log = createLogger({ role: 'worker' });

const BROKER_WAIT_BEFORE_LISTEN_MS = 5000;
/** Below the 4 KiB that pipe writes keep atomic, so workers' lines never interleave. */
const DEBUG_BODY_BYTES = 3072;

function send(msg: WorkerToPrimary): void {
  if (process.connected) process.send?.(msg);
}

/**
 * Hands the primary this worker's final counts before it exits (FINAL_SNAPSHOT_ID), so a reload
 * or stop loses nothing counted since the last scrape. Bounded: a stuck channel cannot hold the exit.
 */
async function sendFinalSnapshot(metrics: WorkerMetrics): Promise<void> {
  if (!process.connected) return;
  try {
    const msg: WorkerToPrimary = { type: 'bridge:metrics', id: FINAL_SNAPSHOT_ID, metrics: await metrics.snapshot() };
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      if (process.send?.(msg, undefined, undefined, done) === undefined) done();
    });
  } catch (err) {
    log.warn('final metrics snapshot not sent', { err });
  }
}

async function start(config: Config, slot: number, port: number, allowFallback: boolean): Promise<void> {
  log = createLogger({ role: 'worker', worker: slot }, config.logging.level);
  const accessRate = config.logging.accessLogSampleRate;
  const { uws, native } = loadUws();
  if (!native && !allowFallback) {
    send({ type: 'bridge:fatal', detail: 'uWebSockets.js native binary did not load (JS fallback refused)' });
    process.exit(78);
  }

  const link = new BrokerLink({
    amqp: config.amqp,
    topology: withCeleryTopology(config.topology, config.routes),
    connectionName: `xml-amqp-bridge worker ${slot} pid ${process.pid}`,
  });
  const publisher = new Publisher(link, config.amqp);
  const replies = new ReplyRouter(link);
  const metrics = new WorkerMetrics({
    inFlight: () => publisher.inFlight,
    connected: () => link.ready,
    blocked: () => link.state === 'blocked',
  });
  metrics.declareRoutes(config.routes.map((r) => r.name ?? r.path));
  publisher.observe = (label, outcome, seconds) => metrics.publish(label, outcome, seconds);
  replies.on('late', (label: string | undefined) => metrics.reply(label ?? UNMATCHED_ROUTE, 'late'));
  const replyDeps = { publisher, replies, observeReply: (route: string, outcome: ReplyOutcome) => metrics.reply(route, outcome) };
  const routes = new RouteTable(config);
  const active = new ActiveRequests();
  let listening = false;
  let draining = false;

  const report = (): void => {
    const status: WorkerStatus = { listening, amqp: link.state, draining };
    send({ type: 'bridge:status', status });
  };
  link.on('state', (state) => {
    log.info('broker state', { state });
    report();
  });
  link.on('problem', ({ what, err }: { what: string; err: unknown }) => log.warn(what, { err }));
  link.on('channel-closed', (info: unknown) => log.warn('confirm channel closed', { info }));

  const run: ModeRunner = (route, facts, received, signal) => {
    if (config.logging.debugBodies) {
      log.debug('request body', { requestId: facts.requestId, route: route.name, body: received.body.toString('utf8', 0, DEBUG_BODY_BYTES) });
    }
    switch (route.config.mode) {
      case 'publish':
        return runPublish(publisher, route, facts, received);
      case 'rpc':
        return runRpc(replyDeps, route, facts, received, signal);
      case 'celery':
        return runCelery(replyDeps, route, facts, received, signal);
      default: {
        const unknownMode: never = route.config;
        throw new TypeError(`unknown mode ${String(unknownMode)}`);
      }
    }
  };
  const onBug = (err: unknown): void => log.error('bug while handling a request', { err });
  const handler = createHandler({
    routes,
    limits: config.limits,
    publisher,
    run,
    isDraining: () => draining,
    onRequestStart: () => active.start(),
    onSettled: () => active.end(),
    onRequestEnd: (record) => {
      if (accessRate > 0 && Math.random() < accessRate) {
        log.info('access', {
          requestId: record.requestId,
          route: record.route,
          status: record.status,
          ms: Math.round(record.durationMs * 10) / 10,
          bytes: record.bodyBytes,
          code: record.error?.code,
        });
      }
      metrics.request(record.route, record.status, record.durationMs / 1000, record.bodyBytes > 0 ? record.bodyBytes : undefined);
      if (record.error instanceof XmlError) metrics.xmlRejected(record.route, record.error.reason);
      if (record.admissionRefused && record.error) {
        metrics.publish(record.route, record.error.code === 'BRIDGE_OVERLOADED' ? 'overloaded' : 'unavailable', undefined);
      }
    },
    onBug,
  });
  const server = new HttpServer(uws, handler, onBug);

  let drained: Promise<void> | undefined;
  const shutdown = (why: string): Promise<void> =>
    (drained ??= (async () => {
      log.info('draining', { why, inFlight: active.count });
      const clean = await drain(
        {
          stopListening: () => {
            server.stopListening();
            listening = false;
          },
          setDraining: () => {
            draining = true;
            report();
          },
          whenIdle: () => active.idle(),
          closeConnections: () => server.close(),
          closeBroker: () => {
            replies.close();
            return link.close();
          },
          onStepError: (step, err) => log.error('drain step failed', { step, err }),
        },
        config.shutdownTimeoutMs,
      );
      log.info('drained', { clean, left: active.count });
      await sendFinalSnapshot(metrics);
      process.exit(clean ? 0 : 1);
    })());

  process.on('message', (msg: unknown) => {
    if (!isPrimaryToWorker(msg)) return;
    if (msg.type === 'bridge:drain') void shutdown('primary asked');
    else if (msg.type === 'bridge:metrics-req') {
      const { id } = msg;
      metrics.snapshot().then(
        (snapshot) => send({ type: 'bridge:metrics', id, metrics: snapshot }),
        (err: unknown) => log.error('metrics snapshot failed', { err }),
      );
    }
  });
  // Under systemd's default KillMode=control-group the signal reaches every process at once.
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  link.start();
  // Take traffic only once we can publish: a replacement worker that listened at once would
  // answer 503 for the first tens of ms while its siblings could have served. Bounded, so that
  // with the broker down partners still get fast 503s rather than refused connections.
  try {
    await once(link, 'channel', { signal: AbortSignal.timeout(BROKER_WAIT_BEFORE_LISTEN_MS) });
  } catch {
    log.warn('broker not reachable yet; listening anyway (requests get 503 until it is)');
  }
  const { host } = splitHostPort(config.listen);
  try {
    await server.listen(host, port);
  } catch (err) {
    send({ type: 'bridge:listen-failed', detail: (err as Error).message });
    process.exit(1);
  }
  listening = true;
  log.info('listening', { host, port });
  report();
  setInterval(report, WORKER_HEARTBEAT_MS).unref();
}

process.on('disconnect', () => {
  // The primary is gone (killed): nobody supervises us or serves /readyz; stop.
  log.warn('primary disconnected; exiting');
  process.exit(1);
});

process.once('message', (msg: unknown) => {
  if (!isPrimaryToWorker(msg) || msg.type !== 'bridge:start') {
    log.fatal('first IPC message was not bridge:start');
    process.exit(1);
  }
  start(msg.config, msg.slot, msg.port, msg.allowFallback).catch((err: unknown) => {
    log.fatal('worker failed to start', { err });
    process.exit(1);
  });
});
send({ type: 'bridge:hello' });
