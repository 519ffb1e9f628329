/**
 * Shared plumbing of the bench scripts: running commands, parsing wrk, sampling /proc, starting
 * the built bridge on loopback with a given config. Everything started is stopped by PID.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Run {
  readonly cmd: string;
  readonly stdout: string;
}

export function run(cmd: string, argv: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve({ cmd, stdout }) : reject(new Error(`${cmd} exited ${code}`))));
  });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime in clock ticks (USER_HZ 100)
}

export function parseLatencyMs(text: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

export interface WrkResult {
  rps: number;
  requests: number;
  non2xx: number;
  socketErrors: string;
  p50: number;
  p99: number;
}

export function parseWrk(out: string): WrkResult {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    requests,
    non2xx,
    socketErrors: /Socket errors: (.*)/.exec(out)?.[1] ?? 'none',
    p50: parseLatencyMs(out, '50'),
    p99: parseLatencyMs(out, '99'),
  };
}

export interface BenchBridge {
  readonly pid: number;
  readonly port: number;
  readonly adminPort: number;
  stop(): Promise<void>;
}

/** Starts the built bridge with `config` (listen/admin ports are forced to ephemeral loopback). */
export async function startBridge(config: Record<string, unknown>): Promise<BenchBridge> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ ...config, listen: '127.0.0.1:0', admin: '127.0.0.1:0' }));
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/src/primary/main.js'), '--config', file], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = await new Promise<{ port: number; adminPort: number }>((resolve, reject) => {
    let buf = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => {
      buf += t;
      for (const line of buf.split('\n')) {
        if (line.includes('"ready to serve"')) {
          const j = JSON.parse(line) as { port: number; adminPort: number }; // primary's log line
          resolve(j);
        }
      }
    });
    child.on('exit', () => reject(new Error('bridge exited during start')));
  });
  for (;;) {
    const r = await fetch(`http://127.0.0.1:${ready.adminPort}/readyz`);
    if (r.status === 200) break;
    await new Promise((res) => setTimeout(res, 100)); // polling /readyz: no event to await
  }
  return {
    pid: child.pid ?? -1,
    ...ready,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((res) => child.once('exit', res));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function workerPids(adminPort: number): Promise<number[]> {
  const body = (await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).json()) as { workers: Array<{ pid: number }> };
  return body.workers.map((w) => w.pid);
}


/** Runs wrk with the 1 KiB WeChat-style body script against `url`. */
export async function wrk(url: string, connections: number, seconds: number): Promise<WrkResult> {
  const out = await run('wrk', ['-t2', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '10s', '-s', path.join(ROOT, 'bench/wechat-1k.lua'), url]);
  return parseWrk(out.stdout);
}
