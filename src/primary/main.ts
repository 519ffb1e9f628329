#!/usr/bin/env node
/**
 * Primary entry and the `xml-amqp-bridge` bin: parses the command line, validates the config,
 * checks the port and uWS, forks the workers, serves the admin port and handles signals.
 */
import { fileURLToPath } from 'node:url';
import process from 'node:process';
import {
  configPathFromEnv,
  fallbackAllowedByEnv,
  fallbackForcedByEnv,
  loadConfig,
  uwsBuildFromEnv,
  notifySocketFromEnv,
  resolveWorkerCount,
  splitHostPort,
} from '../shared/config.js';
import type { Config } from '../shared/config-schema.js';
import { ConfigError } from '../shared/errors.js';
import { createLogger } from '../shared/log.js';
import { redactUrl } from '../shared/redact.js';
import { createAdminServer, listenAdmin } from './admin-server.js';
import { parseArgs, USAGE } from './cli.js';
import { partnerWarnings } from './partner-warnings.js';
import { preflightPort } from './port-preflight.js';
import { readiness } from './readiness.js';
import { Supervisor } from './supervisor.js';
import { reloadWorkers } from './reload.js';
import { MetricsAggregator } from './metrics-aggregator.js';
import { SystemdNotifier } from './systemd-notify.js';
import { Registry } from 'prom-client';
import { describeRefusals, loadNativeUws } from '../shared/uws.js';
import { checkTlsFiles, type TlsSection } from '../shared/tls-files.js';
import {
  chooseRuntime,
  reloadTlsRefusal,
  tlsRefusal,
  type RuntimeChoice,
} from './runtime-choice.js';
import { buildInfo, versionLine } from '../shared/build-info.js';

let log = createLogger({ role: 'primary' });
/** A scrape waits this long for workers; a hung one is answered from its last values. */
const METRICS_DEADLINE_MS = 2000;
const WORKER_SCRIPT = fileURLToPath(new URL('../worker/main.js', import.meta.url));

/** The uWebSockets.js build this config runs on here, or why none can (config and environment). */
function runtimeFor(config: Config): RuntimeChoice {
  return chooseRuntime(
    config,
    config.allowUwsFallback || fallbackAllowedByEnv(),
    fallbackForcedByEnv(),
  );
}

/**
 * Logs the certificate the partner port presents and exports its expiry; without `tls` the
 * expiry series goes (a reload that moved to plain HTTP on another port). The files were
 * checked when the config loaded; this reads the certificate once more for its details.
 */
function announceCertificate(tls: TlsSection | undefined, aggregator: MetricsAggregator): void {
  const served = tls === undefined ? undefined : checkTlsFiles(tls, '/').served;
  aggregator.certificateExpiry(served);
  if (tls === undefined) return;
  log.info('serving TLS', {
    certFile: tls.certFile,
    clientCert: tls.clientCert,
    ...(served === undefined
      ? {}
      : {
          subject: served.subject,
          issuer: served.issuer,
          notAfter: new Date(served.notAfter * 1000).toISOString(),
          fingerprint256: served.fingerprint256,
        }),
  });
}

function printProblems(err: ConfigError, write: (line: string) => void): void {
  for (const p of err.problems) write(`${p.path}: ${p.message}\n`);
}

