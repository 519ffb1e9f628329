/**
 * The worker's drain: stop accepting, serve requests that still arrive on open connections with
 * Connection: close, wait for in-flight requests (and so their confirms) and for a short quiet
 * spell with no new request (connections accepted just before the listen socket closed still
 * bring theirs) up to the deadline, then close every remaining connection -- idle keep-alive ones too -- BEFORE the broker link: a
 * request arriving on a kept-alive connection after the broker was closed would get a 503,
 * while a closed connection sends its client to a live worker. Each step runs even if an
 * earlier one failed.
 */
export interface DrainSteps {
  readonly stopListening: () => void;
  readonly setDraining: () => void;
  /** Resolves when no request is in flight and none came for a moment. */
  readonly whenIdle: () => Promise<void>;
  /** Closes every HTTP connection (uWS app.close()); in-flight ones are aborted. */
  readonly closeConnections: () => void;
  readonly closeBroker: () => Promise<void>;
  readonly onStepError: (step: string, err: unknown) => void;
}

/** Resolves true when every in-flight request finished before `deadlineMs`. */
export async function drain(steps: DrainSteps, deadlineMs: number): Promise<boolean> {
  const attempt = async (step: string, fn: () => unknown): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      steps.onStepError(step, err);
    }
  };
  await attempt('stop listening', steps.stopListening);
  await attempt('flag draining', steps.setDraining);
  let timer: NodeJS.Timeout | undefined;
  const finished = await Promise.race([
    steps.whenIdle().then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), deadlineMs);
    }),
  ]);
  clearTimeout(timer);
  await attempt('close connections', steps.closeConnections);
  await attempt('close broker connection', steps.closeBroker);
  return finished;
}
