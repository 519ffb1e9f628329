/**
 * Work deferred to the end of the event loop's poll phase: one setImmediate per turn runs every
 * callback queued during it, in order, and callbacks queued while they run join the same pass.
 *
 * Two users share it so that their order within a turn is fixed: request bodies that completed
 * during the poll phase are dispatched first (by then uWS has parsed everything that arrived,
 * so a connection it closed under a pipelined request is known to be gone, and that request is
 * not published), and the publish frames they produced are written to the broker's socket after
 * them, in one write (frame-writer.ts).
 */
const queue: Array<() => void> = [];
let scheduled = false;

function runQueue(): void {
  scheduled = false;
  // Index loop: callbacks may queue more, which run in this same pass.
  for (let i = 0; i < queue.length; i++) {
    const cb = queue[i] as () => void; // i < length
    try {
      cb();
    } catch (err) {
      // A throw must not strand the callbacks queued after it; surface it as uncaught would be.
      queueMicrotask(() => {
        throw err;
      });
    }
  }
  queue.length = 0;
}

/** Runs `cb` once this turn's poll phase is over (the callbacks must not rely on the throw). */
export function atTurnEnd(cb: () => void): void {
  queue.push(cb);
  if (!scheduled) {
    scheduled = true;
    setImmediate(runQueue);
  }
}
