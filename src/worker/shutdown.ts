/**
 * The worker's drain: stop accepting, answer late keep-alive requests 503 + Connection: close,
 * wait for in-flight requests (and so their confirms) up to the deadline, force-close what is
 * left, close the channel and connection. Each step runs even if an earlier one failed.
 */
export interface DrainSteps {
  readonly stopListening: () => void;
  readonly setDraining: () => void;
  readonly whenIdle: () => Promise<void>;
  readonly forceClose: () => void;
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
  if (!finished) await attempt('force-close connections', steps.forceClose);
  await attempt('close broker connection', steps.closeBroker);
  return finished;
}