async function checkConfig(file: string, broker: boolean): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${file}: ${err.problems.length} problem(s)\n`);
    printProblems(err, (line) => process.stderr.write(`  ${line}`));
    return 2;
  }
  const choice = runtimeFor(config);
  if (!choice.ok) process.stderr.write(`${file}: warning: ${choice.message}\n`);
  const cannotTls = choice.ok ? tlsRefusal(config, choice.runtime) : undefined;
  if (cannotTls !== undefined) {
    process.stderr.write(`${file}: cannot be served on this host\n  tls: ${cannotTls}\n`);
    return 2;
  }
  process.stdout.write(
    `${file}: OK (${config.routes.length} routes, ${resolveWorkerCount(config)} workers)\n`,
  );
  if (!broker) return 0;
  // Loaded only here: the running primary never talks AMQP (amqplib alone is 9 MB of RSS).
  const { checkAgainstBroker } = await import('./broker-check.js');
  const check = await checkAgainstBroker(config);
  if (!check.reachable) {
    process.stderr.write(`${file}: the broker did not answer: ${check.detail}\n`);
    return 3;
  }
  if (check.disagreements.length > 0) {
    process.stderr.write(
      `${file}: the broker at ${check.url} disagrees (${check.disagreements.length}):\n`,
    );
    for (const d of check.disagreements) process.stderr.write(`  ${d.path}: ${d.message}\n`);
    return 3;
  }
  process.stdout.write(
    `${file}: the broker at ${check.url} has every exchange and queue it names (${check.checked} checked; the rest are declared by the bridge)\n`,
  );
  return 0;
}

async function run(file: string, takeover: boolean): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    log.fatal('invalid config', { file, problems: err.problems });
    process.exit(2);
  }
  log = createLogger({ role: 'primary' }, config.logging.level);
  const notifier = new SystemdNotifier(notifySocketFromEnv(), (err) =>
    log.warn('systemd-notify failed', { err }),
  );
  const choice = runtimeFor(config);
  if (!choice.ok) {
    log.fatal(choice.message, { node: process.version, abi: process.versions.modules });
    process.exit(1);
  }
  const { runtime } = choice;
  const native = runtime.build.native;
  const cannotTls = tlsRefusal(config, runtime);
  if (cannotTls !== undefined) {
    log.fatal(`tls: ${cannotTls}`, { file });
    process.exit(2);
  }
  log.info('uWebSockets.js build', {
    uws: runtime.build.package,
    native,
    tls: runtime.build.ssl,
    node: process.version,
    ...(runtime.refusals.length > 0 ? { notLoaded: describeRefusals(runtime.refusals) } : {}),
  });

  const { host, port: wantedPort } = splitHostPort(config.listen);
  let port = wantedPort;
  if (takeover) {
    if (wantedPort === 0) {
      log.fatal('--takeover needs a fixed port to share with the running instance');
      process.exit(2);
    }
    log.warn('takeover: sharing the port with the instance being replaced', { port });
  } else {
    try {
      port = await preflightPort(host, wantedPort);
    } catch (err) {
      log.fatal('cannot take the partner port', { err });
      process.exit(1);
    }
  }

  // The JS fallback binds exclusively (no SO_REUSEPORT): only one worker can listen.
  const count = native ? resolveWorkerCount(config) : 1;
  if (!native)
    log.warn('running on the uWebSockets.js JS fallback (development only): one worker, slow', {});
  for (const w of partnerWarnings(config, count)) log.warn(w.msg, w.fields);
  const supervisor = new Supervisor(
    { workerScript: WORKER_SCRIPT, count, uws: runtime.build.id },
    config,
    port,
  );
  const aggregator = new MetricsAggregator(
    () => supervisor.workers.length,
    buildInfo(runtime.build),
  );
  announceCertificate(config.tls, aggregator);
  const admin = createAdminServer({
    readiness: () => readiness(supervisor.views),
    metrics: async (openMetrics) => {
      const contentType = openMetrics
        ? Registry.OPENMETRICS_CONTENT_TYPE
        : Registry.PROMETHEUS_CONTENT_TYPE;
      return {
        contentType,
        body: await aggregator.collect(supervisor.workers, METRICS_DEADLINE_MS, contentType),
      };
    },
  });
  const adminAddr = splitHostPort(config.admin);
  let adminPort: number;
  try {
    adminPort = await listenAdmin(admin, adminAddr.host, adminAddr.port);
  } catch (err) {
    log.fatal('cannot listen on the admin port', { err });
    process.exit(1);
  }

  supervisor.on('worker-exit', (exit) => {
    if (exit.expected) log.info('worker exited', { ...exit });
    else log.warn('worker exited', { ...exit });
  });
  supervisor.on('worker-hung', (hung) =>
    log.error('worker hung (no state report); killed, to be reforked', { ...hung }),
  );
  supervisor.on('refork', (refork) => {
    log.warn('reforking worker', { ...refork });
    aggregator.workerRestarted();
  });
  supervisor.on('refork-failed', (failure) => log.error('refork failed', { ...failure }));
  supervisor.on('crash-loop', () => {
    log.fatal('workers are crash-looping (5 deaths in 30 s); exiting so systemd restarts us');
    supervisor.killAll();
    process.exit(1);
  });

  let stopping = false;
  let reloading = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    notifier.notify('STOPPING=1');
    log.info('stopping', { signal });
    const clean = await supervisor.stop(config.shutdownTimeoutMs + 2000);
    admin.close();
    log.info('stopped', { clean });
    process.exit(clean ? 0 : 1);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => {
    if (stopping) return;
    if (reloading) {
      log.warn('reload already in progress; SIGHUP ignored');
      return;
    }
    void (async () => {
      let next: Config;
      try {
        next = loadConfig(file);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        log.error('reload refused: invalid config; keeping the running one', {
          file,
          problems: err.problems,
        });
        aggregator.configLoaded(false);
        return;
      }
      const cannot = tlsRefusal(next, runtime) ?? reloadTlsRefusal(config, next);
      if (cannot !== undefined) {
        log.error('reload refused; keeping the running config', {
          file,
          problem: `tls: ${cannot}`,
        });
        aggregator.configLoaded(false);
        return;
      }
      reloading = true;
      notifier.notify('RELOADING=1', 'reloading');
      announced = false;
      try {
        const nextHostPort = splitHostPort(next.listen);
        const nextPort =
          next.listen === config.listen
            ? port
            : await preflightPort(nextHostPort.host, nextHostPort.port);
        if (resolveWorkerCount(next) !== count) {
          log.warn('workers count changes need a restart; keeping the current count', { count });
        }
        if (next.admin !== config.admin) log.warn('admin address changes need a restart');
        for (const w of partnerWarnings(next, count)) log.warn(w.msg, w.fields);
        log.info('reloading: new workers start beside the running ones', {
          file,
          reloadTimeoutMs: config.reloadTimeoutMs,
        });
        const result = await reloadWorkers(supervisor, next, nextPort, config.reloadTimeoutMs);
        if (result.ok) {
          config = next;
          port = nextPort;
          log.info('reloaded', { port });
          announceCertificate(next.tls, aggregator);
        } else {
          log.error(
            'reload abandoned: the new workers were not ready; the running ones keep the previous config',
            { file, reasons: result.reasons },
          );
        }
        aggregator.configLoaded(result.ok);
      } catch (err) {
        log.error('reload failed; the running workers keep the previous config', { err });
        aggregator.configLoaded(false);
      } finally {
        reloading = false;
        announceWhenReady();
      }
    })();
  });

  // READY=1 only once /readyz would say 200 (every worker listening and connected).
  let announced = false;
  const announceWhenReady = (): void => {
    if (announced || reloading || stopping || !readiness(supervisor.views).ready) return;
    announced = true;
    notifier.notify('READY=1', `serving on ${host}:${port} with ${count} workers`);
  };
  supervisor.on('worker-status', announceWhenReady);

  try {
    await supervisor.start();
  } catch (err) {
    log.fatal('workers failed to start', { err });
    supervisor.killAll();
    process.exit(1);
  }
  log.info('ready to serve', {
    listen: `${host}:${port}`,
    scheme: config.tls === undefined ? 'http' : 'https',
    uws: runtime.build.package,
    port,
    admin: `${adminAddr.host}:${adminPort}`,
    adminPort,
    workers: count,
    amqp: config.amqp.urls.map(redactUrl),
  });
}

const command = parseArgs(process.argv.slice(2));
switch (command.kind) {
  case 'help':
    process.stdout.write(USAGE);
    break;
  case 'version': {
    const { loaded, refusals } = loadNativeUws(uwsBuildFromEnv());
    process.stdout.write(`${versionLine(buildInfo(loaded?.build), describeRefusals(refusals))}\n`);
    break;
  }
  case 'usage-error':
    process.stderr.write(`${command.message}\n\n${USAGE}`);
    process.exitCode = 2;
    break;
  case 'check-config':
    checkConfig(command.configFile, command.broker).then(
      (code) => {
        process.exitCode = code;
      },
      (err: unknown) => {
        process.stderr.write(
          `check-config failed: ${err instanceof Error ? err.message : String(err)}\n`,
        );
        process.exitCode = 1;
      },
    );
    break;
  case 'run': {
    const file = command.configFile ?? configPathFromEnv();
    if (file === undefined) {
      process.stderr.write(`no config: pass --config FILE or set BRIDGE_CONFIG\n\n${USAGE}`);
      process.exitCode = 2;
      break;
    }
    run(file, command.takeover).catch((err: unknown) => {
      log.fatal('primary crashed', { err });
      process.exit(1);
    });
    break;
  }
  default: {
    const unknownCommand: never = command;
    throw new TypeError(`unhandled command ${JSON.stringify(unknownCommand)}`);
  }
}
