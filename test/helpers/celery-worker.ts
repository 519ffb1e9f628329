/** Runs a real Celery worker (Debian's python3-celery) on the test app in test/fixtures/celery, ready when it logs "<name>@<host> ready.". */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { PROJECT_ROOT } from './bridge.js';
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
  const child = spawn(
    SYSTEM_PYTHON,
    [
      '-m', 'celery', '-A', 'bridge_tasks', 'worker',
      '-Q', options.queues.join(','),
      '--pool', 'threads', '-c', '4',
      '--without-heartbeat', '--without-gossip', '--without-mingle',
      '-n', `${name}@%h`,
      '--loglevel', 'INFO',
    ],
    { cwd: CELERY_FIXTURES, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const lines: string[] = [];
  const partial = { stdout: '', stderr: '' };
  const waiters: Array<{ match: (l: string) => boolean; resolve: (l: string) => void }> = [];
  const onText = (stream: 'stdout' | 'stderr') => (text: string) => {
    output += text;
    partial[stream] += text;
    let nl: number;
    while ((nl = partial[stream].indexOf('\n')) !== -1) {
      const line = partial[stream].slice(0, nl);
      partial[stream] = partial[stream].slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.match(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  };
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', onText('stdout'));
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', onText('stderr'));
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null, // 'exit' hands (code, signal)
    signal: signal as NodeJS.Signals | null,
  }));

  const waitForLine = (match: (line: string) => boolean, timeoutMs = 15_000): Promise<string> => {
    const past = lines.find(match);
    if (past !== undefined) return Promise.resolve(past);
    return new Promise<string>((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        const at = waiters.indexOf(waiter);
        if (at === -1) return;
        waiters.splice(at, 1);
        reject(new Error(`${why}; Celery output:\n${output.slice(-4000)}`));
      };
      const timer = setTimeout(() => fail(`Celery worker ${name}: no matching line within ${timeoutMs} ms`), timeoutMs);
      const waiter = {
        match,
        resolve: (l: string) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      waiters.push(waiter);
      void exited.then(({ code, signal }) => fail(`Celery worker ${name} exited (code ${code}, signal ${signal}) before the line`));
    });
  };

  let stopping: Promise<void> | undefined;
  const stop = (killAfterMs = 15_000): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      await exited;
      clearTimeout(timer);
    })());

  const worker: CeleryWorker = { child, name, output: () => output, lines: () => [...lines], waitForLine, exited, stop };
  try {
    // celery/apps/worker.py logs "<hostname> ready." once the consumer is up.
    await waitForLine((l) => l.includes(`${name}@`) && l.trimEnd().endsWith(' ready.'), options.readyTimeoutMs ?? 30_000);
  } catch (err) {
    await stop(2000);
    throw err;
  }
  return worker;
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
  const child = spawn(SYSTEM_PYTHON, ['-c', script, iso], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (t: string) => (out += t));
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (t: string) => (err += t));
  const [code] = (await once(child, 'close')) as [number | null]; // 'close' hands (code, signal)
  if (code !== 0) throw new Error(`Celery could not read ${JSON.stringify(iso)}: ${err.trim()}`);
  return Number(out.trim());
}
