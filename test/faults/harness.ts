/**
 * The fault suite's harness: one private RabbitMQ node per test file; per case a bridge (2
 * workers) with a durable queue declared through its `topology`, a keyed partner load, the fault,
 * a probe that the bridge answers 2xx again, and the queue drained into the ledger (ledger.ts).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { cpSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from 'node:test';
import amqplib from 'amqplib';
import { baseConfig, startBridge, type RunningBridge } from '../helpers/bridge.js';
import {
  errorCode,
  is2xx,
  startKeyedLoad,
  type KeyedAnswer,
  type KeyedLoad,
} from '../helpers/keyed-load.js';
import { postXml, xmlBody } from '../helpers/load.js';
import { poll } from '../helpers/poll.js';
import type { PrivateBroker } from '../helpers/private-broker.js';
import { computeLedger, ledgerPath, markdownRow, writeLedger, type LedgerRow } from './ledger.js';

/** FAULTS_SCALE (default 1): the release run multiplies request counts and fault durations by it. */
export const SCALE = ((): number => {
  const raw = process.env['FAULTS_SCALE'] ?? '1';
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 1)
    throw new RangeError(`FAULTS_SCALE must be a number ≥ 1, not ${raw}`);
  return n;
})();

/** `ms` scaled for the release run, capped at `capMs` there (durations, not counts). */
export const scaledMs = (ms: number, capMs = Infinity): number =>
  Math.min(ms * SCALE, Math.max(ms, capMs));

/** A count scaled for the release run. */
export const scaled = (n: number): number => Math.round(n * SCALE);

const ROUTE_PATH = '/faults';

export interface FaultContext {
  readonly node: PrivateBroker;
  readonly bridge: RunningBridge;
  readonly load: KeyedLoad;
  readonly queue: string;
  readonly config: Record<string, unknown>;
  readonly t: TestContext;
  /** A line for the case's `notes` column. */
  note(text: string): void;
  /** Answers from outside the load (slow clients, extra probes) that belong in the ledger. */
  addAnswers(answers: readonly KeyedAnswer[]): void;
  /** message_ids taken from the queue during the case (a consumer of the case's own). */
  addQueued(ids: readonly string[]): void;
  /** One POST on a fresh connection with a new key, recorded in the ledger. */
  probe(): Promise<KeyedAnswer>;
  /**
   * The operator deleted the queue between `from` and `to` (performance.now()): a 2xx in flight
   * then may have been confirmed *because* the queue went away (RabbitMQ confirms what a deleted
   * queue held), so one missing from the queue is counted apart, not as lost.
   */
  queueDeletedDuring(from: number, to: number): void;
}

export interface FaultCase {
  readonly name: string;
  readonly queueType?: 'classic' | 'quorum';
  /** Keep-alive connections of the load (default 50). */
  readonly connections?: number;
  /** Requests per second over all connections (default 800; `null`: as fast as answered). */
  readonly ratePerSecond?: number | null;
  /** Config keys merged over the harness's (e.g. `workerHangMs`, `limits`). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** `amqp` keys merged over the harness's (e.g. `maxInFlight`). */
  readonly amqp?: Readonly<Record<string, unknown>>;
  /** Runs before the bridge starts; its answer goes to the notes (e.g. the open-files limit). */
  prepare?(): Promise<string>;
  /** How long the fault lasts between `inject` and `heal` (a duration of the experiment, not a wait for state). */
  readonly holdMs: number;
  /** Starts the fault; resolves once it is in effect. */
  inject(ctx: FaultContext): Promise<void>;
  /** Ends it; resolves once the fault is over from the test's side (the bridge's recovery is probed after). */
  heal(ctx: FaultContext): Promise<void>;
  /** The fault ends the bridge (SIGTERM): no recovery probe, the exit is checked instead. */
  readonly bridgeExits?: boolean;
  /** The load is the fault (overload): it stops at `heal`, and the probe alone checks recovery. */
  readonly loadEndsWithFault?: boolean;
  /**
   * Sees every answer of the case before the ledger is asserted (the cluster suite times its
   * failovers from them); `faultFrom` and `healedAt` are performance.now() of the fault's start
   * and end. What it returns goes to the notes.
   */
  account?(
    answers: readonly KeyedAnswer[],
    window: { readonly faultFrom: number; readonly healedAt: number },
  ): string[];
}

