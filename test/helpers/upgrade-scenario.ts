/** The upgrade scenario of test/e2e/upgrade.test.ts as a process run inside netns.ts's namespace; prints JSON lines. Import only its types: loading it runs it. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { baseConfig, startBridge, type LogLine } from './bridge.js';
import { asText, spawnChild } from './child.js';
import { startLoad, type Attempt, type LoadResult } from './load.js';
import { tcpToUnix } from './netns.js';
import { stopPid } from './pids.js';
import { upgradeArgv } from './upgrade-sh.js';

export interface ScenarioArgs {
  readonly queue: string;
  /** Unix socket leading to the shared RabbitMQ (see netns.ts). */
  readonly amqpSocket: string;
  /** A directory of the test's, for the credential, the config and the new instance's log. */
  readonly dir: string;
  readonly idPrefix: string;
  /** The partner port both instances share, and each one's admin port (fixed: the namespace is ours). */
  readonly port: number;
  readonly adminOld: number;
  readonly adminNew: number;
  readonly shutdownTimeoutMs: number;
  /** Requests every load must have settled before the upgrade starts, and after the old instance exited. */
  readonly settleBefore: number;
  readonly settleAfter: number;
}

export interface LoadReport {
  readonly kind: string;
  readonly statuses: LoadResult['statuses'];
  readonly errors: LoadResult['errors'];
  readonly okIds: readonly string[];
  readonly sentIds: readonly string[];
  /** Requests issued after the old instance had exited (served by the new one alone). */
  readonly afterOldExit: number;
  /** `ECONNRESET`, `503 …problem detail…` for the first failures. */
  readonly failures: readonly string[];
}

export interface ScenarioResult {
  readonly type: 'result';
  /** /proc/sys/net/ipv4/tcp_migrate_req as the namespace had it. */
  readonly tcpMigrateReq: string;
  readonly upgrade: {
    readonly code: number | null;
    readonly stdout: string;
    readonly stderr: string;
    readonly ms: number;
  };
  readonly oldExit: { readonly code: number | null; readonly signal: string | null };
  readonly newPid: number | undefined;
  readonly newStopped: boolean;
  readonly loads: readonly LoadReport[];
  /** Every log line of both instances (old: captured stdout; new: its log file), as text. */
  readonly logText: string;
}

const is2xx = (a: Attempt): boolean => a.status !== undefined && a.status >= 200 && a.status < 300;

function describeFailure(a: Attempt): string {
  if (a.error !== undefined) return a.error;
  return `${String(a.status)} ${(a.body ?? '').slice(0, 160)}`;
}

/**
 * Resolves once the line is handed to the pipe. A write larger than the pipe's buffer (the result
 * line carries both bridges' logs and every id) finishes later, and process.exit() before then
 * cuts it: the test then saw exit code 0 and no result (seen once in CI).
 */
function emit(line: unknown): Promise<void> {
  return new Promise((resolve) =>
    process.stdout.write(`${JSON.stringify(line)}\n`, () => resolve()),
  );
}

function parseArgs(raw: string | undefined): ScenarioArgs {
  const value: unknown = JSON.parse(raw ?? 'null');
  if (typeof value !== 'object' || value === null)
    throw new TypeError('usage: upgrade-scenario.js JSON');
  return value as ScenarioArgs; // written by upgrade.test.ts from this very interface
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv[2]);
  const tcpMigrateReq = readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim();
  const relay = await tcpToUnix(5672, args.amqpSocket);
  const credentials = path.join(args.dir, 'credentials');
  mkdirSync(credentials, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(credentials, 'amqp-url'), 'amqp://guest:guest@127.0.0.1:5672/\n', {
    mode: 0o600,
  });
  const env = { CREDENTIALS_DIRECTORY: credentials };
  const newLog = path.join(args.dir, 'new-instance.log');

  const old = await startBridge(
    baseConfig([{ path: '/a', mode: 'publish', exchange: '', routingKey: args.queue }], {
      listen: `127.0.0.1:${args.port}`,
      admin: `127.0.0.1:${args.adminOld}`,
      shutdownTimeoutMs: args.shutdownTimeoutMs,
      amqp: { urls: ['file:amqp-url'], heartbeatSeconds: 5, reconnectSeconds: 0.5 },
    }),
    { env },
  );
  let newPid: number | undefined;
  let newStopped = false;
  try {
    const url = `http://127.0.0.1:${args.port}/a`;
    const common = {
      url,
      concurrency: 4,
      maxRequests: 20_000,
      maxDurationMs: 90_000,
      requestTimeoutMs: 20_000,
    };
    const loads = [
      {
        kind: 'new connection per request',
        run: startLoad({ ...common, keepAlive: false, idPrefix: `${args.idPrefix}-fresh` }),
      },
      {
        kind: 'keep-alive',
        run: startLoad({ ...common, keepAlive: true, idPrefix: `${args.idPrefix}-ka` }),
      },
    ];
    await Promise.all(loads.map((l) => l.run.whenSettled(args.settleBefore)));

    const startedAt = performance.now();
    const upgrade = spawnChild(
      'bash',
      upgradeArgv(old.pid, old.configFile, `127.0.0.1:${args.adminNew}`, [
        '--log',
        newLog,
        '--timeout',
        '60',
      ]),
      {
        name: 'upgrade.sh',
        env: { ...process.env, ...env },
        lineStreams: ['stderr'],
        parse: asText,
        onLine: (line) => {
          const started = /started the new release as pid (\d+)/.exec(line);
          if (started && newPid === undefined) {
            newPid = Number(started[1]);
            void emit({ type: 'new-pid', pid: newPid });
          }
        },
      },
    );
    const { code } = await upgrade.closed;
    const stdout = upgrade.stdout();
    const stderr = upgrade.stderr();
    const upgradeMs = Math.round(performance.now() - startedAt);
    const oldExit = await old.exited;
    const oldExitedAt = performance.now();

    await Promise.all(
      loads.map((l) => l.run.whenSettled(l.run.attempts.length + args.settleAfter)),
    );
    for (const l of loads) l.run.stop();
    const reports: LoadReport[] = [];
    for (const l of loads) {
      const r = await l.run.done;
      reports.push({
        kind: l.kind,
        statuses: r.statuses,
        errors: r.errors,
        okIds: r.okIds,
        sentIds: r.sentIds,
        afterOldExit: r.attempts.filter((a) => a.startedAt > oldExitedAt).length,
        failures: r.attempts
          .filter((a) => !is2xx(a))
          .slice(0, 20)
          .map(describeFailure),
      });
    }
    let newLogText = '';
    try {
      newLogText = readFileSync(newLog, 'utf8');
    } catch {
      newLogText = '(no log file)';
    }
    if (newPid !== undefined) newStopped = await stopPid(newPid, 20_000);
    const oldLogText = old.logs.map((l: LogLine) => JSON.stringify(l)).join('\n');
    const result: ScenarioResult = {
      type: 'result',
      tcpMigrateReq,
      upgrade: { code, stdout, stderr, ms: upgradeMs },
      oldExit,
      newPid,
      newStopped,
      loads: reports,
      logText: `${oldLogText}\n${old.stderr()}\n${newLogText}`,
    };
    await emit(result);
  } finally {
    if (newPid !== undefined && !newStopped) await stopPid(newPid, 20_000);
    await old.stop();
    await relay.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `upgrade scenario failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
