/**
 * Worker supervision with node:cluster: one worker per slot, refork with exponential back-off,
 * crash-loop detection, replacements for a reload (forked beside the running workers, committed
 * or abandoned by src/primary/reload.ts), and the graceful stop.
 *
 * A worker that sends no state for `workerHangMs` (a stuck event loop, SIGSTOP) is killed; its
 * slot is reforked as after a crash.

 */
import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import type { Config } from '../shared/config-schema.js';
import { isWorkerToPrimary, type PrimaryToWorker, type WorkerStatus } from '../shared/ipc.js';
import { CrashLoopDetector, reforkDelayMs } from './backoff.js';
import type { UwsLoad } from '../shared/uws.js';
import type { SlotView } from './readiness.js';

/** A worker that lived this long before dying resets its slot's back-off. */
const STABLE_AFTER_MS = 30_000;
/** How long a new worker may take to listen during a start or a roll. */
const LISTEN_DEADLINE_MS = 15_000;

interface Slot {
  readonly index: number;
  worker: Worker | undefined;
  status: WorkerStatus | undefined;
  /** When the slot's worker last reported (Date.now()). */
  lastSeen: number;
  startedAt: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

/** A forked worker on its way to serving a slot. */
export interface Fork {
  readonly slot: number;
  readonly worker: Worker;
  /** Resolves once it listens; see Supervisor#fork. */
  readonly listening: Promise<void>;
  /** Its latest report, with the broker's complaint if it has one. */
  status: WorkerStatus | undefined;
}

export interface WorkerExit {
  readonly slot: number;
  readonly workerPid: number | undefined;
  readonly workerId: number;
  readonly code: number;
  readonly signal: string;
  /** We asked it to exit (retired by a reload, stopping): not a crash. */
  readonly expected: boolean;
}

/** What the supervisor tells main.ts, which logs it and feeds metrics and readiness. */
export interface SupervisorEvents {
  /** The worker serving `slot` reported its state (or a new one took the slot). */
  'worker-status': [slot: number];
  'worker-exit': [exit: WorkerExit];
  /** Killed after `silentMs` without a state report; its slot is reforked as after a crash. */
  'worker-hung': [
    hung: {
      readonly slot: number;
      readonly workerPid: number | undefined;
      readonly silentMs: number;
    },
  ];
  refork: [refork: { readonly slot: number; readonly delayMs: number }];
  'refork-failed': [failure: { readonly slot: number; readonly err: unknown }];
  /** Too many deaths too fast: main.ts exits so that systemd restarts the service. */
  'crash-loop': [];
}

export interface SupervisorOptions {
  readonly workerScript: string;
  readonly count: number;
  /** The uWebSockets.js build the primary chose; every worker loads the same. */
  readonly uws: UwsLoad;
}

export class Supervisor extends EventEmitter<SupervisorEvents> {
  readonly #slots: Slot[];
  readonly #crashLoop = new CrashLoopDetector();
  /** Workers we asked to exit (retired by a roll, or stopping): their exit is not a crash. */
  readonly #retiring = new Set<Worker>();
  #config: Config;
  #port: number;
  #stopping = false;
  readonly #uws: UwsLoad;
  /** Workers killed for hanging, so a slow exit is not killed again. */
  readonly #killedHung = new WeakSet<Worker>();
  #watchdog: NodeJS.Timeout | undefined;

