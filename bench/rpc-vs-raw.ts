/**
 * Request/reply throughput of the bridge's `rpc` route against the raw round-trip rate of a plain
 * amqplib client on the same reference responder, measured in one run (medians of alternating
 * rounds). Loopback only; every process it starts is stopped by PID.
 *
 * Usage: node dist/bench/rpc-vs-raw.js [--seconds 10] [--rounds 2] [--workers 1,2] [--conns 100,1000]
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import amqplib from 'amqplib';
import { median, ROOT, run, startBridge, wrk, type WrkResult } from './harness.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i] ?? '', process.argv[i + 1] ?? '');
const SECONDS = Number(args.get('--seconds') ?? 10);
const ROUNDS = Number(args.get('--rounds') ?? 2);
const WORKERS = (args.get('--workers') ?? '1,2').split(',').map(Number);
const CONNS = (args.get('--conns') ?? '100,1000').split(',').map(Number);

const conn = await amqplib.connect('amqp://guest:guest@127.0.0.1:5672/');
const ch = await conn.createChannel();
const queue = `bench-rpc-${Date.now()}`;
await ch.assertQueue(queue, { durable: true });

const responder = spawn(
  process.execPath,
  [path.join(ROOT, 'dist/examples/rpc-responder.js'), '--queue', queue, '--prefetch', '1000'],
  {
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
const lines = createInterface({ input: responder.stdout });
for await (const line of lines) if (line.includes('"ready":true')) break;

async function raw(concurrency: number): Promise<{ rate: number; p50: number; p99: number }> {
  const out = await run(process.execPath, [
    path.join(ROOT, 'dist/bench/raw-rpc-client.js'),
    queue,
    String(SECONDS),
    String(concurrency),
  ]);
  return JSON.parse(out.stdout) as { rate: number; p50: number; p99: number }; // raw-rpc-client prints one JSON line
}

const rows: string[] = [];
const rawRuns = new Map<number, number[]>([
  [1, []],
  [256, []],
]);
const bridgeRuns = new Map<string, WrkResult[]>();
for (let round = 0; round < ROUNDS; round++) {
  for (const c of [1, 256]) rawRuns.get(c)?.push((await raw(c)).rate);
  for (const workers of WORKERS) {
    const bridge = await startBridge({
      workers,
      routes: [
        { path: '/orders', mode: 'rpc', exchange: '', routingKey: queue, timeoutMs: 10_000 },
      ],
    });
    for (const c of CONNS) {
      const key = `${workers}/${c}`;
      const list = bridgeRuns.get(key) ?? [];
      list.push(await wrk(`http://127.0.0.1:${bridge.port}/orders`, c, SECONDS));
      bridgeRuns.set(key, list);
    }
    await bridge.stop();
  }
}
const raw256 = median(rawRuns.get(256) ?? []);
for (const [c, list] of rawRuns) {
  rows.push(
    `| raw amqplib RPC client, concurrency ${c} | ${c} | ${median(list).toFixed(0)} (${list.map((x) => x.toFixed(0)).join(', ')}) | ${(median(list) / raw256).toFixed(2)} | | | |`,
  );
}
for (const [key, list] of bridgeRuns) {
  const [workers, c] = key.split('/');
  const rps = median(list.map((x) => x.rps));
  rows.push(
    `| bridge rpc, ${workers} worker(s) | ${c} | ${rps.toFixed(0)} (${list.map((x) => x.rps.toFixed(0)).join(', ')}) | ${(rps / raw256).toFixed(2)} | ${median(list.map((x) => x.p50)).toFixed(2)} / ${median(list.map((x) => x.p99)).toFixed(2)} | ${list.map((x) => x.non2xx).join(', ')} | ${list.map((x) => x.socketErrors).join('; ')} |`,
  );
}
responder.kill('SIGTERM');
await once(responder, 'exit');
await ch.deleteQueue(queue);
await conn.close();
process.stdout.write(
  `\n# rpc vs raw round trip (${process.version}; ${SECONDS}s runs, ${ROUNDS} rounds, medians)\n\n`,
);
process.stdout.write(
  '| stack | conns | replies/s (runs) | ratio to raw c256 | p50 / p99 ms | non-2xx | socket errors |\n|---|---|---|---|---|---|---|\n',
);
process.stdout.write(`${rows.join('\n')}\n`);
