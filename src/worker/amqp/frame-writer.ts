/**
 * Sends the publish frames of one event-loop turn to the broker's socket in one write.
 *
 * Each publish becoming its own TCP write cost the broker 5-35% more CPU per message than a
 * bursty publisher (docs/performance.md); batching the frames of a turn brought the bridge to the
 * raw publisher's broker cost. The flush runs at the end of the same loop iteration's poll phase
 * (turn-end.ts), after every request that arrived in it has published.
 *
 * Every write is whole frames, so it never splits a frame amqplib writes on the same socket
 * (heartbeats, other channels); frames of this channel go only through here once it is set up.
 */
import type { Socket } from 'node:net';
import { atTurnEnd } from '../turn-end.js';

export class FrameWriter {
  readonly #socket: Socket;
  #queued: Buffer[] = [];
  #bytes = 0;
  #scheduled = false;
  readonly #flush = (): void => {
    this.#scheduled = false;
    if (this.#queued.length === 0) return;
    const queued = this.#queued;
    const bytes = this.#bytes;
    this.#queued = [];
    this.#bytes = 0;
    // A socket closed meanwhile: the channel's close fails these publishes (ConfirmWindow.loseAll).
    if (this.#socket.destroyed || !this.#socket.writable) return;
    this.#socket.write(queued.length === 1 ? (queued[0] as Buffer) : Buffer.concat(queued, bytes)); // length checked
  };

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** Queues whole frames for this turn's write. */
  write(frames: Buffer): void {
    this.#queued.push(frames);
    this.#bytes += frames.length;
    if (!this.#scheduled) {
      this.#scheduled = true;
      atTurnEnd(this.#flush);
    }
  }

  /** Writes what is queued now (a channel about to close must not lose frames queued before). */
  flushNow(): void {
    if (this.#queued.length > 0) this.#flush();
  }
}