  constructor(options: SupervisorOptions, config: Config, port: number) {
    super();
    this.#config = config;
    this.#port = port;
    this.#uws = options.uws;
    cluster.setupPrimary({ exec: options.workerScript });
    this.#slots = Array.from({ length: options.count }, (_, index) => ({
      index,
      worker: undefined,
      status: undefined,
      lastSeen: 0,
      startedAt: 0,
      failures: 0,
      timer: undefined,
    }));
  }

  get views(): SlotView[] {
    const now = Date.now();
    return this.#slots.map((s) => ({
      slot: s.index,
      pid: s.worker?.process.pid,
      status: s.status,
      ...(s.worker !== undefined && s.lastSeen > 0 ? { silentMs: now - s.lastSeen } : {}),
    }));
  }

  /** Every worker process alive now (slots and workers still draining after a roll). */
  get workers(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  }

  /** Forks every slot; resolves when all listen, rejects if one cannot. */
  async start(): Promise<void> {
    await Promise.all(this.#slots.map((slot) => this.#launch(slot)));
    // Workers report every second: a check per second notices a hang within a second of the limit.
    this.#watchdog ??= setInterval(() => this.#killHung(Date.now()), 1000);
    this.#watchdog.unref();
  }

  #killHung(now: number): void {
    if (this.#stopping) return;
    for (const slot of this.#slots) {
      const worker = slot.worker;
      if (worker === undefined || slot.lastSeen === 0 || this.#killedHung.has(worker)) continue;
      const silentMs = now - slot.lastSeen;
      if (silentMs <= this.#config.workerHangMs) continue;
      this.#killedHung.add(worker);
      this.emit('worker-hung', { slot: slot.index, workerPid: worker.process.pid, silentMs });
      // A stopped or spinning process cannot drain: SIGKILL, and the exit reforks the slot.
      worker.process.kill('SIGKILL');
    }
  }

  /** Forks a worker for `slot`; it takes the slot once it listens. Resolves then. */
  #launch(slot: Slot): Promise<Worker> {
    const fork = this.#fork(slot, this.#config, this.#port, false, LISTEN_DEADLINE_MS);
    return fork.listening.then(() => {
      if (fork.worker.isDead())
        throw new Error(`worker ${slot.index} exited as it started listening`);
      if (slot.worker !== undefined) {
        // A reload's replacement took the slot meanwhile (this was a refork with the old config).
        this.#retire(fork.worker);
        return slot.worker;
      }
      this.#takeSlot(slot, fork);
      return fork.worker;
    });
  }

  /**
   * Forks a worker for `slot` with `config`, without giving it the slot: `listening` resolves
   * once it serves the port (with `strict`, only once its broker channel is open and the topology
   * asserted), rejects if it reports a fatal error, exits first, or misses `deadlineMs` (then it is
   * told to drain).
   */
  #fork(slot: Slot, config: Config, port: number, strict: boolean, deadlineMs: number): Fork {
    const worker = cluster.fork({ BRIDGE_WORKER_SLOT: String(slot.index) });
    let resolveListening: () => void = () => undefined;
    let rejectListening: (err: Error) => void = () => undefined;
    const listening = new Promise<void>((resolve, reject) => {
      resolveListening = resolve;
      rejectListening = reject;
    });
    // A caller that gives up first (reload abandoned) must not leave an unhandled rejection.
    listening.catch(() => undefined);
    const fork: Fork = { slot: slot.index, worker, listening, status: undefined };
    let listened = false;
    const deadline = setTimeout(() => {
      if (listened) return;
      this.#retire(worker);
      rejectListening(
        new Error(
          `worker ${slot.index} did not ${strict ? 'connect and listen' : 'listen'} within ${deadlineMs} ms`,
        ),
      );
    }, deadlineMs);
    worker.on('message', (msg: unknown) => {
      if (!isWorkerToPrimary(msg)) return;
      switch (msg.type) {
        case 'bridge:hello': {
          const start: PrimaryToWorker = {
            type: 'bridge:start',
            config,
            slot: slot.index,
            workers: this.#slots.length,
            port,
            uws: this.#uws,
            listenWhenConnected: strict,
          };
          worker.send(start);
          break;
        }
        case 'bridge:status':
          fork.status = msg.status;
          if (slot.worker === worker) {
            slot.status = msg.status;
            slot.lastSeen = Date.now();
            this.emit('worker-status', slot.index);
          }
          if (!listened && msg.status.listening) {
            listened = true;
            clearTimeout(deadline);
            resolveListening();
          }
          break;
        case 'bridge:metrics':
          // The metrics aggregator's own round trip.
          break;
        case 'bridge:listen-failed':
        case 'bridge:fatal':
          clearTimeout(deadline);
          this.#retire(worker);
          rejectListening(new Error(`worker ${slot.index}: ${msg.detail}`));
          break;
        default: {
          const unknownMsg: never = msg;
          throw new TypeError(`unhandled IPC message ${JSON.stringify(unknownMsg)}`);
        }
      }
    });
    worker.on('exit', (code, signal) => {
      clearTimeout(deadline);
      const expected = this.#retiring.delete(worker) || this.#stopping;
      this.emit('worker-exit', {
        slot: slot.index,
        workerPid: worker.process.pid,
        workerId: worker.id,
        code,
        signal,
        expected,
      });
      if (!listened)
        rejectListening(
          new Error(
            `worker ${slot.index} exited (code ${code}, signal ${signal}) before listening`,
          ),
        );
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      slot.status = undefined;
      slot.lastSeen = 0;
      if (!expected) this.#onCrash(slot);
    });
    return fork;
  }

  /** The worker of `fork` serves its slot from now on (it listens). */
  #takeSlot(slot: Slot, fork: Fork): void {
    slot.worker = fork.worker;
    slot.status = fork.status;
    slot.lastSeen = Date.now();
    slot.startedAt = Date.now();
    this.emit('worker-status', slot.index);
  }

  #onCrash(slot: Slot): void {
    if (this.#crashLoop.record(Date.now())) {
      this.emit('crash-loop');
      return;
    }
    slot.failures = Date.now() - slot.startedAt > STABLE_AFTER_MS ? 1 : slot.failures + 1;
    const delayMs = reforkDelayMs(slot.failures);
    this.emit('refork', { slot: slot.index, delayMs });
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (this.#stopping || slot.worker !== undefined) return;
      this.#launch(slot).catch((err: unknown) =>
        this.emit('refork-failed', { slot: slot.index, err }),
      );
    }, delayMs);
  }

  #retire(worker: Worker): void {
    this.#retiring.add(worker);
    const drain: PrimaryToWorker = { type: 'bridge:drain' };
    if (worker.isConnected()) worker.send(drain);
    else worker.process.kill('SIGTERM');
  }

  /** Waits for a worker's exit; SIGKILLs it after `deadlineMs`. Resolves with its exit code. */
  #awaitExit(worker: Worker, deadlineMs: number): Promise<number | null> {
    if (worker.isDead()) return Promise.resolve(worker.process.exitCode);
    return new Promise((resolve) => {
      const timer = setTimeout(() => worker.process.kill('SIGKILL'), deadlineMs);
      worker.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
  }

  /**
   * Forks one replacement per slot with `config` (see src/primary/reload.ts). Each listens only
   * once its broker channel is open and the topology asserted, and takes no slot yet: until
   * `commit`, the running workers keep their slots (and /readyz reports them).
   */
  forkReplacements(config: Config, port: number, deadlineMs: number): Fork[] {
    return this.#slots.map((slot) => this.#fork(slot, config, port, true, deadlineMs));
  }

  /**
   * The replacements (all listening) take their slots and the config becomes the running one; the
   * workers they replace drain. Resolves once those exited (SIGKILL after the drain deadline).
   */
  async commit(replacements: readonly Fork[], config: Config, port: number): Promise<void> {
    this.#config = config;
    this.#port = port;
    const retired: Worker[] = [];
    for (const fork of replacements) {
      const slot = this.#slots[fork.slot];
      if (slot === undefined) continue;
      if (slot.timer) clearTimeout(slot.timer);
      slot.timer = undefined;
      const old = slot.worker;
      this.#takeSlot(slot, fork);
      if (old !== undefined) retired.push(old);
    }
    for (const old of retired) this.#retire(old);
    await Promise.all(retired.map((old) => this.#awaitExit(old, config.shutdownTimeoutMs + 2000)));
  }

  /** Drains (or kills, when stuck) replacements of a reload that is abandoned. */
  async abandon(replacements: readonly Fork[]): Promise<void> {
    for (const fork of replacements) this.#retire(fork.worker);
    await Promise.all(
      replacements.map((fork) =>
        this.#awaitExit(fork.worker, this.#config.shutdownTimeoutMs + 2000),
      ),
    );
  }

  /** Drains every worker; resolves true when all exited 0 within the deadline. */
  async stop(deadlineMs: number): Promise<boolean> {
    this.#stopping = true;
    clearInterval(this.#watchdog);
    for (const slot of this.#slots) if (slot.timer) clearTimeout(slot.timer);
    const workers = this.workers;
    for (const w of workers) this.#retire(w);
    const codes = await Promise.all(workers.map((w) => this.#awaitExit(w, deadlineMs)));
    return codes.every((c) => c === 0);
  }

  /** Kills every worker at once (crash loop, fatal start error). */
  killAll(): void {
    this.#stopping = true;
    clearInterval(this.#watchdog);
    for (const slot of this.#slots) if (slot.timer) clearTimeout(slot.timer);
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
  }
}
