/**
 * Waiting on state that announces no event (an HTTP endpoint, a process that is not our child,
 * Prometheus' API): ask again every `intervalMs` until the answer is acceptable or time is up.
 * Where an event exists, tests await it instead.
 */
import { inspect } from 'node:util';

export interface PollOptions {
  readonly timeoutMs: number;
  /** Pause between probes (default 50 ms). */
  readonly intervalMs?: number;
}

export interface Polled<T> {
  /** The last probe's answer was accepted. */
  readonly met: boolean;
  /** The last answer (undefined if every probe threw). */
  readonly last: T | undefined;
  /** What the last probe threw, when it threw. */
  readonly error: unknown;
}

/**
 * Probes until `accept` holds or `timeoutMs` passed, then returns the last answer either way, so
 * the caller's assertion can say what was seen. A probe that throws counts as "not yet".
 */
export async function poll<T>(
  probe: () => T | Promise<T>,
  accept: (value: T) => boolean,
  options: PollOptions,
): Promise<Polled<T>> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    let last: T | undefined;
    let error: unknown;
    let met = false;
    try {
      last = await probe();
      met = accept(last);
    } catch (err) {
      error = err;
    }
    if (met || Date.now() >= deadline) return { met, last, error };
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
  }
}

/** Like `poll`, but returns the accepted answer and throws (naming `what`, with the last answer) on timeout. */
export async function waitUntil<T>(
  what: string,
  probe: () => T | Promise<T>,
  accept: (value: T) => boolean,
  options: PollOptions,
): Promise<T> {
  const result = await poll(probe, accept, options);
  if (result.met) return result.last as T; // accepted, so it is the probe's answer
  const seen =
    result.error !== undefined
      ? `the probe threw ${result.error instanceof Error ? result.error.message : inspect(result.error)}`
      : `last seen ${inspect(result.last, { depth: 4 })}`;
  throw new Error(`${what}: not within ${options.timeoutMs} ms; ${seen}`);
}
