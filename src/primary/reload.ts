/**
 * SIGHUP: replace every worker with one running the new config, without ever making things
 * worse. All replacements are forked beside the running workers; each listens only once its
 * broker channel is open and the topology asserted. Only when every one of them is ready do they
 * take their slots and the old workers drain. If one is not ready within `reloadTimeoutMs`
 * (a binding to a queue that does not exist, an unreachable broker URL, a crash), the reload is
 * abandoned: the replacements drain, the old workers never stopped serving, and the failure is
 * reported with the broker's own reason.
 */
import type { Config } from '../shared/config-schema.js';
import type { Fork, Supervisor } from './supervisor.js';

export type ReloadResult =
  { readonly ok: true } | { readonly ok: false; readonly reasons: readonly string[] };

/** Why each replacement that is not listening is not: its error, else the broker's complaint it reported. */
function reasonsOf(
  replacements: readonly Fork[],
  settled: ReadonlyMap<Fork, Error | undefined>,
  timeoutMs: number,
): string[] {
  const reasons: string[] = [];
  for (const fork of replacements) {
    const err = settled.get(fork);
    if (settled.has(fork) && err === undefined) continue;
    const problem = fork.status?.problem;
    const what = err?.message ?? `worker ${fork.slot} not ready within ${timeoutMs} ms`;
    reasons.push(problem === undefined ? what : `${what}: ${problem}`);
  }
  return reasons;
}

export async function reloadWorkers(
  supervisor: Supervisor,
  next: Config,
  port: number,
  timeoutMs: number,
): Promise<ReloadResult> {
  const replacements = supervisor.forkReplacements(next, port, timeoutMs);
  const settled = new Map<Fork, Error | undefined>();
  const outcomes = replacements.map((fork) =>
    fork.listening.then(
      () => settled.set(fork, undefined),
      (err: unknown) => settled.set(fork, err instanceof Error ? err : new Error(String(err))),
    ),
  );
  // Every replacement settles: it listens, fails, exits, or misses the deadline (#fork's timer).
  await Promise.all(outcomes);
  const reasons = reasonsOf(replacements, settled, timeoutMs);
  if (reasons.length === 0) {
    await supervisor.commit(replacements, next, port);
    return { ok: true };
  }
  await supervisor.abandon(replacements);
  return { ok: false, reasons };
}
