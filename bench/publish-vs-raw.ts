/**
 * Publish throughput of the bridge against the broker's raw ingest rate, measured in one run,
 * alternating raw and bridge rounds (A B A B) and quoting medians, as PERFORMANCE.md advises.
 * Loopback only; every process it starts is stopped by PID.
 *
 * Usage: node dist/bench/publish-vs-raw.js [--seconds 10] [--rounds 2] [--workers 1,2] [--conns 100,1000]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import amqplib from 'amqplib';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i] ?? '', process.argv[i + 1] ?? '');
const SECONDS = Number(args.get('--seconds') ?? 10);
const ROUNDS = Number(args.get('--rounds') ?? 2);
const WORKERS = (args.get('--workers') ?? '1,2').split(',').map(Number);
const CONNS = (args.get('--conns') ?? '100,1000').split(',').map(Number);

interface Run {
  readonly cmd: string;
  readonly stdout: string;
}

function run(cmd: string, argv: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve({ cmd, stdout }) : reject(new Error(`${cmd} exited ${code}`))));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime in clock ticks (USER_HZ 100)
}

function parseLatencyMs(text: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

interface WrkResult {
  rps: number;
  requests: number;
  non2xx: number;
  socketErrors: string;
  p50: number;
  p99: number;
}

function parseWrk(out: string): WrkResult {
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

async function startBridge(workers: number, queue: string): Promise<{ pid: number; port: number; adminPort: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(
    file,
    JSON.stringify({
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      workers,
      topology: { queues: [{ name: queue, durable: true }] },
      routes: [{ path: '/wechat/notify', mode: 'publish', exchange: '', routingKey: queue }],
    }),
  );
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

async function workerPids(adminPort: number): Promise<number[]> {
  const body = (await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).json()) as { workers: Array<{ pid: number }> };
  return body.workers.map((w) => w.pid);
}

const conn = await amqplib.connect('amqp://guest:guest@127.0.0.1:5672/');
const ch = await conn.createChannel();
const queue = `bench-publish-${Date.now()}`;
await ch.assertQueue(queue, { durable: true });

const rows: string[] = [];
const machine = `${process.version}, ${(await run('nproc', [])).stdout.trim()} cores`;
for (const c of CONNS) {
  const window = c >= 256 ? 256 : c;
  const raw: number[] = [];
  const rawBare: number[] = [];
  const results = new Map<number, Array<WrkResult & { inQueue: number; rss: number[]; cpuPer10k: number }>>();
  for (let round = 0; round < ROUNDS; round++) {
    await ch.purgeQueue(queue);
    for (const [format, list] of [['bridge', raw], ['bare', rawBare]] as const) {
      await ch.purgeQueue(queue);
      const r = JSON.parse((await run(process.execPath, [path.join(ROOT, 'dist/bench/raw-publisher.js'), queue, String(SECONDS), String(window), format])).stdout) as { rate: number }; // raw-publisher prints one JSON line
      list.push(r.rate);
    }
    for (const workers of WORKERS) {
      await ch.purgeQueue(queue);
      const bridge = await startBridge(workers, queue);
      const pids = await workerPids(bridge.adminPort);
      const cpuBefore = pids.reduce((s, p) => s + cpuSeconds(p), 0);
      const peak = pids.map(() => 0);
      const sampler = setInterval(() => pids.forEach((p, i) => (peak[i] = Math.max(peak[i] ?? 0, rssMb(p)))), 250);
      const wrk = parseWrk(
        (await run('wrk', ['-t2', `-c${c}`, `-d${SECONDS}s`, '--latency', '--timeout', '10s', '-s', path.join(ROOT, 'bench/wechat-1k.lua'), `http://127.0.0.1:${bridge.port}/wechat/notify`])).stdout,
      );
      clearInterval(sampler);
      const cpu = pids.reduce((s, p) => s + cpuSeconds(p), 0) - cpuBefore;
      await bridge.stop();
      const inQueue = (await ch.checkQueue(queue)).messageCount;
      const list = results.get(workers) ?? [];
      list.push({ ...wrk, inQueue, rss: peak, cpuPer10k: (cpu / (wrk.requests || 1)) * 10_000 });
      results.set(workers, list);
    }
  }
  const rawMedian = median(raw);
  const bareMedian = median(rawBare);
  rows.push(`| raw amqplib publisher, window ${window}, bridge's properties+headers | ${c} | ${rawMedian.toFixed(0)} (${raw.map((x) => x.toFixed(0)).join(', ')}) | 1.00 | | | | | |`);
  rows.push(`| raw amqplib publisher, window ${window}, bare 1 KiB | ${c} | ${bareMedian.toFixed(0)} (${rawBare.map((x) => x.toFixed(0)).join(', ')}) | ${(bareMedian / rawMedian).toFixed(2)} | | | | | |`);
  for (const [workers, list] of results) {
    const rps = median(list.map((x) => x.rps));
    rows.push(
      `| bridge, ${workers} worker(s) | ${c} | ${rps.toFixed(0)} (${list.map((x) => x.rps.toFixed(0)).join(', ')}) | ${(rps / rawMedian).toFixed(2)} | ${median(list.map((x) => x.p50)).toFixed(2)} / ${median(list.map((x) => x.p99)).toFixed(2)} | ${list.map((x) => `${x.requests - x.non2xx}/${x.inQueue}`).join(', ')} | ${list.map((x) => x.socketErrors).join('; ')} | ${Math.max(...list.flatMap((x) => x.rss)).toFixed(0)} | ${median(list.map((x) => x.cpuPer10k)).toFixed(2)} |`,
    );
  }
}
// Idle RSS of a fresh bridge's workers.
const idle = await startBridge(2, queue);
const idleRss = (await workerPids(idle.adminPort)).map((p) => rssMb(p).toFixed(0));
await idle.stop();
await ch.deleteQueue(queue);
await conn.close();

process.stdout.write(`\n# publish vs raw broker ingest (${machine}; ${SECONDS}s runs, ${ROUNDS} rounds, medians)\n\n`);
process.stdout.write('| stack | conns | req/s or msgs/s (runs) | ratio to raw (same format) | p50 / p99 ms | 2xx / msgs in queue | socket errors | peak RSS per worker MB | bridge CPU s per 10k req |\n|---|---|---|---|---|---|---|---|---|\n');
process.stdout.write(`${rows.join('\n')}\n\nidle RSS per worker (2 workers): ${idleRss.join(', ')} MB\n`);
