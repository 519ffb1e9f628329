/** Runs a real Celery worker (Debian's python3-celery) on the test app in test/fixtures/celery, ready when it logs "<name>@<host> ready.". */
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from './bridge.js';
import { asText, runToExit, startChild } from './child.js';
import { uniqueName } from './broker.js';

/** Debian's interpreter: python3-celery is importable there only (another python3 may come first on PATH). */
const SYSTEM_PYTHON = '/usr/bin/python3';
/** The .py app is not compiled into dist/: it is read from the source tree. */
const CELERY_FIXTURES = path.join(PROJECT_ROOT, 'test', 'fixtures', 'celery');

export interface CeleryWorkerOptions {
  /** Queues the worker consumes; the first is the app's task_default_queue. */
  readonly queues: readonly string[];
  /** Extra environment for the tasks (e.g. BRIDGE_TEST_RECORD). */
  readonly env?: Readonly<Record<string, string>>;
  readonly readyTimeoutMs?: number;
}

export interface CeleryWorker {
  readonly child: ChildProcess;
  /** The node name, `<unique>@<host>`'s left part. */
  readonly name: string;
  /** Everything the worker printed so far (stdout and stderr interleaved as they came). */
  readonly output: () => string;
  /** Complete log lines so far. */
  readonly lines: () => string[];
  /** Resolves with the first line (past or future) matching; rejects after timeoutMs or on exit. */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (warm shutdown: running tasks finish), SIGKILL after `killAfterMs`; idempotent. */
  stop(killAfterMs?: number): Promise<void>;
}

export async function startCeleryWorker(options: CeleryWorkerOptions): Promise<CeleryWorker> {
  const name = uniqueName('celery');
  const env: Record<string, string | undefined> = {
    ...process.env,
    ...options.env,
    BRIDGE_TEST_QUEUE: options.queues.join(','),
    // Lines must reach us as they are logged; no __pycache__ left in the source tree.
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
  };
  // A pyenv/virtualenv setting must not redirect Debian's interpreter to another stdlib.
  delete env['PYTHONHOME'];
  delete env['PYTHONPATH'];
  const { child } = await startChild(
    SYSTEM_PYTHON,
    // prettier-ignore
    [
      '-m', 'celery', '-A', 'bridge_tasks', 'worker',
      '-Q', options.queues.join(','),
      '--pool', 'threads', '-c', '4',
      '--without-heartbeat', '--without-gossip', '--without-mingle',
      '-n', `${name}@%h`,
      '--loglevel', 'INFO',
    ],
    {
      name: `Celery worker ${name}`,
      cwd: CELERY_FIXTURES,
      env,
      lineStreams: ['stdout', 'stderr'],
      parse: asText,
      // SIGTERM is Celery's warm shutdown: running tasks finish first.
      killAfterMs: 15_000,
      // celery/apps/worker.py logs "<hostname> ready." once the consumer is up.
      ready: (l) => l.includes(`${name}@`) && l.trimEnd().endsWith(' ready.'),
      readyTimeoutMs: options.readyTimeoutMs ?? 30_000,
    },
  );
  return {
    child: child.process,
    name,
    output: child.output,
    lines: () => [...child.lines],
    waitForLine: child.waitForLine,
    exited: child.exited,
    stop: (killAfterMs) => child.stop(killAfterMs),
  };
}

/**
 * The instant (epoch ms, fractional) the installed Celery reads from a task's `eta`/`expires`
 * header: its own parser and aware-making, as worker/request.py applies them.
 */
export async function celeryReadsInstant(iso: string): Promise<number> {
  const script = [
    'import sys',
    'from celery.utils.time import maybe_iso8601, maybe_make_aware',
    'print(repr(maybe_make_aware(maybe_iso8601(sys.argv[1])).timestamp() * 1000))',
  ].join('\n');
  const run = await runToExit(SYSTEM_PYTHON, ['-c', script, iso], { timeoutMs: 20_000 });
  if (run.code !== 0)
    throw new Error(`Celery could not read ${JSON.stringify(iso)}: ${run.stderr.trim()}`);
  return Number(run.stdout.trim());
}