/** Every message_id in `queue` on the node at `url` (and those of messages not persistent, into `transient`); the queue is left empty. */
async function drainIds(
  url: string,
  queue: string,
  transient: string[],
  timeoutMs = 120_000,
): Promise<string[]> {
  const connection = await amqplib.connect(url);
  try {
    const channel = await connection.createChannel();
    const ids: string[] = [];
    for (;;) {
      const { messageCount } = await channel.checkQueue(queue);
      if (messageCount === 0) return ids;
      const target = ids.length + messageCount;
      let consumerTag = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(`draining ${queue}: ${ids.length} of ${target} within ${timeoutMs} ms`),
            ),
          timeoutMs,
        );
        channel
          .consume(
            queue,
            (msg) => {
              if (msg === null) {
                clearTimeout(timer);
                reject(new Error(`draining ${queue}: the broker cancelled the consumer`));
                return;
              }
              ids.push(String(msg.properties.messageId));
              // Delivery mode 2, or a broker restart would lose it (docs/failure-modes.md #1).
              if (msg.properties.deliveryMode !== 2)
                transient.push(String(msg.properties.messageId));
              if (ids.length >= target) {
                clearTimeout(timer);
                resolve();
              }
            },
            { noAck: true },
          )
          .then((ok) => (consumerTag = ok.consumerTag), reject);
      });
      // Deliveries that arrive before cancel-ok still go through the callback above.
      await channel.cancel(consumerTag);
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
}

