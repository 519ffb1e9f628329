/**
 * A RabbitMQ node of the test's own, for tests that alarm, stop, kill, freeze or reconfigure a
 * broker: its own node name, ports, data directory and Erlang cookie, started from Debian's
 * rabbitmq-server package and stopped by its PID. The shared broker on 5672 is never touched.
 * Needs the rabbitmq-server package (.ci/run installs it) and takes about 4 s to boot.
 * cluster.ts starts three of them with one cookie and joins them.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { alive, stopPid } from './pids.js';
import { waitUntil } from './poll.js';
import { freePort } from './free-port.js';

const execFileAsync = promisify(execFile);

/** Where Debian's rabbitmq-server package keeps the scripts that do not switch user. */
const RABBITMQ_BIN = '/usr/lib/rabbitmq/bin';

export interface PrivateBroker {
  readonly node: string;
  readonly port: number;
  /** `amqp://guest:guest@127.0.0.1:<port>/` */
  readonly url: string;
  /** Its log directory (gone after `stop()`: copy what a failure report needs before). */
  readonly logDir: string;
  /** The OS PID of its Erlang VM (a new one after `restart()`). */
  readonly pid: number;
  /** rabbitmqctl against this node only. */
  ctl(...args: string[]): Promise<string>;
  /**
   * Boots the node again on the same ports, data directory and cookie, after it died (e.g. a
   * `kill -9` of `pid`); resolves once it is up, with its new PID. Rejects if the old VM still runs.
   */
  restart(): Promise<number>;
  /**
   * Stops the node by PID (SIGTERM: RabbitMQ shuts down gracefully; SIGKILL after 20 s) and keeps
   * its directory, for `restart()`; resolves true when it went by itself.
   */
  halt(): Promise<boolean>;
  /** Stops it by PID (SIGTERM, SIGKILL after 20 s) and deletes its directory; idempotent. */
  stop(): Promise<void>;
}

export interface PrivateBrokerOptions {
  /** The Erlang cookie (default: one of its own); nodes that form a cluster share one. */
  readonly cookie?: string;
}

/** A fresh Erlang cookie. */
export function newCookie(): string {
  return `BRIDGETEST${randomUUID().replaceAll('-', '').toUpperCase()}`;
}

export async function startPrivateBroker(
  label: string,
  options: PrivateBrokerOptions = {},
): Promise<PrivateBroker> {
  if (!existsSync(path.join(RABBITMQ_BIN, 'rabbitmq-server')))
    throw new Error(`no ${RABBITMQ_BIN}/rabbitmq-server: install the rabbitmq-server package`);
  const dir = mkdtempSync(path.join(tmpdir(), `private-broker-${label}-`));
  const node = `bridgetest-${randomUUID().slice(0, 8)}@localhost`;
  const [port, distPort] = [await freePort(), await freePort()];
  const cookie = path.join(dir, '.erlang.cookie');
  writeFileSync(cookie, options.cookie ?? newCookie());
  chmodSync(cookie, 0o400);
  writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
  writeFileSync(
    path.join(dir, 'rabbitmq.conf'),
    `listeners.tcp.default = ${port}\nloopback_users = none\n`,
  );
  const env = {
    ...process.env,
    HOME: dir, // the node and its rabbitmqctl share the cookie in it
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq'),
    RABBITMQ_PID_FILE: path.join(dir, 'pid'),
  };
  const ctl = async (...args: string[]): Promise<string> => {
    const { stdout } = await execFileAsync(
      path.join(RABBITMQ_BIN, 'rabbitmqctl'),
      ['-n', node, ...args],
      { env, timeout: 60_000 },
    );
    return stdout;
  };
  let server = spawn(path.join(RABBITMQ_BIN, 'rabbitmq-server'), [], {
    env,
    stdio: ['ignore', 'ignore', 'ignore'],
    detached: false,
  });
  let pid = -1;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      const target = pid > 0 ? pid : (server.pid ?? -1);
      // The Erlang VM is not our child (rabbitmq-server execs it): no exit event to await.
      if (target > 0) await stopPid(target, 20_000);
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    })());
  const boot = async (): Promise<number> => {
    // await_startup fails at once while the node has not registered with epmd yet: retry that.
    const state = await waitUntil(
      `private node ${node} to boot`,
      async () => {
        if (server.exitCode !== null) return 'exited';
        await ctl('await_startup', '--timeout', '60');
        return 'up';
      },
      () => true,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    if (state === 'exited')
      throw new Error(`rabbitmq-server exited with ${String(server.exitCode)}`);
    const booted = Number(readFileSync(path.join(dir, 'pid'), 'utf8').trim());
    if (!(booted > 0)) throw new Error('the private node wrote no PID');
    return booted;
  };
  try {
    pid = await boot();
  } catch (err) {
    await stop();
    throw new Error(
      `private RabbitMQ node ${node} did not start: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  const restart = async (): Promise<number> => {
    if (stopped !== undefined) throw new Error(`private node ${node} was stopped`);
    if (alive(pid)) throw new Error(`private node ${node} still runs as PID ${pid}`);
    rmSync(path.join(dir, 'pid'), { force: true });
    server = spawn(path.join(RABBITMQ_BIN, 'rabbitmq-server'), [], {
      env,
      stdio: ['ignore', 'ignore', 'ignore'],
      detached: false,
    });
    pid = -1;
    pid = await boot();
    return pid;
  };
  const halt = async (): Promise<boolean> => {
    if (stopped !== undefined) throw new Error(`private node ${node} was stopped`);
    // The Erlang VM treats SIGTERM as init:stop(): RabbitMQ's own orderly shutdown.
    const byItself = await stopPid(pid, 20_000);
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    return byItself;
  };
  return {
    node,
    port,
    url: `amqp://guest:guest@127.0.0.1:${port}/`,
    logDir: path.join(dir, 'log'),
    get pid() {
      return pid;
    },
    ctl,
    restart,
    halt,
    stop,
  };
}
