/**
 * What the bench needs from the machine: Debian packages (installed when missing, saying so),
 * the descriptor limit it can raise to, the broker's PID (read-only), and the machine description
 * written into the report.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './harness.js';

/** Debian's interpreter: python3-celery and friends are importable there only. */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/** The Debian packages the peers and the load generator come from. */
const DEBIAN_PACKAGES = [
  'wrk',
  'python3-celery',
  'python3-tornado',
  'python3-flask',
  'python3-gevent',
  'gunicorn',
] as const;

function sh(cmd: string, argv: readonly string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, argv, { encoding: 'utf8' });
  return { ok: r.status === 0, out: (r.stdout ?? '').trim() };
}

function debianVersion(pkg: string): string | undefined {
  const r = sh('dpkg-query', ['-W', '-f=${Status}\t${Version}', pkg]);
  const [status, version] = r.out.split('\t');
  return r.ok && status === 'install ok installed' ? version : undefined;
}

/**
 * Installs the missing Debian packages (all the bench uses, or `only` those) with apt-get, saying
 * what it does; throws if it cannot.
 */
export function ensureDebianPackages(
  log: (line: string) => void,
  only: ReadonlyArray<(typeof DEBIAN_PACKAGES)[number]> = DEBIAN_PACKAGES,
): void {
  const missing = only.filter((p) => debianVersion(p) === undefined);
  if (missing.length === 0) return;
  log(`bench: installing missing Debian packages: ${missing.join(' ')} (apt-get install -y)`);
  if (process.getuid?.() !== 0) {
    throw new Error(
      `not root: run  sudo apt-get install -y ${missing.join(' ')}  and start the bench again`,
    );
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  if (update.status !== 0) throw new Error('apt-get update failed');
  const install = spawnSync('apt-get', ['install', '-y', '-qq', ...missing], {
    stdio: 'inherit',
    env,
  });
  if (install.status !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed`);
  log(`bench: installed ${missing.join(' ')}`);
}

/** The highest `ulimit -n` a child can get: 65536, or the hard limit when that is lower. */
export function raisableNofile(): number {
  const r = sh('bash', [
    '-c',
    'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ulimit -n',
  ]);
  const n = Number(r.out);
  return Number.isFinite(n) ? n : 1024;
}

/** The RabbitMQ node's PID (beam.smp), for reading its CPU time; never signalled. */
export function brokerPid(): number | undefined {
  const r = sh('pgrep', ['-f', 'beam.smp']);
  const pids = r.out
    .split('\n')
    .map(Number)
    .filter((n) => n > 0);
  return pids[0];
}

/** Descriptors the broker has open, and its soft limit, from /proc (read-only). */
export function brokerDescriptors(pid: number): { open: number; limit: number } | undefined {
  try {
    const limit = Number(
      /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1] ?? NaN,
    );
    return { open: readdirSync(`/proc/${pid}/fd`).length, limit };
  } catch {
    return undefined;
  }
}

function npmVersion(name: string): string {
  try {
    const pkg: unknown = JSON.parse(
      readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8'),
    );
    return typeof pkg === 'object' &&
      pkg !== null &&
      'version' in pkg &&
      typeof pkg.version === 'string'
      ? pkg.version
      : '?';
  } catch {
    return '?';
  }
}

export interface Machine {
  readonly host: string;
  readonly lines: readonly string[];
}

/** Cores, memory and versions of everything measured, as report lines. */
export function describeMachine(nofile: number): Machine {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
  const osName =
    /PRETTY_NAME="([^"]*)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os.type();
  const commit = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).out || '?';
  const dirty =
    sh('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no']).out !== ''
      ? ' (with uncommitted changes)'
      : '';
  const python = sh(SYSTEM_PYTHON, ['--version']).out.replace('Python ', '');
  const deb = (p: string): string => debianVersion(p) ?? 'not installed';
  return {
    host: os.hostname(),
    lines: [
      `host \`${os.hostname()}\`: ${os.availableParallelism()} cores (${cpuModel}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB memory`,
      `${osName}, Linux ${os.release()}; \`ulimit -n\` for the runs: ${nofile}`,
      `bridge commit ${commit}${dirty}; Node.js ${process.version}; uWebSockets.js ${npmVersion('uWebSockets.js')}, amqplib ${npmVersion('amqplib')}, fastify ${npmVersion('fastify')}`,
      `RabbitMQ ${deb('rabbitmq-server')} (Erlang ${deb('erlang-base')}), on the same host`,
      `Python ${python}: celery ${deb('python3-celery')}, kombu ${deb('python3-kombu')}, py-amqp ${deb('python3-amqp')}, tornado ${deb('python3-tornado')}, flask ${deb('python3-flask')}, gevent ${deb('python3-gevent')}, gunicorn ${deb('gunicorn')}`,
      `wrk ${deb('wrk')}, 2 threads, on the same host`,
    ],
  };
}
