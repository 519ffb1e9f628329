/**
 * One measured run: wrk against a running stack (or a raw amqplib client for the limits), with
 * the stack's and the broker's CPU time, peak RSS per process, and the queue count afterwards.
 */
import path from 'node:path';
import amqplib from 'amqplib';
import { cpuSeconds, processTree, ROOT, rssMb, run, wrk } from './harness.js';
import type { HttpStack } from './stacks.js';

/** One run of one stack at one connection count. NaN = not applicable or not measured. */
export interface Measured {
  readonly scenario: string;
  readonly stack: string;
  readonly conns: number;
  readonly round: number;
  readonly rps: number;
  readonly requests: number;
  readonly non2xx: number;
  readonly connectErrors: number;
  readonly readErrors: number;
  readonly writeErrors: number;
  readonly timeouts: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  /** Messages in the stack's queue once it settled (publish and fire-and-forget runs). */
  readonly inQueue: number;
  /** Peak RSS of the largest process of the stack, and of the serving processes (workers). */
  readonly rssMaxMb: number;
  readonly servingRssMaxMb: number;
  /** Sum of the per-process peaks (an upper bound of the stack's footprint). */
  readonly rssTotalMb: number;
  /**
   * RSS of the largest serving process once the stack had started and gone quiet, before its
   * warm-up: one measurement per stack, repeated in each of its runs. Absent in runs saved before
   * it was measured.
   */
  readonly idleRssMb?: number;
  readonly processes: number;
  /** CPU seconds per 10,000 requests: the stack (all its processes), the broker, the backend. */
  readonly cpuPer10k: number;
  readonly brokerCpuPer10k: number;
  readonly backendCpuPer10k: number;
  /** The non-2xx answers by status, where the stack counts them (e.g. `503×12`). */
  readonly statuses: string;
  readonly error: string;
}

const EMPTY: Omit<Measured, 'scenario' | 'stack' | 'conns' | 'round'> = {
  rps: NaN,
  requests: NaN,
  non2xx: NaN,
  connectErrors: NaN,
  readErrors: NaN,
  writeErrors: NaN,
  timeouts: NaN,
  p50: NaN,
  p90: NaN,
  p99: NaN,
  inQueue: NaN,
  rssMaxMb: NaN,
  servingRssMaxMb: NaN,
  rssTotalMb: NaN,
  processes: NaN,
  cpuPer10k: NaN,
  brokerCpuPer10k: NaN,
  backendCpuPer10k: NaN,
  statuses: '',
  error: '',
};

export interface RunKey {
  readonly scenario: string;
  readonly stack: string;
  readonly conns: number;
  readonly round: number;
}

