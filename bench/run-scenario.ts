/** Runs one scenario: its queues, its backend, its stacks started once, then rounds × connection counts × stacks. */
import { processTree, wrk } from './harness.js';
import {
  drained,
  failedRun,
  GuardTripped,
  idleRssMb,
  measureHttp,
  measureRawPublisher,
  measureRawRpc,
  quiet,
  settledCount,
  type Measured,
  type QueueAdmin,
  type RunKey,
} from './measure.js';
import { rawWindow, type Scenario, type StackSpec } from './scenarios.js';
import {
  startCeleryWorker,
  startResponder,
  type HttpStack,
  type Spawned,
  type StartContext,
} from './stacks.js';
import { brokerDescriptors } from './system.js';

/**
 * Share of RabbitMQ's descriptor limit at which a run is stopped: the broker is shared, and
 * running out of descriptors crashed its memory monitor (a default broker has 1,024).
 */
const BROKER_FD_SHARE = 0.5;
import { fmtInt, fmtMs } from './report.js';

/** Stop functions of everything running, for a clean stop on SIGINT. */
export type Live = Set<() => Promise<void>>;

export interface ScenarioOptions {
  readonly tag: string;
  readonly seconds: number;
  readonly rounds: number;
  readonly workers: number;
  readonly cores: number;
  readonly nofile: number;
  readonly timeoutSeconds: number;
  readonly warmupSeconds: number;
  readonly brokerPid: number | undefined;
  readonly admin: QueueAdmin;
  readonly live: Live;
  readonly log: (line: string) => void;
}

/**
 * A run's length: at 10,000 connections the first answers come only after about 10,000 ÷ rate
 * seconds (1.5-4 s on two cores), so those runs last at least 10 s.
 */
export const runSeconds = (seconds: number, conns: number): number =>
  conns >= 10_000 ? Math.max(seconds, 10) : seconds;

