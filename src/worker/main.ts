/**
 * Worker entry (forked by the primary): waits for the validated config over IPC, connects to the
 * broker, listens with uWS on the shared port, reports its state, drains on request.
 */
import { once } from 'node:events';
import process from 'node:process';
import { splitHostPort } from '../shared/host-port.js';
import type { Config } from '../shared/config-schema.js';
import {
  isPrimaryToWorker,
  WORKER_HEARTBEAT_MS,
  type WorkerStatus,
  type WorkerToPrimary,
} from '../shared/ipc.js';
import { createLogger } from '../shared/log.js';
import { redactUrl } from '../shared/redact.js';
import { loadChosenUws, type UwsLoad } from '../shared/uws.js';
import { withCeleryTopology } from './amqp/celery.js';
import { BrokerLink } from './amqp/connection.js';
import { Publisher } from './amqp/publisher.js';
import { ReplyRouter } from './amqp/replies.js';
import { accessLog } from './access-log.js';
import { Admission } from './admission.js';
import { RequestPipeline } from './http/pipeline.js';
import { HttpServer } from './http/server.js';
import { WorkerMetrics } from './metrics.js';
import { answerMetricsRequests, sendFinalSnapshot } from './metrics-ipc.js';
import type { RecordObserver } from './request.js';
import { PartnerGate } from './partners/gate.js';
import { RouteTable } from './routes.js';
import { drain } from './shutdown.js';

let log = createLogger({ role: 'worker' });

const BROKER_WAIT_BEFORE_LISTEN_MS = 5000;
/** How long a draining worker waits with no new request before it closes its connections. */
const DRAIN_QUIET_MS = 100;
/** Below the 4 KiB that pipe writes keep atomic, so workers' lines never interleave. */
const DEBUG_BODY_BYTES = 3072;

function send(msg: WorkerToPrimary): void {
  if (process.connected) process.send?.(msg);
}

