/**
 * Publish throughput of the bridge against the broker's raw ingest rate, measured in one run,
 * alternating raw and bridge rounds (A B A B) and quoting medians, as docs/performance.md advises.
 * Loopback only; every process it starts is stopped by PID.
 *
 * Usage: node dist/bench/publish-vs-raw.js [--seconds 10] [--rounds 2] [--workers 1,2] [--conns 100,1000]
 */
import path from 'node:path';
import amqplib from 'amqplib';
import {
  cpuSeconds,
  median,
  ROOT,
  rssMb,
  run,
  startBridge,
  workerPids,
  wrk,
  type WrkResult,
} from './harness.js';
const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i] ?? '', process.argv[i + 1] ?? '');
const SECONDS = Number(args.get('--seconds') ?? 10);
const ROUNDS = Number(args.get('--rounds') ?? 2);
const WORKERS = (args.get('--workers') ?? '1,2').split(',').map(Number);
const CONNS = (args.get('--conns') ?? '100,1000').split(',').map(Number);

const conn = await amqplib.connect('amqp://guest:guest@127.0.0.1:5672/');
const ch = await conn.createChannel();
const queue = `bench-publish-${Date.now()}`;
await ch.assertQueue(queue, { durable: true });

function publishConfig(workers: number, queue: string): Record<string, unknown> {
  return {
    workers,
    topology: { queues: [{ name: queue, durable: true }] },
    routes: [{ path: '/wechat/notify', mode: 'publish', exchange: '', routingKey: queue }],
  };
}

const rows: string[] = [];
const machine = `${process.version}, ${(await run('nproc', [])).stdout.trim()} cores`;
for (const c of CONNS) {
  const window = c >= 256 ? 256 : c;
  const raw: number[] = [];
  const rawBare: number[] = [];
  const results = new Map<
    number,
    Array<WrkResult & { inQueue: number; rss: number[]; cpuPer10k: number }>
  >();
  for (let round = 0; round < ROUNDS; round++) {
    await ch.purgeQueue(queue);
    for (const [format, list] of [
      ['bridge', raw],
      ['bare', rawBare],
    ] as const) {
      await ch.purgeQueue(queue);
      const r = JSON.parse(
        (
          await run(process.execPath, [
            path.join(ROOT, 'dist/bench/raw-publisher.js'),
            queue,
            String(SECONDS),
            String(window),
            format,
          ])
        ).stdout,
      ) as { rate: number }; // raw-publisher prints one JSON line
      list.push(r.rate);
    }
    for (const workers of WORKERS) {
      await ch.purgeQueue(queue);
      const bridge = await startBridge(publishConfig(workers, queue));
      const pids = await workerPids(bridge.adminPort);
      const cpuBefore = pids.reduce((s, p) => s + cpuSeconds(p), 0);
      const peak = pids.map(() => 0);
      const sampler = setInterval(
        () => pids.forEach((p, i) => (peak[i] = Math.max(peak[i] ?? 0, rssMb(p)))),
        250,
      );
      const load = await wrk(`http://127.0.0.1:${bridge.port}/wechat/notify`, c, SECONDS);
      clearInterval(sampler);
      const cpu = pids.reduce((s, p) => s + cpuSeconds(p), 0) - cpuBefore;
      const wrkResult = load;
      await bridge.stop();
      const inQueue = (await ch.checkQueue(queue)).messageCount;
      const list = results.get(workers) ?? [];
      list.push({
        ...wrkResult,
        inQueue,
        rss: peak,
        cpuPer10k: (cpu / (wrkResult.requests || 1)) * 10_000,
      });
      results.set(workers, list);
    }
  }
  const rawMedian = median(raw);
  const bareMedian = median(rawBare);
  rows.push(
    `| raw amqplib publisher, window ${window}, bridge's properties+headers | ${c} | ${rawMedian.toFixed(0)} (${raw.map((x) => x.toFixed(0)).join(', ')}) | 1.00 | | | | | |`,
  );
  rows.push(
    `| raw amqplib publisher, window ${window}, bare 1 KiB | ${c} | ${bareMedian.toFixed(0)} (${rawBare.map((x) => x.toFixed(0)).join(', ')}) | ${(bareMedian / rawMedian).toFixed(2)} | | | | | |`,
  );
  for (const [workers, list] of results) {
    const rps = median(list.map((x) => x.rps));
    rows.push(
      `| bridge, ${workers} worker(s) | ${c} | ${rps.toFixed(0)} (${list.map((x) => x.rps.toFixed(0)).join(', ')}) | ${(rps / rawMedian).toFixed(2)} | ${median(list.map((x) => x.p50)).toFixed(2)} / ${median(list.map((x) => x.p99)).toFixed(2)} | ${list.map((x) => `${x.requests - x.non2xx}/${x.inQueue}`).join(', ')} | ${list.map((x) => x.socketErrors).join('; ')} | ${Math.max(...list.flatMap((x) => x.rss)).toFixed(0)} | ${median(list.map((x) => x.cpuPer10k)).toFixed(2)} |`,
    );
  }
}
// Idle RSS of a fresh bridge's workers.
const idle = await startBridge(publishConfig(2, queue));
const idleRss = (await workerPids(idle.adminPort)).map((p) => rssMb(p).toFixed(0));
await idle.stop();
await ch.deleteQueue(queue);
await conn.close();

process.stdout.write(
  `\n# publish vs raw broker ingest (${machine}; ${SECONDS}s runs, ${ROUNDS} rounds, medians)\n\n`,
);
process.stdout.write(
  '| stack | conns | req/s or msgs/s (runs) | ratio to raw (same format) | p50 / p99 ms | 2xx / msgs in queue | socket errors | peak RSS per worker MB | bridge CPU s per 10k req |\n|---|---|---|---|---|---|---|---|---|\n',
);
process.stdout.write(
  `${rows.join('\n')}\n\nidle RSS per worker (2 workers): ${idleRss.join(', ')} MB\n`,
);