function slug(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

/** The suite's state: the shared private node and the rows so far. */
export interface FaultSuite {
  readonly node: PrivateBroker;
  readonly rows: LedgerRow[];
  readonly startedAt: string;
  /** Where the rows are written (default: ledgerPath()). */
  readonly ledgerFile?: string;
  /** The broker the queue is drained from at the end of a case (default: `node`'s URL). */
  drainUrl?(): string;
}

/** Runs one case and asserts its ledger: no 2xx missing, nothing foreign, the bridge answering 2xx again. */
export async function runCase(
  suite: FaultSuite,
  spec: FaultCase,
  t: TestContext,
): Promise<LedgerRow> {
  const started = performance.now();
  const queueType = spec.queueType ?? 'classic';
  const queue = `faults-${slug(spec.name)}-${randomUUID().slice(0, 8)}`;
  const config = baseConfig(
    [{ path: ROUTE_PATH, mode: 'publish', exchange: '', routingKey: queue }],
    {
      topology: {
        queues: [{ name: queue, durable: true, arguments: { 'x-queue-type': queueType } }],
      },
      ...spec.config,
      amqp: { urls: [suite.node.url], heartbeatSeconds: 5, reconnectSeconds: 0.5, ...spec.amqp },
    },
  );
  const notes: string[] = [];
  if (spec.prepare !== undefined) notes.push(await spec.prepare());
  const bridge = await startBridge(config, { timeoutMs: 30_000 });
  t.after(() => bridge.stop());
  const url = `${bridge.url}${ROUTE_PATH}`;
  const load = startKeyedLoad({
    url,
    connections: spec.connections ?? 50,
    idPrefix: queue,
    ...(spec.ratePerSecond === null ? {} : { ratePerSecond: spec.ratePerSecond ?? 800 }),
  });
  t.after(() => load.stop().then(() => undefined));
  const extraAnswers: KeyedAnswer[] = [];
  const queued: string[] = [];
  let probes = 0;
  let deleteWindow: { from: number; to: number } | undefined;
  const ctx: FaultContext = {
    node: suite.node,
    bridge,
    load,
    queue,
    config,
    t,
    note: (text) => notes.push(text),
    // Loops, not push(...xs): a release run's arrays exceed the call stack as arguments.
    addAnswers: (answers) => answers.forEach((a) => extraAnswers.push(a)),
    addQueued: (ids) => ids.forEach((id) => queued.push(id)),
    queueDeletedDuring: (from, to) => (deleteWindow = { from, to }),
    probe: async () => {
      const key = `${queue}-probe-${probes++}`;
      const startedAt = performance.now();
      let status: number | undefined;
      let error: string | undefined;
      try {
        status = (await postXml(url, xmlBody(key), key, false, 5000)).status;
      } catch (err) {
        error = errorCode(err);
      }
      const answer = {
        key,
        phase: 'probe',
        startedAt,
        endedAt: performance.now(),
        status,
        error,
        title: undefined,
      };
      extraAnswers.push(answer);
      return answer;
    },
  };

  // Everything after the warm-up is recorded even when a step fails: the ledger is written first,
  // then the failures are asserted.
  await withDeadline(
    load.whenOk('before', scaled(300)),
    30_000,
    'the load got no 2xx before the fault',
  );
  const failures: string[] = [];
  const step = async (what: string, run: () => Promise<unknown>): Promise<boolean> => {
    try {
      await run();
      return true;
    } catch (err) {
      failures.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      return false;
    }
  };
  load.setPhase('fault');
  const faultFrom = performance.now();
  const faulted =
    (await step('inject', () => spec.inject(ctx))) &&
    (await step('hold', () => sleep(spec.holdMs))) && // the fault's duration, not a wait for state
    (await step('heal', () => spec.heal(ctx)));
  const healedAt = performance.now();
  load.setPhase('after');
  if (spec.loadEndsWithFault === true || spec.bridgeExits === true) await load.stop();

  let recoveryMs: number | undefined;
  if (faulted && spec.bridgeExits !== true) {
    const recovered = await poll(() => ctx.probe(), is2xx, { timeoutMs: 30_000, intervalMs: 100 });
    if (recovered.met) recoveryMs = Math.round((recovered.last?.endedAt ?? healedAt) - healedAt);
    else
      failures.push(
        `no 2xx within 30 s after the fault ended; last probe: ${JSON.stringify(recovered.last)}`,
      );
    if (recovered.met && spec.loadEndsWithFault !== true)
      await step('load after the fault', () =>
        withDeadline(
          load.whenOk('after', scaled(300)),
          30_000,
          'the load got no 2xx after the fault',
        ),
      );
  }
  const answers = [...(await load.stop()), ...extraAnswers];
  await bridge.stop(); // outstanding confirms settle before the queue is read
  const transient: string[] = [];
  ctx.addQueued(await drainIds(suite.drainUrl?.() ?? suite.node.url, queue, transient));
  const faultOk = answers.filter((a) => a.phase === 'fault' && is2xx(a)).length;
  notes.unshift(`2xx during the fault: ${faultOk}`);
  if (spec.account !== undefined) notes.push(...spec.account(answers, { faultFrom, healedAt }));
  const row = computeLedger({
    case: spec.name,
    queueType,
    scale: SCALE,
    answers,
    queued,
    recoveryMs,
    wallMs: Math.round(performance.now() - started),
    notes,
    ...(deleteWindow === undefined ? {} : { deleteWindow }),
  });
  suite.rows.push(row);
  writeLedger(suite.ledgerFile ?? ledgerPath(), suite.startedAt, SCALE, suite.rows);
  t.diagnostic(markdownRow(row));

  if (row.missing2xx > 0) {
    // The node's directory goes with it at the end of the file: keep its log for the report.
    const kept = path.join(
      path.dirname(suite.ledgerFile ?? ledgerPath()),
      `faults-node-log-${slug(spec.name)}`,
    );
    cpSync(suite.node.logDir, kept, { recursive: true });
    notes.push(`node log kept in ${kept}`);
  }
  assert.equal(
    row.missing2xx,
    0,
    `${spec.name}: ${row.missing2xx} messages answered 2xx are not in the queue, e.g. ${row.missingKeys.join(', ')} (${notes.join('; ')})`,
  );
  assert.equal(row.foreign, 0, `${spec.name}: the queue holds messages nobody sent`);
  assert.deepEqual(
    transient.slice(0, 5),
    [],
    `${spec.name}: messages published without delivery mode 2`,
  );
  assert.deepEqual(failures, [], `${spec.name}: the fault or the recovery failed`);
  assert.ok(row.answered2xx > 0, `${spec.name}: no request was answered 2xx at all`);
  return row;
}

/** `promise`, or a rejection naming `what` after `ms`. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} (within ${ms} ms)`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