const firstLine = (err: unknown): string =>
  (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';

function line(m: Measured): string {
  if (m.error !== '') return `FAILED: ${m.error.split('\n')[0] ?? ''}`;
  const http = Number.isFinite(m.non2xx)
    ? `, errors c/r/w ${m.connectErrors}/${m.readErrors}/${m.writeErrors}, timeouts ${m.timeouts}, non-2xx ${m.non2xx}${m.statuses === '' ? '' : ` (${m.statuses})`}`
    : '';
  const queue =
    Number.isFinite(m.inQueue) && Number.isFinite(m.non2xx)
      ? `, 2xx/in queue ${fmtInt(m.requests - m.non2xx)}/${fmtInt(m.inQueue)}`
      : '';
  return `${fmtInt(m.rps)}/s, p50 ${fmtMs(m.p50)} p99 ${fmtMs(m.p99)} ms${http}${queue}`;
}

export async function runScenario(scenario: Scenario, o: ScenarioOptions): Promise<Measured[]> {
  const results: Measured[] = [];
  const queues: string[] = [];
  const started: Array<() => Promise<void>> = [];
  const keep = (stop: () => Promise<void>): void => {
    started.push(stop);
    o.live.add(stop);
  };
  const shared = scenario.backend === 'none' ? undefined : `bench-${o.tag}-${scenario.id}-requests`;
  const queueOf = (spec: StackSpec): string => shared ?? `bench-${o.tag}-${scenario.id}-${spec.id}`;
  const running = new Map<string, HttpStack>();
  const broken = new Map<string, string>();
  const idleRss = new Map<string, number>();
  let backendPids: number[] = [];
  o.log(`${scenario.id}: starting (${scenario.stacks.map((s) => s.id).join(', ')})`);
  try {
    if (shared !== undefined) {
      await o.admin.declare(shared, scenario.queueType);
      queues.push(shared);
      let backend: Spawned;
      if (scenario.backend === 'responder') backend = await startResponder(shared);
      else
        backend = await startCeleryWorker(
          shared,
          o.nofile,
          async () => (await o.admin.count(shared)).consumers > 0,
        );
      keep(() => backend.stop());
      backendPids = processTree(backend.pid);
    }
    for (const spec of scenario.stacks) {
      if (shared === undefined) {
        await o.admin.declare(queueOf(spec), scenario.queueType);
        queues.push(queueOf(spec));
      }
      if (spec.kind !== 'http') continue;
      const ctx: StartContext = {
        mode: scenario.mode,
        queue: queueOf(spec),
        queueType: scenario.queueType,
        workers: o.workers,
        cores: o.cores,
        nofile: o.nofile,
      };
      try {
        const stack = await spec.start(ctx);
        keep(() => stack.stop());
        running.set(spec.id, stack);
        // Before the warm-up: what a worker holds before it has served anything.
        const idle = await idleRssMb(stack);
        idleRss.set(spec.id, idle);
        o.log(`${scenario.id}: ${spec.id} idle: largest serving process ${fmtInt(idle)} MB RSS`);
        // Warm-up (JIT, connection pools), not counted; then back to an empty queue and an idle stack.
        await wrk(stack.url, 100, o.warmupSeconds, {
          timeoutSeconds: o.timeoutSeconds,
          nofile: o.nofile,
        });
        if (shared === undefined) {
          await settledCount(o.admin, queueOf(spec));
          await o.admin.purge(queueOf(spec));
        } else await drained(o.admin, shared);
        await quiet(processTree(stack.rootPid));
      } catch (err) {
        broken.set(spec.id, `did not start: ${firstLine(err)}`);
        o.log(`${scenario.id}: ${spec.id} did not start: ${String(err)}`);
      }
    }

    for (let round = 0; round < o.rounds; round++) {
      for (const conns of scenario.conns) {
        for (const spec of scenario.stacks) {
          if (spec.conns !== undefined && !spec.conns.includes(conns)) continue;
          const key: RunKey = { scenario: scenario.id, stack: spec.id, conns, round };
          let m: Measured;
          try {
            m = await measureOne(spec, key, conns);
          } catch (err) {
            m = failedRun(key, firstLine(err));
            const stack = running.get(spec.id);
            if (err instanceof GuardTripped && stack !== undefined) {
              // Its connections must go now; its later runs are recorded as failed.
              running.delete(spec.id);
              broken.set(spec.id, err.message);
              await stack.stop();
            }
          }
          results.push(m);
          o.log(
            `${scenario.id} c${conns} ${spec.id}${o.rounds > 1 ? ` (round ${round + 1})` : ''}: ${line(m)}`,
          );
        }
      }
    }
  } finally {
    for (const stop of started.reverse()) {
      await stop().catch((err: unknown) => o.log(`${scenario.id}: stop failed: ${String(err)}`));
      o.live.delete(stop);
    }
    for (const q of queues) await o.admin.remove(q);
  }
  return results;

  function brokerGuard(): string | undefined {
    const d = o.brokerPid === undefined ? undefined : brokerDescriptors(o.brokerPid);
    if (d === undefined || d.open <= d.limit * BROKER_FD_SHARE) return undefined;
    return `RabbitMQ had ${d.open} of its ${d.limit} file descriptors open`;
  }

  async function measureOne(spec: StackSpec, key: RunKey, conns: number): Promise<Measured> {
    const queue = queueOf(spec);
    const seconds = runSeconds(o.seconds, conns);
    switch (spec.kind) {
      case 'raw-publisher':
        return measureRawPublisher(key, queue, {
          seconds,
          window: rawWindow(conns),
          format: spec.format,
          queueType: scenario.queueType,
          brokerPid: o.brokerPid,
          admin: o.admin,
        });
      case 'raw-rpc':
        return measureRawRpc(key, queue, {
          seconds,
          concurrency: conns,
          brokerPid: o.brokerPid,
          backendPids,
          admin: o.admin,
        });
      case 'http': {
        const stack = running.get(spec.id);
        if (stack === undefined) return failedRun(key, broken.get(spec.id) ?? 'did not start');
        return measureHttp(key, stack, {
          seconds,
          timeoutSeconds: o.timeoutSeconds,
          nofile: o.nofile,
          brokerPid: o.brokerPid,
          backendPids,
          // The hello world publishes nothing: no queue to count.
          countQueue: shared === undefined && spec.family !== 'http-limit' ? queue : undefined,
          drainQueue: shared,
          admin: o.admin,
          idleRssMb: idleRss.get(spec.id) ?? NaN,
          guard: brokerGuard,
        });
      }
      default: {
        const never: never = spec;
        throw new Error(`unknown stack kind ${String(never)}`);
      }
    }
  }
}