export function failedRun(key: RunKey, error: string): Measured {
  return { ...key, ...EMPTY, error };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sumCpu = (pids: readonly number[]): number =>
  pids.reduce((s, p) => s + (Number.isFinite(cpuSeconds(p)) ? cpuSeconds(p) : 0), 0);

/** Queue administration on the broker: one channel, re-opened after a channel error. */
export class QueueAdmin {
  #conn: amqplib.ChannelModel | undefined;
  #ch: amqplib.Channel | undefined;
  readonly #url: string;

  /** `url`: the broker (node) to administer; the shared local broker unless said. */
  constructor(url = 'amqp://guest:guest@127.0.0.1:5672/') {
    this.#url = url;
  }

  async #channel(): Promise<amqplib.Channel> {
    if (this.#conn === undefined) {
      const conn = await amqplib.connect(this.#url);
      // A connection the broker closes (a restart, an alarm) is replaced at the next call.
      conn.on('error', () => undefined);
      conn.on('close', () => {
        if (this.#conn === conn) {
          this.#conn = undefined;
          this.#ch = undefined;
        }
      });
      this.#conn = conn;
    }
    if (this.#ch === undefined) {
      const ch = await this.#conn.createChannel();
      ch.on('error', () => undefined); // a 404/406 closes the channel; the next call opens another
      ch.on('close', () => {
        if (this.#ch === ch) this.#ch = undefined;
      });
      this.#ch = ch;
    }
    return this.#ch;
  }

  async declare(queue: string, type: 'classic' | 'quorum'): Promise<void> {
    await (
      await this.#channel()
    ).assertQueue(queue, {
      durable: true,
      arguments: type === 'quorum' ? { 'x-queue-type': 'quorum' } : {},
    });
  }

  async count(queue: string): Promise<{ messages: number; consumers: number }> {
    const r = await (await this.#channel()).checkQueue(queue);
    return { messages: r.messageCount, consumers: r.consumerCount };
  }

  async purge(queue: string): Promise<void> {
    await (await this.#channel()).purgeQueue(queue);
  }

  /** Deletes the queue and an exchange of the same name (Celery declares one per queue). */
  async remove(queue: string): Promise<void> {
    await (await this.#channel()).deleteQueue(queue).catch(() => undefined);
    await (await this.#channel()).deleteExchange(queue).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.#conn?.close().catch(() => undefined);
    this.#conn = undefined;
    this.#ch = undefined;
  }
}

/**
 * Waits until the queue count stops moving (1 s unchanged; at most `boundMs`): wrk stops while
 * requests are still in flight, and those land after it. Returns the last count.
 */
export async function settledCount(
  admin: QueueAdmin,
  queue: string,
  boundMs = 20_000,
): Promise<number> {
  const deadline = Date.now() + boundMs;
  let last = -1;
  let stableSince = Date.now();
  for (;;) {
    const { messages } = await admin.count(queue);
    if (messages !== last) {
      last = messages;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 1000 || Date.now() > deadline) return messages;
    await sleep(250); // the broker has no "queue stopped growing" event
  }
}

/** Waits until `queue` holds no ready message (the backend caught up), at most `boundMs`. */
export async function drained(admin: QueueAdmin, queue: string, boundMs = 20_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while ((await admin.count(queue)).messages > 0 && Date.now() < deadline) await sleep(250); // as above
}

/**
 * The largest serving process's RSS with the stack started and idle: quiet first (start-up work
 * done), then the largest of 5 samples over 2 s, as the heap still moves a little when idle.
 */
export async function idleRssMb(stack: HttpStack): Promise<number> {
  await quiet(processTree(stack.rootPid));
  let largest = NaN;
  for (let i = 0; i < 5; i++) {
    if (i > 0) await sleep(500);
    for (const mb of stack.servingPids().map(rssMb).filter(Number.isFinite))
      largest = Number.isFinite(largest) ? Math.max(largest, mb) : mb;
  }
  return largest;
}

/** Waits until `pids` use under 3% of a core over 500 ms (leftover requests done), at most `boundMs`. */
export async function quiet(pids: readonly number[], boundMs = 15_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const before = sumCpu(pids);
    await sleep(500);
    if (sumCpu(pids) - before < 0.015 || Date.now() > deadline) return;
  }
}

export interface HttpRunOptions {
  readonly seconds: number;
  readonly timeoutSeconds: number;
  readonly nofile: number;
  readonly brokerPid: number | undefined;
  readonly backendPids: readonly number[];
  /** Count messages in this queue after the run (publish and fire-and-forget). */
  readonly countQueue: string | undefined;
  /** Wait for this queue to drain after the run (rpc and blocking celery). */
  readonly drainQueue: string | undefined;
  readonly admin: QueueAdmin;
  /** The stack's idle RSS (`idleRssMb()`, measured once when it started), recorded with the run. */
  readonly idleRssMb: number;
  /** Checked while wrk runs: a reason to stop the run at once (the run then fails with it). */
  readonly guard?: () => string | undefined;
  /** Another wrk script than bench/wechat-1k.lua, and its arguments (bench/partner-auth.ts). */
  readonly script?: string;
  readonly scriptArgs?: readonly string[];
}

/** Thrown when `guard` stopped a run: the stack under test must be stopped too. */
export class GuardTripped extends Error {
  override readonly name = 'GuardTripped';
}

export async function measureHttp(
  key: RunKey,
  stack: HttpStack,
  options: HttpRunOptions,
): Promise<Measured> {
  const pids = processTree(stack.rootPid);
  const serving = new Set(stack.servingPids());
  const peak = new Map<number, number>(pids.map((p) => [p, 0]));
  const abort = new AbortController();
  let tripped: string | undefined;
  const sample = (): void => {
    const why = options.guard?.();
    if (why !== undefined && tripped === undefined) {
      tripped = why;
      abort.abort();
    }
    for (const p of pids) {
      const mb = rssMb(p);
      if (Number.isFinite(mb)) peak.set(p, Math.max(peak.get(p) ?? 0, mb));
    }
  };
  const statusesBefore = await stack.statuses?.().catch(() => undefined);
  const broker = options.brokerPid === undefined ? NaN : cpuSeconds(options.brokerPid);
  const backend = sumCpu(options.backendPids);
  const cpu = sumCpu(pids);
  sample();
  const sampler = setInterval(sample, 250);
  let w;
  try {
    // wrk ends by itself after `seconds`; the timeout only bounds a wrk that hangs.
    const signal = AbortSignal.any([
      abort.signal,
      AbortSignal.timeout((options.seconds + options.timeoutSeconds + 30) * 1000),
    ]);
    w = await wrk(stack.url, key.conns, options.seconds, {
      timeoutSeconds: options.timeoutSeconds,
      nofile: options.nofile,
      signal,
      ...(options.script === undefined ? {} : { script: options.script }),
      ...(options.scriptArgs === undefined ? {} : { scriptArgs: options.scriptArgs }),
    });
  } catch (err) {
    if (tripped !== undefined) throw new GuardTripped(`stopped: ${tripped}`);
    throw err;
  } finally {
    clearInterval(sampler);
  }
  sample();
  const requests = w.requests || 1;
  const per10k = (seconds: number): number => (seconds / requests) * 10_000;
  const cpuAfter = sumCpu(pids);
  const brokerAfter = options.brokerPid === undefined ? NaN : cpuSeconds(options.brokerPid);
  const backendAfter = sumCpu(options.backendPids);
  let inQueue = NaN;
  if (options.countQueue !== undefined) {
    inQueue = await settledCount(options.admin, options.countQueue);
    await options.admin.purge(options.countQueue);
  }
  if (options.drainQueue !== undefined) await drained(options.admin, options.drainQueue);
  await quiet(pids);
  const statusesAfter = await stack.statuses?.().catch(() => undefined);
  const statuses =
    statusesAfter === undefined
      ? ''
      : [...statusesAfter.entries()]
          .map(([status, n]) => [status, n - (statusesBefore?.get(status) ?? 0)] as const)
          // 499 = the client left: wrk closing its connections with requests in flight at the end.
          .filter(([status, n]) => n > 0 && !status.startsWith('2') && status !== '499')
          .map(([status, n]) => `${status}×${n}`)
          .join(', ');
  const peaks = [...peak.entries()];
  return {
    ...key,
    ...EMPTY,
    rps: w.rps,
    requests: w.requests,
    non2xx: w.non2xx,
    connectErrors: w.connectErrors,
    readErrors: w.readErrors,
    writeErrors: w.writeErrors,
    timeouts: w.timeouts,
    p50: w.p50,
    p90: w.p90,
    p99: w.p99,
    inQueue,
    rssMaxMb: Math.max(...peaks.map(([, mb]) => mb)),
    servingRssMaxMb: Math.max(...peaks.filter(([p]) => serving.has(p)).map(([, mb]) => mb)),
    rssTotalMb: peaks.reduce((s, [, mb]) => s + mb, 0),
    idleRssMb: options.idleRssMb,
    processes: pids.length,
    cpuPer10k: per10k(cpuAfter - cpu),
    brokerCpuPer10k: per10k(brokerAfter - broker),
    backendCpuPer10k: options.backendPids.length > 0 ? per10k(backendAfter - backend) : NaN,
    statuses,
  };
}

function parseJsonLine(text: string): Record<string, unknown> {
  const parsed: unknown = JSON.parse(text.trim().split('\n').pop() ?? '{}');
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`not a JSON object: ${text}`);
  return parsed as Record<string, unknown>; // an object, checked just above
}

const num = (v: unknown): number => (typeof v === 'number' ? v : NaN);

/** The broker's raw ingest: bench/raw-publisher.ts with `window` unconfirmed messages. */
export async function measureRawPublisher(
  key: RunKey,
  queue: string,
  options: {
    seconds: number;
    window: number;
    format: 'bare' | 'bridge';
    queueType: 'classic' | 'quorum';
    brokerPid: number | undefined;
    admin: QueueAdmin;
  },
): Promise<Measured> {
  await options.admin.purge(queue);
  const broker = options.brokerPid === undefined ? NaN : cpuSeconds(options.brokerPid);
  const out = await run(
    process.execPath,
    [
      path.join(ROOT, 'dist/bench/raw-publisher.js'),
      queue,
      String(options.seconds),
      String(options.window),
      options.format,
      options.queueType,
    ],
    AbortSignal.timeout((options.seconds + 30) * 1000), // it waits for its last confirms: bounded if the broker stalls
  );
  const brokerAfter = options.brokerPid === undefined ? NaN : cpuSeconds(options.brokerPid);
  const r = parseJsonLine(out.stdout);
  const confirmed = num(r['confirmed']);
  const inQueue = await settledCount(options.admin, queue);
  await options.admin.purge(queue);
  return {
    ...key,
    ...EMPTY,
    rps: num(r['rate']),
    requests: confirmed,
    inQueue,
    brokerCpuPer10k: ((brokerAfter - broker) / (confirmed || 1)) * 10_000,
  };
}

/** The raw round trip: bench/raw-rpc-client.ts with `concurrency` requests in flight. */
export async function measureRawRpc(
  key: RunKey,
  queue: string,
  options: {
    seconds: number;
    concurrency: number;
    brokerPid: number | undefined;
    backendPids: readonly number[];
    admin: QueueAdmin;
  },
): Promise<Measured> {
  const broker = options.brokerPid === undefined ? NaN : cpuSeconds(options.brokerPid);
  const backend = sumCpu(options.backendPids);
  const out = await run(
    process.execPath,
    [
      path.join(ROOT, 'dist/bench/raw-rpc-client.js'),
      queue,
      String(options.seconds),
      String(options.concurrency),
    ],
    AbortSignal.timeout((options.seconds + 30) * 1000),
  );
  const brokerAfter = options.brokerPid === undefined ? NaN : cpuSeconds(options.brokerPid);
  const backendAfter = sumCpu(options.backendPids);
  const r = parseJsonLine(out.stdout);
  const replies = num(r['rate']) * options.seconds;
  await drained(options.admin, queue);
  return {
    ...key,
    ...EMPTY,
    rps: num(r['rate']),
    requests: Math.round(replies),
    p50: num(r['p50']),
    p99: num(r['p99']),
    brokerCpuPer10k: ((brokerAfter - broker) / (replies || 1)) * 10_000,
    backendCpuPer10k: ((backendAfter - backend) / (replies || 1)) * 10_000,
  };
}
