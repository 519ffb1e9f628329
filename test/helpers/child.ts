/**
 * Child processes for tests, two ways: run one to its exit and collect what it printed
 * (`runToExit`), or start a long-running one, read its output line by line and wait for the line
 * that says it is ready (`startChild`, `spawnChild`). Every waiting is bounded; a child that
 * exits first fails the wait at once, with its last output in the message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Run extends ExitStatus {
  readonly stdout: string;
  readonly stderr: string;
  /** It was SIGKILLed for outliving `timeoutMs`. */
  readonly timedOut: boolean;
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Written to its stdin, which is then closed (default: closed at once). */
  readonly stdin?: string;
  /** SIGKILL after this long, so a hang fails the test instead of stalling it (default 60 s). */
  readonly timeoutMs?: number;
}

/** Runs `command` to its exit; never rejects on a non-zero exit (the caller asserts). */
export async function runToExit(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<Run> {
  const child = spawn(command, [...args], {
    env: options.env ?? process.env,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  // 'close', not 'exit': by then everything it printed has been read.
  const closed = once(child, 'close');
  child.stdin.end(options.stdin ?? '');
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, options.timeoutMs ?? 60_000);
  try {
    const [code, signal] = (await closed) as [number | null, NodeJS.Signals | null]; // 'close' hands (code, signal)
    return { code, signal, stdout, stderr, timedOut };
  } catch (err) {
    // 'error' (e.g. ENOENT): it never ran.
    return {
      code: null,
      signal: null,
      stdout,
      stderr: `${stderr}${err instanceof Error ? err.message : String(err)}`,
      timedOut,
    };
  } finally {
    clearTimeout(timer);
  }
}

export interface ChildOptions<L> {
  /** Names the child in error messages. */
  readonly name: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** The streams read as lines (default stdout); all of both is kept as `output()` anyway. */
  readonly lineStreams?: ReadonlyArray<'stdout' | 'stderr'>;
  /** Each complete line into what `lines` holds (e.g. a JSON log record). */
  readonly parse: (raw: string) => L;
  /** Called with each line as it is read, before any waiter. */
  readonly onLine?: (line: L) => void;
  /** `stop()` SIGKILLs it when SIGTERM did not end it within this long (default 10 s). */
  readonly killAfterMs?: number;
}

export interface Child<L> {
  readonly process: ChildProcess;
  readonly pid: number;
  // Function-valued properties, not methods: handing them on unbound is how they are used.
  /** Every line so far, in order; the same array grows as lines arrive. */
  readonly lines: readonly L[];
  /** Everything printed so far, stdout and stderr interleaved as they came. */
  readonly output: () => string;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** The first line, past or future, that matches; rejects after `timeoutMs` or once the child exited. */
  readonly waitForLine: (match: (line: L) => boolean, timeoutMs?: number) => Promise<L>;
  /** Its exit (the 'exit' event: its own children may still hold its pipes). */
  readonly exited: Promise<ExitStatus>;
  /** Its exit with all of its output read (the 'close' event). */
  readonly closed: Promise<ExitStatus>;
  /** SIGTERM, then SIGKILL after `killAfterMs`; resolves once it exited. Idempotent. */
  readonly stop: (killAfterMs?: number) => Promise<void>;
}

/** Spawns `command` and reads its output as lines; see `startChild` to also wait until it is ready. */
export function spawnChild<L>(
  command: string,
  args: readonly string[],
  options: ChildOptions<L>,
): Child<L> {
  const child = spawn(command, [...args], {
    env: options.env ?? process.env,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: L[] = [];
  const waiters = new Set<{
    readonly match: (line: L) => boolean;
    readonly resolve: (line: L) => void;
  }>();
  let output = '';
  const printed = { stdout: '', stderr: '' };
  const lineStreams = options.lineStreams ?? ['stdout'];
  const read = (stream: 'stdout' | 'stderr'): void => {
    let partial = '';
    child[stream].setEncoding('utf8').on('data', (text: string) => {
      output += text;
      printed[stream] += text;
      if (!lineStreams.includes(stream)) return;
      partial += text;
      let nl: number;
      while ((nl = partial.indexOf('\n')) !== -1) {
        const line = options.parse(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
        lines.push(line);
        options.onLine?.(line);
        for (const waiter of waiters) if (waiter.match(line)) waiter.resolve(line);
      }
    });
  };
  read('stdout');
  read('stderr');
  const status = (event: 'exit' | 'close'): Promise<ExitStatus> =>
    once(child, event).then(
      ([code, signal]) => ({
        code: code as number | null,
        signal: signal as NodeJS.Signals | null,
      }), // both hand (code, signal)
      () => ({ code: null, signal: null }), // 'error': it never ran
    );
  const exited = status('exit');
  const closed = status('close');
  const tail = (): string => output.slice(-4000);

  const waitForLine = (match: (line: L) => boolean, timeoutMs = 15_000): Promise<L> => {
    const past = lines.find(match);
    if (past !== undefined) return Promise.resolve(past);
    return new Promise<L>((resolve, reject) => {
      const settle = (): void => {
        clearTimeout(timer);
        waiters.delete(waiter);
      };
      const waiter = {
        match,
        resolve: (line: L) => {
          settle();
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        settle();
        reject(
          new Error(
            `${options.name}: no matching line within ${timeoutMs} ms; its output ends:\n${tail()}`,
          ),
        );
      }, timeoutMs);
      waiters.add(waiter);
      void closed.then(({ code, signal }) => {
        if (!waiters.has(waiter)) return;
        settle();
        reject(
          new Error(
            `${options.name} exited (code ${String(code)}, signal ${String(signal)}) before the line; its output ends:\n${tail()}`,
          ),
        );
      });
    });
  };

  let stopping: Promise<void> | undefined;
  const stop = (killAfterMs = options.killAfterMs ?? 10_000): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      await exited;
      clearTimeout(timer);
    })());

  return {
    process: child,
    pid: child.pid ?? -1,
    lines,
    output: () => output,
    stdout: () => printed.stdout,
    stderr: () => printed.stderr,
    waitForLine,
    exited,
    closed,
    stop,
  };
}

/**
 * Spawns `command` and resolves once a line matches `ready` (within `readyTimeoutMs`, default
 * 15 s). If it does not come, the child is stopped and the error carries its output.
 */
export async function startChild<L>(
  command: string,
  args: readonly string[],
  options: ChildOptions<L> & {
    readonly ready: (line: L) => boolean;
    readonly readyTimeoutMs?: number;
  },
): Promise<{ child: Child<L>; ready: L }> {
  const child = spawnChild(command, args, options);
  try {
    return {
      child,
      ready: await child.waitForLine(options.ready, options.readyTimeoutMs ?? 15_000),
    };
  } catch (err) {
    await child.stop(2000);
    throw err;
  }
}

/** Lines as they are (for `parse`). */
export const asText = (raw: string): string => raw;