async function start(
  config: Config,
  slot: number,
  workers: number,
  port: number,
  uwsLoad: UwsLoad,
  listenWhenConnected: boolean,
): Promise<void> {
  log = createLogger({ role: 'worker', worker: slot }, config.logging.level);
  const loaded = loadChosenUws(uwsLoad);
  if (loaded === undefined) {
    send({
      type: 'bridge:fatal',
      detail: `the uWebSockets.js build the primary chose (${uwsLoad}) did not load in the worker`,
    });
    process.exit(78);
  }
  const { uws } = loaded;
  const { native } = loaded.build;

  const link = new BrokerLink({
    amqp: config.amqp,
    topology: withCeleryTopology(config.topology, config.routes),
    connectionName: `xml-amqp-bridge worker ${slot} pid ${process.pid}`,
    firstUrl: slot,
    // A replaced channel stays open until every confirm and reply still due on it has come.
    retireMs:
      config.amqp.confirmTimeoutMs +
      Math.max(0, ...config.routes.map((r) => (r.mode === 'publish' ? 0 : r.timeoutMs))) +
      1000,
  });
  const publisher = new Publisher(link, config.amqp);
  const replies = new ReplyRouter(link);
  const admission = new Admission(link, publisher, {
    ...config.amqp,
    maxUploads: config.limits.maxUploads,
  });
  const routes = new RouteTable(config, new PartnerGate(config, workers));
  const metrics = new WorkerMetrics({
    inFlight: () => admission.active,
    connected: () => link.ready,
    blocked: () => link.state === 'blocked',
    stalled: () => publisher.stalled,
    node: () => link.node,
  });
  metrics.declareRoutes(routes.routes.map((r) => r.name));
  metrics.declarePartners(config.partners.map((p) => p.id));
  replies.on('late', (route) => metrics.lateReply(route));
  let listening = false;
  let draining = false;
  let problem: string | undefined;

  const report = (): void => {
    const status: WorkerStatus = {
      listening,
      amqp: link.state,
      draining,
      stalled: publisher.stalled,
      ...(problem === undefined ? {} : { problem }),
    };
    send({ type: 'bridge:status', status });
  };
  link.on('connected', (node, reconnect) => {
    log.info('broker connected', { node, reconnect });
    if (reconnect) metrics.reconnected();
  });
  link.on('state', (state) => {
    log.info('broker state', { state });
    report();
  });
  link.on('problem', ({ what, err }) => {
    log.warn(what, { err });
    problem = redactUrl(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    report();
  });
  link.on('channel', () => {
    problem = undefined;
  });
  link.on('channel-closed', (info) => log.warn('confirm channel closed', { info }));
  link.on('moved-home', (node) =>
    log.info('broker connection moved back to its first node; the old one closes when drained', {
      node,
    }),
  );
  link.on('topology-reasserted', () =>
    log.info('topology declared again after a publish came back unroutable'),
  );
  publisher.on('replace', (exchange, routingKey) => {
    log.warn('confirm channel replaced: a publish was nacked before any was confirmed on it', {
      exchange,
      routingKey,
    });
    metrics.channelReplaced();
  });
  publisher.on('stall', (stalled) => {
    if (stalled)
      log.warn('broker stalled: publishes wait and nothing was confirmed; answering 503', {
        stallMs: config.amqp.stallMs,
        waiting: publisher.unconfirmed,
      });
    else log.info('broker confirms again');
    report();
  });

  const logAccess = accessLog(log, config.logging);
  const records: RecordObserver = {
    published: (r) => metrics.published(r),
    ended: (r) => {
      metrics.ended(r);
      logAccess(r);
    },
  };
  const pipeline = new RequestPipeline({
    routes,
    limits: config.limits,
    admission,
    modes: { publisher, replies },
    isDraining: () => draining,
    nativeUws: native,
    records,
    onBug: (err, requestId) => log.error('bug while handling a request', { err, requestId }),
    onBody: config.logging.debugBodies
      ? (requestId, route, received) =>
          log.debug('request body', {
            requestId,
            route,
            body: received.body.toString('utf8', 0, DEBUG_BODY_BYTES),
          })
      : undefined,
  });
  const server = new HttpServer(uws, config.tls, pipeline.handle, (err) =>
    log.error('bug while handling a request', { err }),
  );

  let drained: Promise<void> | undefined;
  const shutdown = (why: string): Promise<void> =>
    (drained ??= (async () => {
      log.info('draining', { why, inFlight: admission.active });
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
          whenIdle: () => admission.quiet(DRAIN_QUIET_MS),
          closeConnections: () => server.close(),
          closeBroker: () => {
            replies.close();
            publisher.close();
            pipeline.close();
            return link.close();
          },
          onStepError: (step, err) => log.error('drain step failed', { step, err }),
        },
        config.shutdownTimeoutMs,
      );
      log.info('drained', { clean, left: admission.active });
      await sendFinalSnapshot(metrics, log);
      process.exit(clean ? 0 : 1);
    })());

  process.on('message', (msg: unknown) => {
    if (isPrimaryToWorker(msg) && msg.type === 'bridge:drain') void shutdown('primary asked');
  });
  answerMetricsRequests(metrics, log);
  // Under systemd's default KillMode=control-group the signal reaches every process at once.
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  link.start();
  // Take traffic only once we can publish: a replacement worker that listened at once would
  // answer 503 for the first tens of ms while its siblings could have served. Bounded, so that
  // with the broker down partners still get fast 503s rather than refused connections.
  if (listenWhenConnected) await once(link, 'channel');
  else {
    try {
      await once(link, 'channel', { signal: AbortSignal.timeout(BROKER_WAIT_BEFORE_LISTEN_MS) });
    } catch {
      log.warn('broker not reachable yet; listening anyway (requests get 503 until it is)');
    }
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
  start(msg.config, msg.slot, msg.workers, msg.port, msg.uws, msg.listenWhenConnected).catch(
    (err: unknown) => {
      log.fatal('worker failed to start', { err });
      process.exit(1);
    },
  );
});
send({ type: 'bridge:hello' });
