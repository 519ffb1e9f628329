/**
 * Shared plumbing of the bench scripts: running commands, parsing wrk, sampling /proc, starting
 * the built bridge on loopback with a given config. Everything started is stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Run {
  readonly cmd: string;
  readonly stdout: string;
}

/** Runs `cmd` to its end; `signal` ends it early (SIGTERM) and the promise then rejects. */
export function run(cmd: string, argv: string[], signal?: AbortSignal): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, {
      stdio: ['ignore', 'pipe', 'inherit'],
      ...(signal === undefined ? {} : { signal }),
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve({ cmd, stdout }) : reject(new Error(`${cmd} exited ${code}`)),
    );
  });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** Resident set of `pid` in MB; NaN once the process is gone. */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** User + system CPU seconds `pid` used so far; NaN once the process is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime in clock ticks (USER_HZ 100)
  } catch {
    return NaN;
  }
}

/** Whether `pid` runs (a zombie, exited but not yet reaped, does not). */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

/** `root` and all its descendants, read from /proc (parent pid is field 4 of /proc/PID/stat). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(
        readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]?.split(' ')[1],
      );
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // the process exited while we listed /proc
    }
  }
  const out: number[] = [];
  const todo = [root];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** A port that was free a moment ago on 127.0.0.1 (for peers that cannot report the one they bound). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

function parseLatencyMs(text: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

export interface WrkResult {
  rps: number;
  requests: number;
  non2xx: number;
  /** wrk's "Socket errors" line as printed, or 'none'. */
  socketErrors: string;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  timeouts: number;
  p50: number;
  p90: number;
  p99: number;
}

function parseWrk(out: string): WrkResult {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    requests,
    non2xx,
    socketErrors: /Socket errors: (.*)/.exec(out)?.[1] ?? 'none',
    connectErrors: Number(errors?.[1] ?? 0),
    readErrors: Number(errors?.[2] ?? 0),
    writeErrors: Number(errors?.[3] ?? 0),
    timeouts: Number(errors?.[4] ?? 0),
    p50: parseLatencyMs(out, '50'),
    p90: parseLatencyMs(out, '90'),
    p99: parseLatencyMs(out, '99'),
  };
}

/** A command line run through bash with `ulimit -n` raised first (C10k needs > 1024 descriptors). */
export function withNofile(
  nofile: number | undefined,
  cmd: string,
  argv: readonly string[],
): [string, string[]] {
  if (nofile === undefined) return [cmd, [...argv]];
  // `exec` keeps one PID: the one we spawn is the one we measure and signal.
  return ['bash', ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, cmd, ...argv]];
}

export interface WrkOptions {
  /** A request unanswered after this long counts as a timeout (wrk's --timeout). */
  readonly timeoutSeconds?: number;
  /** Raise `ulimit -n` for wrk to this. */
  readonly nofile?: number;
  readonly script?: string;
  /** Passed to the script's init(args) (bench/partner-auth.lua). */
  readonly scriptArgs?: readonly string[];
  /** Stops wrk early; the run then rejects. */
  readonly signal?: AbortSignal;
}

/** wrk's threads (`-t`): a script that splits work by thread (bench/partner-auth.lua) needs it. */
export const WRK_THREADS = 2;

/** Runs wrk with the 1 KiB WeChat-style body script against `url`. */
export async function wrk(
  url: string,
  connections: number,
  seconds: number,
  options: WrkOptions = {},
): Promise<WrkResult> {
  const script = options.script ?? path.join(ROOT, 'bench/wechat-1k.lua');
  const argv = [
    `-t${WRK_THREADS}`,
    `-c${connections}`,
    `-d${seconds}s`,
    '--latency',
    '--timeout',
    `${options.timeoutSeconds ?? 10}s`,
    '-s',
    script,
    url,
    ...(options.scriptArgs ?? []),
  ];
  const [cmd, args] = withNofile(options.nofile, 'wrk', argv);
  const out = await run(cmd, args, options.signal);
  return parseWrk(out.stdout);
}

/** SIGTERM `child`, then SIGKILL it and every descendant still alive after `killAfterMs`. */
export async function stopChild(child: ChildProcess, killAfterMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const tree = processTree(child.pid);
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const pid of tree) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }, killAfterMs);
  await exited;
  clearTimeout(timer);
  // Descendants that outlived their parent (a worker not yet done draining) get the same bound.
  const deadline = Date.now() + killAfterMs;
  for (const pid of tree.slice(1)) {
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50)); // no exit event for a non-child
    if (!alive(pid)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
}

export interface BenchBridge {
  readonly pid: number;
  readonly port: number;
  readonly adminPort: number;
  stop(): Promise<void>;
}

export interface BridgeStartOptions {
  /** Raise `ulimit -n` for the bridge (its workers inherit it). */
  readonly nofile?: number;
  /** Node.js options for the primary, which its workers inherit (bench/profile.ts: --cpu-prof). */
  readonly nodeArgs?: readonly string[];
  /** Another Node.js to run it with: a command and its leading arguments (bench/uws-builds.ts). */
  readonly node?: { readonly command: string; readonly prefix: readonly string[] };
  /** Added to the bridge's environment (e.g. BRIDGE_UWS_BUILD). */
  readonly env?: Readonly<Record<string, string>>;
}

/** Starts the built bridge with `config` (listen/admin ports are forced to ephemeral loopback). */
export async function startBridge(
  config: Record<string, unknown>,
  options: BridgeStartOptions = {},
): Promise<BenchBridge> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ ...config, listen: '127.0.0.1:0', admin: '127.0.0.1:0' }));
  const [cmd, args] = withNofile(options.nofile, options.node?.command ?? process.execPath, [
    ...(options.node?.prefix ?? []),
    ...(options.nodeArgs ?? []),
    path.join(ROOT, 'dist/src/primary/main.js'),
    '--config',
    file,
  ]);
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...options.env },
  });
  const deadline = Date.now() + 30_000;
  const stop = async (): Promise<void> => {
    await stopChild(child, 15_000);
    rmSync(dir, { recursive: true, force: true });
  };
  const ready = await new Promise<{ port: number; adminPort: number }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('bridge not ready to serve after 30 s')),
      deadline - Date.now(),
    );
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => {
      partial += t;
      let nl: number;
      while ((nl = partial.indexOf('\n')) !== -1) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        if (line.includes('"ready to serve"')) {
          clearTimeout(timer);
          resolve(JSON.parse(line) as { port: number; adminPort: number }); // primary's log line
        }
      }
    });
    child.on('exit', () => reject(new Error('bridge exited during start')));
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  for (;;) {
    const r = await fetch(`http://127.0.0.1:${ready.adminPort}/readyz`).catch(() => undefined);
    if (r?.status === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error('bridge not ready (/readyz) after 30 s');
    }
    await new Promise((res) => setTimeout(res, 100)); // polling /readyz: no event to await
  }
  return { pid: child.pid ?? -1, ...ready, stop };
}

export async function workerPids(adminPort: number): Promise<number[]> {
  const body = (await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).json()) as {
    workers: Array<{ pid: number }>;
  }; // the admin server's /readyz body
  return body.workers.map((w) => w.pid);
}
